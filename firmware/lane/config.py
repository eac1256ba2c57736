"""A lane node's configuration: which lane it is, where the broker is, which pins do what."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from parkguard.configfile import BrokerSettings, StrictModel
from parkguard.core.plates import MatchPolicy

PinName = int | str


class PinMap(StrictModel):
    """BCM GPIO numbers (or gpiozero pin names) of the lane's wiring; see hardware/lane-pins.md."""

    arming_loop: PinName = Field(default=17, description="loop detector A output (vehicle present)")
    safety_loop: PinName = Field(default=27, description="loop detector B output under the boom")
    barrier_relay: PinName = Field(default=22, description="relay that holds the barrier up")
    fire_input: PinName | None = Field(
        default=None, exclude_if=lambda pin: pin is None,
        description="optional hard-wired fire input (fire panel's alarm relay, active high): "
                    "raises and holds the barrier without the broker; None: not wired")

    @model_validator(mode="after")
    def _pins_distinct(self) -> Self:
        pins = {"arming_loop": self.arming_loop, "safety_loop": self.safety_loop,
                "barrier_relay": self.barrier_relay, "fire_input": self.fire_input}
        seen: dict[str, str] = {}
        for role, pin in pins.items():
            if pin is None:
                continue
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


class CommandSettings(StrictModel):
    """How the lane checks the gateway's signed commands (see docs/lane-commands.md)."""

    hmac_key: str | None = Field(
        default=None, repr=False,
        description="hex HMAC key of this lane, when the broker section names no bundle; "
                    "a bundle's hmac_key takes precedence. Without a key every command is refused",
    )
    clock_skew_s: float = Field(default=5.0, ge=0, le=120,
                                description="tolerated disagreement of gateway and lane clocks")
    max_window_s: float = Field(default=300.0, gt=0, le=3600,
                                description="longest expires - issued the lane accepts")

    @field_validator("hmac_key")
    @classmethod
    def _hex_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be hexadecimal") from None
        if len(raw) < 32:
            raise ValueError(f"must be at least 32 bytes (64 hex digits), got {len(raw)} bytes")
        return value.lower()


class JournalSettings(StrictModel):
    """Where the lane keeps its SQLite journal (events, outbox, alarms, replica)."""

    path: Path | None = Field(
        default=None,
        description="SQLite file; default var/lane-{lane}.db (relative to the working "
                    "directory). On a Pi put it on the SD card's data partition",
    )
    flush_timeout_s: float = Field(default=5.0, ge=0, le=120,
                                   description="at stop, how long to wait for unsent events "
                                               "to be acknowledged when the broker is there")


class LaneConfig(StrictModel):
    """Everything one lane node needs to run."""

    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="site slug")
    lane: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="lane id, e.g. in1")
    direction: Literal["entry", "exit"]
    broker: BrokerSettings = BrokerSettings()
    pins: PinMap = PinMap()
    timing: LaneTiming = LaneTiming()
    camera: CameraSettings = CameraSettings()
    commands: CommandSettings = CommandSettings()
    journal: JournalSettings = JournalSettings()
    matching: MatchPolicy = Field(
        default_factory=MatchPolicy,
        description="plate matcher for offline exits: use the gateway's [matching] values")

    def journal_path(self) -> Path:
        """The journal file: ``journal.path``, else ``var/lane-{lane}.db``."""
        if self.journal.path is not None:
            return self.journal.path
        return Path("var") / f"lane-{self.lane}.db"

    def command_key(self) -> bytes | None:
        """The key that verifies this lane's commands: the device bundle's, else
        ``commands.hmac_key``, else None (the lane then refuses every command)."""
        if self.broker.bundle is not None:
            from broker.provision.bundle import load_bundle

            key = load_bundle(self.broker.bundle).hmac_key_bytes()
            if key is not None:
                return key
        return None if self.commands.hmac_key is None else bytes.fromhex(self.commands.hmac_key)
