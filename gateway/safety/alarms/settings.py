"""What the site's alarms are configured with: flood thresholds per node, supervision
times, and the words the lane displays show in a fire or a flood."""

from __future__ import annotations

from typing import Final, Self

from pydantic import Field, model_validator

from gateway.safety.alerts import Role
from parkguard.configfile import StrictModel
from parkguard.errors import ParkGuardError

FIRE_DISPLAY: Final = ("火警 请立即离场", "FIRE – LEAVE NOW")
FLOOD_ENTRY_DISPLAY: Final = ("水浸 暂停入场", "FLOOD – NO ENTRY")
FLOOD_EVACUATE_DISPLAY: Final = ("水浸 请立即驶离", "FLOOD – LEAVE NOW")
MOVE_YOUR_CAR: Final = ("【停车场水浸预警】地下停车场水位上涨，请尽快将您的车辆驶离。"
                        "Flood warning: water is rising in the car park, please move your "
                        "car out now.")
GATEWAY: Final = "gateway"
"""``source`` of the alarms the gateway publishes, and the actor of automatic resolves."""


class AlarmError(ParkGuardError, ValueError):
    """An alarm action was refused (a reset while the panel still reports fire, ...)."""


class FloodThresholds(StrictModel):
    """The flood node's own ``flood`` settings (``config.json``): keep them the same."""

    levels_mm: tuple[int, int, int] = Field(
        default=(100, 300, 600), description="level 1 warn, 2 close entries, 3 evacuate")
    hysteresis_mm: int = Field(default=30, ge=0,
                               description="a level is left only this far below its threshold")
    full_scale_mm: int = Field(default=2000, gt=0,
                               description="readings above are out of range (a trouble)")

    @model_validator(mode="after")
    def _rising(self) -> Self:
        a, b, c = self.levels_mm
        if not 0 < a < b < c:
            raise ValueError("levels_mm must be three rising positive thresholds")
        return self

    def level(self, mm: int, previous: int) -> int:
        """The level for ``mm`` coming from ``previous``: up at a threshold, down only
        ``hysteresis_mm`` below it (the node's own rule)."""
        level = previous
        while level < 3 and mm >= self.levels_mm[level]:
            level += 1
        while level > 0 and mm < self.levels_mm[level - 1] - self.hysteresis_mm:
            level -= 1
        return level


class AlarmSettings(StrictModel):
    """Flood thresholds, pump and supervision timings, who may reset a fire."""

    flood: FloodThresholds = FloodThresholds()
    flood_nodes: dict[str, FloodThresholds] = Field(
        default_factory=dict, description="per-node thresholds where a node differs")
    flood_clear_after_s: float = Field(
        default=60, ge=0, description="a lower level counts only after holding this long")
    pump_idle_grace_s: float = Field(
        default=60, ge=0, description="pump idle above level 1 this long: pump failure")
    pump_rise_mm: int = Field(
        default=50, gt=0, description="water this far above its low while the pump runs: "
                                      "pump failure")
    stuck_after_s: float = Field(
        default=6 * 3600, ge=0, description="the same non-zero level for this long: stuck "
                                            "sensor (0: never)")
    expected_nodes: tuple[str, ...] = Field(
        default=(), description="nodes that must be heard from (missing from the start is "
                                "a trouble too)")
    default_heartbeat_s: int = Field(default=30, gt=0, le=3600)
    seq_jump: int = Field(
        default=10_000, gt=0, description="a reading this many seqs ahead of the node's last "
                                          "is a trouble alert (readings lost, or a bad count); "
                                          "it is used all the same")
    facilities_team: str = "facilities"
    flood_team: str = "flood"
    fire_reset_roles: tuple[Role, ...] = Field(
        default=("captain", "manager"), description="roster roles that may reset a fire")

    def thresholds(self, node: str) -> FloodThresholds:
        return self.flood_nodes.get(node, self.flood)
