"""The gateway's per-passage reads stay lookups as the site's history grows: each must be
answered through an index, never by scanning a table that gains rows with every car (the
soak found two such scans by their days slowing down: docs/scenarios.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.runtime.sessions import HELD_FOR_MONEY
from gateway.storage.database import open_database

PER_PASSAGE = {
    "a paid exit's payment_due decision": (HELD_FOR_MONEY, ["s-1", "out1"]),
    "the cars inside": ("SELECT * FROM sessions WHERE state = 'open'", []),
}


@pytest.mark.parametrize("what", sorted(PER_PASSAGE))
def test_a_per_passage_read_uses_an_index(tmp_path: Path, what: str) -> None:
    db = open_database(tmp_path / "gateway.db")
    sql, params = PER_PASSAGE[what]
    plan = [str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert not any(step.startswith("SCAN") for step in plan), plan
    assert any(step.startswith("SEARCH") and "USING INDEX" in step for step in plan), plan
