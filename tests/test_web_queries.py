"""The dashboard's read models (gateway/storage/queries.py) on a gateway file just opened:
every table they read is there (the opener applies every migration), so each answers
"nothing" rather than fail, and the web layer needs no "does this table exist yet" guard."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from gateway.storage import queries
from gateway.storage.store import GatewayStore


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    store = GatewayStore.open(tmp_path / "gateway.db")
    try:
        with store.reader() as reader:
            yield reader
    finally:
        store.close()


def test_every_read_model_answers_nothing_on_a_new_file(db: sqlite_utils.Database) -> None:
    empty_lists = [
        queries.lane_reads(db, "in1"), queries.known_lanes(db),
        queries.sessions_inside(db), queries.plate_history(db, "粤B12345"),
        queries.seen_plates(db), queries.session_decisions(db, "s-1"),
        queries.session_payments(db, "s-1"), queries.session_overrides(db, "s-1"),
        queries.refundable_payments(db), queries.merchants(db),
        queries.merchant_coupons(db, "m-tea"), queries.passes(db), queries.access_lists(db),
        queries.active_alerts(db), queries.resolved_alerts(db, 50),
        queries.audit_entries(db, last=10),
    ]
    assert all(found == [] for found in empty_lists)
    assert queries.plate_visits(db) == {}
    assert queries.plate_read(db, "e-1") is None
    assert queries.session_row(db, "s-1") is None
    assert queries.payment_order(db, "sim-1") is None
    assert queries.alert(db, "a-1") is None
    assert queries.ack_token_used(db, "0" * 64) is False
