"""The lanes as the control room sees them: retained state from the bus, when each lane was
last heard from, its last reads and what needs a guard (refusals, help calls, faults) from
the events table.

A lane publishes its retained state when something changes, on every connect, and as a
heartbeat (the same message again) at least every ``[timing] state_heartbeat_s``, 10 s
(firmware/lane/status.py); a lane whose connection dies is marked offline by its Last Will.
What the board cannot know by itself is whether what it holds is still true: when the
gateway's own connection to the broker is down, every state it holds is stale; and a lane
that says it is online but has not been heard from (state, heartbeat or event) for longer
than ``stale_s`` (35 s by default: three heartbeats missed) is stale too: its worker hung,
or its messages stopped reaching the broker before the broker noticed. A stale lane is
shown grey with how long ago it was heard. Ages are on the dashboard's clock, the time each
message arrived, never the lane's own stamp (a lane's clock may be off).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any, Final

import sqlite_utils

from gateway.storage import queries
from gateway.web.words import say
from parkguard.clock import Clock
from parkguard.core.plates import ColourClass, PlateError, PlateSeries, parse_plate
from parkguard.errors import ContractError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import LaneState

log = logging.getLogger(__name__)

#: How many of a lane's latest events are searched for what needs a guard, and how many
#: of those the card shows.
RECENT_EVENTS: Final = 500
NOTICES_SHOWN: Final = 3


class LaneBoard:
    """Latest retained ``lane/+/state`` of every lane and when it arrived, kept current by a
    bus subscription.

    The handler runs on the bus's thread and only decodes and stores; readers get a copy.
    """

    def __init__(self, bus: Bus, site: str, *, clock: Clock, stale_s: float = 0) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, LaneState] = {}
        self._heard: dict[str, datetime] = {}
        self._bus = bus
        self._clock = clock
        self.stale_s = stale_s
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
            self._heard[state.lane] = self._clock.now()

    def states(self) -> dict[str, LaneState]:
        with self._lock:
            return dict(self._states)

    def heard(self) -> dict[str, datetime]:
        """When each lane's state last arrived, on the gateway's clock."""
        with self._lock:
            return dict(self._heard)

    @property
    def bus_connected(self) -> bool:
        """Whether the gateway hears the broker now (if not, nothing here is current)."""
        return self._bus.connected.is_set()


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether a lane's card can be believed, and since when it was last heard from."""

    stale: bool
    age_s: int | None
    why: str

    def as_json(self) -> dict[str, Any]:
        return {"stale": self.stale, "age_s": self.age_s, "why": self.why,
                "seen": seen_words(self.age_s)}


def seen_words(age_s: int | None) -> str:
    """``40 秒前 last seen 40 s ago`` (minutes past two, hours past two)."""
    if age_s is None:
        return "从未收到 never heard"
    if age_s < 120:
        return f"{age_s} 秒前 last seen {age_s} s ago"
    if age_s < 7200:
        return f"{age_s // 60} 分钟前 last seen {age_s // 60} min ago"
    return f"{age_s // 3600} 小时前 last seen {age_s // 3600} h ago"


def liveness(board: LaneBoard, now: datetime, heard: datetime | None,
             online: bool | None) -> Liveness:
    """A lane is stale when the gateway has lost the bus, or (``stale_s`` not 0) when it
    said it was online and has not been heard from for longer than that."""
    age = None if heard is None else max(0, int((now - heard).total_seconds()))
    if not board.bus_connected:
        return Liveness(True, age, "网关与消息总线断开 gateway lost the broker")
    if board.stale_s and online and (age is None or age > board.stale_s):
        return Liveness(True, age, "车道无回应 lane silent")
    return Liveness(False, age, "")


def plate_look(plate: str | None) -> dict[str, str]:
    """How a read is drawn: the CSS colour class of its series, and the series' words."""
    if not plate:
        return {"colour": "unread", "series": "未识别 unread"}
    try:
        parsed = parse_plate(plate)
    except PlateError:
        return {"colour": "unknown", "series": "非标准 not a standard plate"}
    series: PlateSeries = parsed.series
    colour = "blue" if series.colour is ColourClass.BLUE_OR_YELLOW else {
        ColourClass.YELLOW: "yellow", ColourClass.GRADIENT_GREEN: "green",
        ColourClass.YELLOW_GREEN: "yellow-green", ColourClass.WHITE: "white",
        ColourClass.BLACK: "black"}[series.colour]
    return {"colour": colour, "series": f"{series.label_zh} {series.label_en}"}


