"""What the alarm monitor keeps across a gateway restart: each sensor node's count, its flood
state and its fire-panel state, one row per node in the gateway's SQLite file
(``sensor_nodes``, migration set ``parkguard.alerts``).

Without it a restarted gateway knew the site's flood level only from the open alerts and
no node's level: its first tick computed level 0 and published "clear" while the water was
still high. Resends that arrive after a restart are recognised by the remembered count.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils
from pydantic import TypeAdapter, ValidationError

from gateway.safety.alarms.intake import SeqTrack
from gateway.safety.alarms.state import FloodState, PanelState
from parkguard.clock import Clock, utc_iso


@dataclass(slots=True)
class SavedNode:
    """One node's row: JSON in SQLite (a seq of any size fits)."""

    track: SeqTrack
    flood: FloodState | None = None
    panel: PanelState | None = None


_ADAPTER = TypeAdapter(SavedNode)


class SensorMemory:
    """Reads all nodes at start; writes a node after each reading it acted on."""

    def __init__(self, db: sqlite_utils.Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def load(self) -> dict[str, SavedNode]:
        """Every node saved so far; a row that no longer parses is skipped (the node's next
        reading writes it afresh), so a restart never fails on it."""
        saved: dict[str, SavedNode] = {}
        for row in self._db.query("SELECT node, state FROM sensor_nodes ORDER BY node"):
            try:
                saved[row["node"]] = _ADAPTER.validate_json(row["state"])
            except ValidationError:
                continue
        return saved

    def save(self, node: str, state: SavedNode) -> None:
        with self._db.atomic():
            self._db.execute(
                "INSERT INTO sensor_nodes (node, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                [node, _ADAPTER.dump_json(state).decode(), utc_iso(self._clock.now())])
