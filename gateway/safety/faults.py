"""Lane faults and lanes gone quiet become alerts for the squad leader and maintenance.

The operations plan says a barrier fault is reported to the squad leader and to maintenance.
A lane's ``fault`` event for a piece of equipment (:data:`EQUIPMENT_FAULTS`), its Last Will
(state ``offline``), or — with ``stale_after_s`` — silence for longer than that raises one
alert per open condition, keyed ``fault:{lane}:{code}`` or ``offline:{lane}``: the desk
returns the same alert while it is unresolved, so a lane repeating its fault (or a flapping
link) never sends a storm. The first step reaches the guard on duty, the squad leaders on
duty and the ``maintenance`` team at once; the ladder then escalates as for any alert until
someone acknowledges.

It ends by itself: ``fault_cleared`` with the same code (a device back), the next car
through the lane for a barrier fault (the boom works again), the lane's state ``online``
or any message from it for ``offline``.

Faults about a car rather than a device (a read that failed, a car that backed out) are
shown on the lanes page as before and alert nobody. Everything runs on the gateway's worker
and takes the gateway's clock (``tick(now)``).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Final

from gateway.safety.alerts import AlertDesk
from wire.contract.messages import Fault, FaultCleared, LaneEvent, Passed

log = logging.getLogger(__name__)

__all__ = ["BARRIER_FAULTS", "EQUIPMENT_FAULTS", "MAINTENANCE_TEAM", "LaneFaults"]

MAINTENANCE_TEAM: Final = "maintenance"
"""The roster team (``teams = ["maintenance"]``) told of every lane fault at once."""

BARRIER_FAULTS: Final = frozenset({"barrier_limit_timeout", "sequence_error"})
"""Barrier faults the lane clears by itself without a ``fault_cleared``: over once a car
goes through that lane."""

EQUIPMENT_FAULTS: Final = frozenset({
    *BARRIER_FAULTS, "camera_offline", "display_failed", "kiosk_device_lost",
    "journal_full",  # the lane's card filled (reported once it took writes again): make room
})
"""Fault codes that mean a device needs a person. ``kiosk_device_back`` clears
``kiosk_device_lost``."""

_CLEARS: Final = {"kiosk_device_back": "kiosk_device_lost"}


class LaneFaults:
    """Turns lane faults and silence into alerts, and their end into a resolve."""

    def __init__(self, alerts: AlertDesk, *, stale_after_s: float = 0) -> None:
        if stale_after_s < 0:
            raise ValueError(f"stale_after_s: must be 0 (off) or more, got {stale_after_s}")
        self._alerts = alerts
        self.stale_after_s = stale_after_s
        self._heard: dict[str, datetime] = {}
        self._offline: set[str] = set()

    # --- what the lanes say ---------------------------------------------------------------

    def fault(self, lane: str, code: str, detail: str, now: datetime) -> None:
        self.heard(lane, now)
        if code in _CLEARS:
            self.cleared(lane, _CLEARS[code], f"{code}: {detail}")
            return
        if code not in EQUIPMENT_FAULTS:
            return
        view, new = self._alerts.raise_alert(
            f"fault:{lane}:{code}", kind="lane_fault", severity="warning",
            title_zh=f"{lane} 车道故障 {code}", title_en=f"Lane {lane} fault: {code}",
            detail=detail[:512], team=MAINTENANCE_TEAM, also_roles=("squad_leader",))
        if new:
            log.warning("faults: %s %s raised %s", lane, code, view.alert_id)

    def cleared(self, lane: str, code: str, why: str = "fault cleared") -> None:
        self._alerts.resolve_key(f"fault:{lane}:{code}", "gateway", f"{lane}: {why}")

    def car_passed(self, lane: str, now: datetime) -> None:
        """A car went through: the lane's barrier works (its barrier faults are over)."""
        self.heard(lane, now)
        for code in BARRIER_FAULTS:
            self.cleared(lane, code, "a car went through")

    def state(self, lane: str, online: bool, now: datetime) -> None:
        """The lane's retained state: offline (its Last Will) alerts, online resolves."""
        if online:
            self.heard(lane, now)
            return
        self._heard[lane] = now
        self._went_offline(lane, "the lane reported offline (Last Will)")

    def on_event(self, event: LaneEvent, now: datetime) -> None:
        """Each new lane event, after its transaction committed."""
        if isinstance(event, Fault):
            self.fault(event.lane, event.code, event.detail, now)
        elif isinstance(event, FaultCleared):
            self.heard(event.lane, now)
            self.cleared(event.lane, event.code, f"fault_cleared: {event.detail}")
        elif isinstance(event, Passed):
            self.car_passed(event.lane, now)
        else:
            self.heard(event.lane, now)

    def heard(self, lane: str, now: datetime) -> None:
        """Anything from the lane: it is alive (the first time since the gateway started,
        an ``offline`` alert left open by an earlier run is resolved too)."""
        first = lane not in self._heard
        self._heard[lane] = now
        if lane in self._offline or first:
            self._offline.discard(lane)
            self._alerts.resolve_key(f"offline:{lane}", "gateway", f"{lane} is back")

    # --- the clock --------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[str]:
        """Lanes silent for longer than ``stale_after_s`` (0: off): each alerted once.
        Returns the lanes newly found stale."""
        if not self.stale_after_s:
            return []
        stale = [lane for lane, last in self._heard.items() if lane not in self._offline
                 and (now - last).total_seconds() > self.stale_after_s]
        for lane in stale:
            self._went_offline(lane, f"nothing heard for over {self.stale_after_s:.0f} s")
        return stale

    def _went_offline(self, lane: str, why: str) -> None:
        self._offline.add(lane)
        self._alerts.raise_alert(
            f"offline:{lane}", kind="lane_offline", severity="warning",
            title_zh=f"{lane} 车道离线", title_en=f"Lane {lane} offline", detail=why,
            team=MAINTENANCE_TEAM, also_roles=("squad_leader",))