#: Fill and text colour of each series colour (the snapshot picture).
_PAINT: Final = {
    "blue": ("#0b4ea2", "#fff"), "yellow": ("#f2c200", "#111"),
    "green": ("#5fd38d", "#111"), "yellow-green": ("#b8d43a", "#111"),
    "white": ("#f7f7f7", "#111"), "black": ("#111", "#fff"),
    "unknown": ("#6b7580", "#fff"), "unread": ("#777", "#fff"),
}


def lane_notices(db: sqlite_utils.Database, lane: str) -> list[dict[str, Any]]:
    """What at this lane needs a guard, newest first: refusals, help calls, faults (and
    their clearing) and tailgates among its latest events."""
    rows = db.query(
        "SELECT event_id, type, ts, payload FROM events WHERE lane = :lane AND seq > "
        "(SELECT COALESCE(MAX(seq), 0) FROM events WHERE lane = :lane) - :window "
        "AND (type IN ('help_pressed', 'fault', 'fault_cleared', 'tailgate') OR "
        "(type = 'decision' AND json_extract(payload, '$.action') = 'refuse')) "
        "ORDER BY seq DESC LIMIT :shown",
        {"lane": lane, "window": RECENT_EVENTS, "shown": NOTICES_SHOWN})
    notices = []
    for row in rows:
        payload = json.loads(row["payload"])
        kind = row["type"]
        if kind == "decision":
            kind, text = "refusal", "拒绝 refused · " + say(payload.get("reason"), "reason")
            detail = payload.get("plate") or ""
        elif kind == "fault":
            text, detail = "故障 fault · " + say(payload.get("code"), "fault"), \
                payload.get("detail", "")
        elif kind == "fault_cleared":
            text, detail = "恢复 cleared · " + say(payload.get("code"), "fault"), ""
        elif kind == "tailgate":
            text, detail = say("tailgate", "type"), f"{payload.get('vehicles', 2)} 辆 vehicles"
        else:
            text, detail = say("help_pressed", "type"), ""
        notices.append({"event_id": row["event_id"], "kind": kind, "ts": row["ts"],
                        "text": text, "detail": detail})
    return notices


def last_event_received(db: sqlite_utils.Database, lane: str) -> datetime | None:
    """When the gateway received this lane's latest event (its own clock)."""
    row = next(db.query("SELECT received_at FROM events WHERE lane = ? ORDER BY seq DESC "
                        "LIMIT 1", [lane]), None)
    if row is None:
        return None
    try:
        return datetime.fromisoformat(str(row["received_at"]).replace("Z", "+00:00"))
    except ValueError:
        return None


def lanes_view(board: LaneBoard, db: sqlite_utils.Database,
               now: datetime) -> list[dict[str, Any]]:
    """Every lane the bus or the events table knows, with its state, whether it is stale,
    its last reads (with their plate colours) and what needs a guard there."""
    states = board.states()
    heard = board.heard()
    names = sorted(set(states) | set(queries.known_lanes(db)))
    view = []
    for name in names:
        state = states.get(name)
        last = [moment for moment in (heard.get(name), last_event_received(db, name))
                if moment is not None]
        alive = liveness(board, now, max(last) if last else None,
                         state.online if state else None)
        view.append({
            "lane": name,
            "online": state.online if state else None,
            "direction": state.direction if state else None,
            "mode": state.mode if state else None,
            "barrier": state.barrier if state else "unknown",
            "queue": state.queue if state else 0,
            "state_ts": state.ts.isoformat() if state else None,
            "liveness": alive.as_json(),
            "reads": [{**read, **plate_look(read["plate"])}
                      for read in queries.lane_reads(db, name)],
            "notices": lane_notices(db, name),
        })
    return view


def plate_snapshot_svg(plate: str | None, ts: str) -> str:
    """A plate-shaped picture of a read, in its series' colour, for the lane card.

    Drawn from the read alone (the text on a plate of its series' colour, with the time),
    so it is there even when the lane cannot give the camera's picture (docs/evidence.md).
    """
    text = escape(plate or "未识别 unread")
    fill, ink = _PAINT[plate_look(plate)["colour"]]
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="220" height="70" viewBox="0 0 220 70" '
        'role="img">'
        f'<rect x="2" y="2" width="216" height="50" rx="6" fill="{fill}" stroke="#888" '
        'stroke-width="3"/>'
        f'<text x="110" y="36" font-size="24" font-family="sans-serif" fill="{ink}" '
        f'text-anchor="middle">{text}</text>'
        f'<text x="110" y="66" font-size="13" font-family="monospace" fill="#333" '
        f'text-anchor="middle">{escape(ts)}</text></svg>'
    )
