"""Cars waiting at an exit lane until their money is taken, and that lane's open once it is.

An exit with a fee due is refused (``payment_due``) and the car waits at the barrier
(docs/payments.md). The gateway notes which lane each such car waits at; when money arrives
for its session (the provider's callback, a 付款码 charged, cash or a waiver at the
dashboard) it orders that lane ``open`` with ``{"session_id", "settled"}``, signed and
audited as every lane command is. A declined 付款码 at a waiting car puts the decline on the
lane's display instead, and the car keeps waiting.

A car stops waiting when it passes, when the next decide request comes from its lane (it
backed out and another car is there, or it is asked about again), or when it waits at
another lane. Kept in memory on the worker and rebuilt from the store when the gateway
starts (:meth:`ExitLanes.reload` with :meth:`GatewayStore.waiting_at_exits`: each exit lane's
latest decision, if it refused a car whose stay is still open for money and the lane has
reported nothing since), so a driver who pays on the phone after a restart is let out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.lanes.commands import LaneCommander, LaneCommandError
from wire.contract.messages import LaneCommand

log = logging.getLogger(__name__)

PayLink = Callable[[str, str, str], "str | None"]
"""(plate, lane, session_id) → the pay-page link an exit lane shows as a QR code, or None."""

DECLINED_ZH = "付款码支付失败 请扫码或按帮助"
DECLINED_EN = "Code declined: scan QR or press Help"


@dataclass(frozen=True, slots=True)
class WaitingCar:
    """A car held at an exit lane for money: what the lane card shows."""

    lane: str
    session_id: str
    plate: str
    due_fen: int
    since: datetime


class ExitLanes:
    """Which exit lane each car with a fee due waits at; opens it when the money is in.

    Worker thread only (decides, lane events and office work all run there), except
    :meth:`lane_mode`/:meth:`set_mode`, which the bus thread feeds from retained lane states.
    """

    def __init__(self, *, commander: LaneCommander | None = None,
                 pay_link: PayLink | None = None) -> None:
        self._commander = commander
        self._pay_link = pay_link
        self._by_session: dict[str, WaitingCar] = {}
        self._modes: dict[str, str] = {}
        self.opened = 0
        """Opens ordered because money came in (a count for tests and the simulator)."""

    # what the lanes report ---------------------------------------------------------------

    def set_mode(self, lane: str, mode: str) -> None:
        self._modes[lane] = mode

    def lane_mode(self, lane: str) -> str:
        """The lane's last reported mode (``normal`` when it never said)."""
        return self._modes.get(lane, "normal")

    def pay_url(self, plate: str, lane: str, session_id: str) -> str | None:
        return None if self._pay_link is None else self._pay_link(plate, lane, session_id)

    # who waits where ---------------------------------------------------------------------

    def reload(self, rows: Iterable[dict[str, Any]]) -> None:
        """The cars found waiting when the gateway starts, oldest first (rows of
        :meth:`~gateway.storage.store.GatewayStore.waiting_at_exits`): a later one at the
        same lane, or of the same stay, replaces an earlier one."""
        self._by_session.clear()
        for row in rows:
            self.asked(row["lane"])
            self.waits(WaitingCar(row["lane"], row["session_id"], row["plate"],
                                  int(row["fee_fen"]),
                                  datetime.fromisoformat(row["answered_at"])))

    def asked(self, lane: str) -> None:
        """A decide request from ``lane``: whichever car waited there is gone (or is being
        asked about again, and is noted afresh if it still owes)."""
        for session_id in [s for s, car in self._by_session.items() if car.lane == lane]:
            del self._by_session[session_id]

    def waits(self, car: WaitingCar) -> None:
        self._by_session[car.session_id] = car

    def left(self, session_id: str) -> None:
        """The car went through (or out some other way): nobody waits for its money."""
        self._by_session.pop(session_id, None)

    def at(self, lane: str) -> WaitingCar | None:
        return next((car for car in self._by_session.values() if car.lane == lane), None)

    def of(self, session_id: str) -> WaitingCar | None:
        return self._by_session.get(session_id)

    def waiting(self) -> list[WaitingCar]:
        return sorted(self._by_session.values(), key=lambda car: (car.lane, car.since))

    # orders --------------------------------------------------------------------------------

    def open_for(self, session_id: str, settled: str, *, actor: str,
                 reason: str) -> LaneCommand | None:
        """The money for ``session_id`` is in: open the lane its car waits at, saying how it
        was settled; None when no car of that session waits (prepaid on the way to the car:
        the exit will find nothing due)."""
        car = self._by_session.pop(session_id, None)
        if car is None:
            return None
        if self._commander is None:
            log.warning("gateway: %s paid (%s) at %s but this gateway cannot command lanes",
                        session_id, settled, car.lane)
            return None
        try:
            command = self._commander.open(car.lane, actor=actor, reason=reason,
                                           args={"session_id": session_id,
                                                 "settled": settled})
        except LaneCommandError as error:  # the money stays booked; a guard opens by hand
            log.error("gateway: %s paid (%s) but %s cannot be opened: %s", session_id,
                      settled, car.lane, error)
            return None
        self.opened += 1
        return command

    def declined(self, session_id: str, why: str) -> LaneCommand | None:
        """A 付款码 was declined for a waiting car: tell the driver on the lane's display;
        the car keeps waiting."""
        car = self._by_session.get(session_id)
        if car is None or self._commander is None:
            return None
        try:
            return self._commander.display(
                car.lane, DECLINED_ZH, DECLINED_EN, actor="gateway:payments",
                reason=f"payment code declined ({why}) for {session_id}")
        except LaneCommandError as error:
            log.error("gateway: cannot tell %s of a declined code: %s", car.lane, error)
            return None
