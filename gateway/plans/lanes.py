"""What the plans need of the lanes: signed, audited orders (``LaneCommander`` fits)."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class LaneOrders(Protocol):
    @property
    def lanes(self) -> tuple[str, ...]: ...

    def display(self, lane: str, zh: str, en: str, *, actor: str, reason: str) -> object: ...

    def hold_open(self, lane: str, *, actor: str, reason: str) -> object: ...

    def close(self, lane: str, *, actor: str, reason: str) -> object: ...


def every_lane(orders: LaneOrders | None, what: str, *, actor: str, reason: str,
               text: tuple[str, str] | None = None) -> int:
    """``display`` (with ``text``), ``hold_open`` or ``close`` on every lane; one lane that
    cannot be ordered does not stop the others. Returns how many were ordered."""
    if orders is None:
        return 0
    done = 0
    for lane in orders.lanes:
        try:
            if what == "display" and text is not None:
                orders.display(lane, text[0], text[1], actor=actor, reason=reason)
            elif what == "hold_open":
                orders.hold_open(lane, actor=actor, reason=reason)
            else:
                orders.close(lane, actor=actor, reason=reason)
            done += 1
        except Exception:
            log.exception("plans: %s on lane %s failed", what, lane)
    return done
