"""Patrols and inspections: the three-checks regime as configuration, SUN tag verification
and the compliance engine — pure (no I/O); the gateway's ``gateway.patrols.desk`` stores taps."""

from __future__ import annotations

from parkguard.core.patrol.engine import (
    STATUS_ORDER,
    FastLeg,
    ObligationResult,
    ObligationStatus,
    RoundResult,
    RoundStatus,
    Tap,
    Window,
    evaluate,
    evaluate_round,
    split_rounds,
    windows,
)
from parkguard.core.patrol.model import (
    ROLES,
    Checkpoint,
    Obligation,
    PatrolConfig,
    PatrolPerson,
    Period,
    Role,
    RosterShift,
    Route,
    load_patrol_config,
)
from parkguard.core.patrol.sun import (
    SunError,
    SunReading,
    counter_verdict,
    simulate_tap,
    verify_sun,
)

__all__ = [
    "ROLES",
    "STATUS_ORDER",
    "Checkpoint",
    "FastLeg",
    "Obligation",
    "ObligationResult",
    "ObligationStatus",
    "PatrolConfig",
    "PatrolPerson",
    "Period",
    "Role",
    "RosterShift",
    "RoundResult",
    "RoundStatus",
    "Route",
    "SunError",
    "SunReading",
    "Tap",
    "Window",
    "counter_verdict",
    "evaluate",
    "evaluate_round",
    "load_patrol_config",
    "simulate_tap",
    "split_rounds",
    "verify_sun",
    "windows",
]
