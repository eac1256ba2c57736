"""The lanes as the control room sees them: retained state from the bus, last reads from
the events table."""

from __future__ import annotations

import logging
import threading
from html import escape
from typing import Any

import sqlite_utils

from gateway.storage import queries
from parkguard.errors import ContractError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import LaneState

log = logging.getLogger(__name__)


class LaneBoard:
    """Latest retained ``lane/+/state`` of every lane, kept current by a bus subscription.

    The handler runs on the bus's thread and only decodes and stores; readers get a copy.
    """

    def __init__(self, bus: Bus, site: str) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, LaneState] = {}
        self.bad_messages = 0
        bus.subscribe(topics.all_lane(site, "state"), self._on_state)

    def _on_state(self, topic: str, payload: bytes) -> None:
        try:
            state = LaneState.from_json(payload)
        except ContractError as error:
            self.bad_messages += 1
            log.warning("web: ignored lane state on %s: %s", topic, error)
            return
        with self._lock:
            self._states[state.lane] = state

    def states(self) -> dict[str, LaneState]:
        with self._lock:
            return dict(self._states)


def lanes_view(board: LaneBoard, db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every lane the bus or the events table knows, with its state and last reads."""
    states = board.states()
    names = sorted(set(states) | set(queries.known_lanes(db)))
    view = []
    for name in names:
        state = states.get(name)
        view.append({
            "lane": name,
            "online": state.online if state else None,
            "direction": state.direction if state else None,
            "mode": state.mode if state else None,
            "barrier": state.barrier if state else "unknown",
            "queue": state.queue if state else 0,
            "state_ts": state.ts.isoformat() if state else None,
            "reads": queries.lane_reads(db, name),
        })
    return view


def plate_snapshot_svg(plate: str | None, ts: str) -> str:
    """A plate-shaped picture of a read, for the lane card.

    The wire contract carries no camera image (frames stay on the lane), so the card shows
    the read as the lane's display would: the text on a blue plate, with the time.
    """
    text = escape(plate or "未识别 unread")
    fill = "#0b4ea2" if plate else "#777"
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="220" height="70" viewBox="0 0 220 70" '
        'role="img">'
        f'<rect x="2" y="2" width="216" height="50" rx="6" fill="{fill}" stroke="#fff" '
        'stroke-width="3"/>'
        f'<text x="110" y="36" font-size="24" font-family="sans-serif" fill="#fff" '
        f'text-anchor="middle">{text}</text>'
        f'<text x="110" y="66" font-size="11" font-family="monospace" fill="#333" '
        f'text-anchor="middle">{escape(ts)}</text></svg>'
    )
