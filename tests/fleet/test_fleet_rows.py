"""What the fleet reads from a message, without NATS or PostgreSQL (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fleet.rows import Delivered, Rows, SessionPassage, _decode, read
from fleet.store import _one_per_session
from parkguard.errors import ContractError
from wire.contract.messages import decode
from wire.contract.topics import parse_topic

TS = "2026-05-06T02:00:00Z"


def _lane_event(seq: int, body: dict[str, object]) -> Delivered:
    payload = {"v": 1, "event_id": f"north-out1-{seq:06d}", "seq": seq, "ts": TS,
               "lane": "out1", **body}
    return Delivered("parkguard.v1.north.lane.out1.event", json.dumps(payload).encode(), seq)


def _money(message: Delivered) -> int:
    rows = read(message)
    assert isinstance(rows, Rows), rows
    return rows.payment.fee_fen if rows.payment is not None else 0


def test_money_paid_by_payment_code_counts_once_at_the_code_not_again_at_the_exit() -> None:
    code = _lane_event(1, {"type": "payment_code", "code": "134567890123456789",
                           "plate": "粤B12345", "session_id": "s1", "fee_fen": 500})
    passed = {"type": "passed", "direction": "exit", "plate": "粤B12345",
              "correlation_id": "corr-0001", "session_id": "s1", "fee_fen": 500}
    exit_by_code = _lane_event(2, {**passed, "settled": "payment_code"})
    exit_paid_online = _lane_event(3, {**passed, "settled": "paid_online",
                                       "event_id": "north-out1-x00003"})
    assert _money(code) == 500
    assert _money(exit_by_code) == 0  # the lane's payment_code event is the payment
    assert _money(exit_paid_online) == 500


def test_one_passage_per_session_keeps_the_last() -> None:
    """The last passage per session and direction; its plate is chosen apart (the first seen
    in either direction: tests/fleet/test_fleet_store.py)."""
    at = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
    first = SessionPassage("north", "s1", "entry", "in1", "粤B1", at, 0, "decision")
    again = SessionPassage("north", "s1", "entry", "in2", None, at, 0, "decision")
    other = SessionPassage("south", "s1", "entry", "in1", "粤B2", at, 0, "decision")
    kept = _one_per_session([first, again, other])
    assert [(p.site, p.lane, p.plate) for p in kept] == [("north", "in2", None),
                                                         ("south", "in1", "粤B2")]


def test_the_lane_event_fast_path_answers_as_the_contract_does() -> None:
    """fleet.rows reads lane events without the contract's decode (the bench's reading time);
    it must keep and refuse exactly what decode keeps and refuses, with the same reason."""
    good = {"v": 1, "event_id": "north-out1-000001", "seq": 1, "ts": TS, "lane": "out1",
            "type": "passed", "direction": "exit", "plate": "粤B12345",
            "correlation_id": "corr-0001", "session_id": "s1", "fee_fen": 500,
            "settled": "cash"}
    payloads: list[bytes] = [
        json.dumps(good).encode(),
        json.dumps({**good, "lane": "in1"}).encode(),  # another lane's event on out1's topic
        json.dumps({**good, "fee_fen": -5}).encode(),
        json.dumps({**good, "type": "teleported"}).encode(),
        json.dumps({k: v for k, v in good.items() if k != "seq"}).encode(),
        json.dumps({**good, "extra": 1}).encode(),
        json.dumps({"v": 1, "event_id": "north-out1-000002", "seq": 2, "ts": TS,
                    "lane": "out1", "type": "fault", "code": "jam", "detail": "x"}).encode(),
        b"not json", b"{}", b"[]",
    ]
    topic = "parkguard/v1/north/lane/out1/event"
    kept = refused = 0
    for payload in payloads:
        try:
            expected: object = decode(topic, payload)
        except ContractError as error:
            expected = str(error)
        try:
            got: object = _decode(topic, parse_topic(topic), payload)
        except ContractError as error:
            got = str(error)
        assert got == expected, payload
        kept += not isinstance(expected, str)
        refused += isinstance(expected, str)
    assert kept >= 2 and refused >= 5  # both answers were exercised
