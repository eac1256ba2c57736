"""A lane node's configuration: which lane it is, where the broker is, which pins do what."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from parkguard.configfile import BrokerSettings, StrictModel

PinName = int | str


class PinMap(StrictModel):
    """BCM GPIO numbers (or gpiozero pin names) of the lane's wiring; see hardware/lane-pins.md."""

    arming_loop: PinName = Field(default=17, description="loop detector A output (vehicle present)")
    safety_loop: PinName = Field(default=27, description="loop detector B output under the boom")
    barrier_relay: PinName = Field(default=22, description="relay that holds the barrier up")

    @model_validator(mode="after")
    def _pins_distinct(self) -> Self:
        pins = {"arming_loop": self.arming_loop, "safety_loop": self.safety_loop,
                "barrier_relay": self.barrier_relay}
        seen: dict[str, str] = {}
        for role, pin in pins.items():
            key = str(pin).upper().removeprefix("GPIO").removeprefix("BCM")
            if key in seen:
                raise ValueError(f"pins.{role} uses pin {pin}, already used by pins.{seen[key]}")
            seen[key] = role
        return self


class LaneTiming(StrictModel):
    """How long the lane waits for things, in seconds of the lane's clock."""

    decide_deadline_ms: int = Field(default=300, ge=20, le=10_000,
                                    description="after this the lane decides alone")
    pass_timeout_s: float = Field(default=120.0, gt=0, le=3600,
                                  description="barrier stays open this long waiting for the car")


class CameraSettings(StrictModel):
    type: Literal["simulated"] = Field(default="simulated",
                                       description="camera and plate reader backend")


class LaneConfig(StrictModel):
    """Everything one lane node needs to run."""

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="site slug")
    lane: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="lane id, e.g. in1")
    direction: Literal["entry", "exit"]
    broker: BrokerSettings = BrokerSettings()
    pins: PinMap = PinMap()
    timing: LaneTiming = LaneTiming()
    camera: CameraSettings = CameraSettings()
