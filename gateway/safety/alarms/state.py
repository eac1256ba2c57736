"""What the alarm monitor remembers between messages: the fire panel, each flood node,
each sensor node's supervision, and the changes it tells its listeners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What listeners hear: a site alarm went on or off (fire, or flood at ``level``)."""

    kind: Literal["fire", "flood"]
    active: bool
    level: int = 0
    zone: str | None = None


@dataclass(slots=True)
class PanelState:
    fire: bool = False
    trouble: bool = False
    supervisory: bool = False
    zone: str | None = None


@dataclass(slots=True)
class FloodState:
    raw: int = 0  # level by thresholds and hysteresis, this reading
    level: int = 0  # what counts: rises at once, falls after flood_clear_after_s
    lower_since: datetime | None = None
    mm: int = 0
    pump: bool | None = None
    idle_since: datetime | None = None
    run_low: int | None = None
    rising: bool = False
    same_mm: int | None = None
    same_since: datetime | None = None
    same_count: int = 0


@dataclass(slots=True)
class NodeState:
    heartbeat_s: int
    last_seen: datetime
    online: bool = True
