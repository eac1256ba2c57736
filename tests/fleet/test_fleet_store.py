"""The fleet's batch write (fleet/store.py) against a private PostgreSQL: what lands does not
depend on how the messages were cut into batches, and a batch with a repeat in it (which
turns off the one-statement path) writes its new events' sessions and payments all the same.
"""

from __future__ import annotations

import json
import random

import psycopg
import pytest

from fleet.rows import Delivered
from fleet.store import write_batch

pytestmark = pytest.mark.integration

TABLES = {
    "events": "SELECT event_id, site, kind, node, type, seq, ts, stream_seq, payload "
              "FROM events ORDER BY event_id",
    "sessions": "SELECT * FROM sessions ORDER BY site, session_id",
    "payments": "SELECT * FROM payments ORDER BY event_id",
    "dead": "SELECT subject, stream_seq, reason FROM dead_letters ORDER BY stream_seq",
}


def passed(site: str, lane: str, seq: int, session: str | None, direction: str,
           plate: str | None, fee: int, settled: str) -> tuple[str, bytes]:
    body: dict[str, object] = {
        "v": 1, "event_id": f"{site}-{lane}-{seq:07d}", "seq": seq,
        "ts": f"2026-05-06T02:{seq // 60 % 60:02d}:{seq % 60:02d}.{seq % 1000:03d}Z",
        "lane": lane, "type": "passed", "direction": direction,
        "correlation_id": f"corr{seq:08d}", "fee_fen": fee, "settled": settled}
    if plate is not None:
        body["plate"] = plate
    if session is not None:
        body["session_id"] = session
    return f"parkguard.v1.{site}.lane.{lane}.event", json.dumps(body, ensure_ascii=False).encode()


def traffic(rnd: random.Random) -> list[Delivered]:
    """Entries and exits of 30 sessions at three sites in random order, some without a
    session or plate, a few malformed, and redeliveries of earlier messages."""
    out: list[tuple[str, bytes]] = []
    for seq in range(1, rnd.randint(80, 300)):
        site = rnd.choice("abc")
        session = rnd.choice([None, *(f"s{i}" for i in range(30))])
        roll = rnd.random()
        if roll < 0.45:
            out.append(passed(site, "in1", seq, session, "entry",
                              rnd.choice([None, "粤B1", "粤B2", "京A9"]), 0, "decision"))
        elif roll < 0.9:
            out.append(passed(site, "out1", seq, session, "exit", rnd.choice([None, "粤B1"]),
                              rnd.choice([0, 100, 500]),
                              rnd.choice(["paid_online", "cash", "decision"])))
        elif roll < 0.93:
            out.append((f"parkguard.v1.{site}.lane.out1.event", b'{"v":1,"fee_fen":-5}'))
        elif out:
            out.append(rnd.choice(out))
    return [Delivered(subject, data, n + 1) for n, (subject, data) in enumerate(out)]


def tables(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


def clear(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE events, sessions, payments, dead_letters CASCADE")


def test_what_lands_does_not_depend_on_the_batches(fleet_dsn: str) -> None:
    for trial in range(12):
        rnd = random.Random(trial)
        messages = traffic(rnd)
        cuts = sorted(rnd.sample(range(1, len(messages)), k=4))
        batches = [messages[a:b] for a, b in zip([0, *cuts], [*cuts, len(messages)],
                                                 strict=True)]
        batches.append(batches[1])  # a whole batch delivered again (killed before its ack)
        clear(fleet_dsn)
        with psycopg.connect(fleet_dsn) as conn:
            batched = [write_batch(conn, batch) for batch in batches]
        in_batches = tables(fleet_dsn)
        clear(fleet_dsn)
        with psycopg.connect(fleet_dsn) as conn:
            for message in messages:
                write_batch(conn, [message])
        assert in_batches == tables(fleet_dsn), f"trial {trial}"
        again = batched[-1]
        assert again.new == 0 and again.repeated + again.dead == len(batches[1]), f"trial {trial}"
        assert sum(r.new for r in batched) == len(in_batches["events"]), f"trial {trial}"


def test_a_batch_with_a_repeat_still_writes_its_new_sessions_and_payments(
        fleet_dsn: str) -> None:
    entry = passed("a", "in1", 1, "s1", "entry", "粤B1", 0, "decision")
    exit_ = passed("a", "out1", 2, "s1", "exit", "粤B1", 500, "cash")
    other = passed("a", "out1", 3, "s2", "exit", "粤B2", 300, "paid_online")
    with psycopg.connect(fleet_dsn) as conn:
        first = write_batch(conn, [Delivered(*entry, 1)])
        # The entry again beside two new exits: not every event is new.
        mixed = write_batch(conn, [Delivered(*entry, 1), Delivered(*exit_, 2),
                                   Delivered(*other, 3)])
        again = write_batch(conn, [Delivered(*exit_, 2), Delivered(*other, 3)])
        sessions = conn.execute("SELECT session_id, plate, entry_lane, exit_lane, fee_fen, "
                                "settled FROM sessions ORDER BY session_id").fetchall()
        paid = conn.execute("SELECT session_id, fee_fen FROM payments "
                            "ORDER BY session_id").fetchall()
    assert (first.new, mixed.new, mixed.repeated, again.new, again.repeated) == (1, 2, 1, 0, 2)
    assert sessions == [("s1", "粤B1", "in1", "out1", 500, "cash"),
                        ("s2", "粤B2", None, "out1", 300, "paid_online")]
    assert paid == [("s1", 500), ("s2", 300)]


def test_an_entry_and_its_exit_in_one_batch_make_one_session(fleet_dsn: str) -> None:
    entry = passed("b", "in1", 1, "s9", "entry", "京A9", 0, "decision")
    exit_ = passed("b", "out1", 2, "s9", "exit", "京A9", 100, "paid_online")
    with psycopg.connect(fleet_dsn) as conn:
        result = write_batch(conn, [Delivered(*entry, 1), Delivered(*exit_, 2)])
        row = conn.execute("SELECT plate, entry_lane, entered_at IS NOT NULL, exit_lane, "
                           "exited_at IS NOT NULL, fee_fen FROM sessions").fetchall()
    assert result.new == 2
    assert row == [("京A9", "in1", True, "out1", True, 100)]
