"""The gate bench's hop trace (simulator/gate_trace.py) and the gateway's step aside after
its decide replies (gateway/runtime/batches.py): pure parts, no broker."""

from __future__ import annotations

import json
import math
import time

from gateway.runtime.batches import REPLY_HEADSTART_S, Batches
from gateway.runtime.decide import kept_json
from simulator.gate_trace import BESIDE, HOPS, SEGMENTS, GateTrace


def _car(trace: GateTrace, lane: str, tag: str | None, correlation_id: str,
         start: float) -> None:
    """One car at ``lane`` with every lane hop 1 ms apart from ``start`` (seconds)."""
    trace.begin(lane, start, tag)
    trace.name(lane, correlation_id)
    car = trace.cars[-1]
    for step, hop in enumerate(HOPS):
        if not hop.startswith("gw_") and hop not in ("arm", "verdict"):
            car.marks[hop] = start + step / 1000


def test_the_segments_tile_each_traced_car_and_the_gateway_hops_join_by_correlation_id(
) -> None:
    trace = GateTrace()
    _car(trace, "in1", "process", "c-1", 10.0)
    _car(trace, "in1", None, "c-warm", 20.0)  # a warm-up car: not reported
    _car(trace, "out1", "process", "c-2", 30.0)
    _car(trace, "out1", "inline", "c-3", 40.0)
    # The gateway's hops as another process hands them back: (hop, instant, id); the last
    # car's reply never came (the lane decided alone): it has no gateway hops.
    for correlation_id, start in (("c-1", 10.0), ("c-warm", 20.0), ("c-2", 30.0)):
        for hop in ("gw_in", "gw_take", "verdict", "gw_out"):
            trace.merge([(hop, start + HOPS.index(hop) / 1000, correlation_id)])
    assert trace.rows("in3", "nobody") == []
    assert trace.rows("inline", "inline") == []  # c-3 lacks hops: left out, not half-counted
    rows = trace.rows("traced", "process")
    assert [row.name for row in rows] == ["traced"] + [n for n, _, _ in SEGMENTS + BESIDE]
    total, segments = rows[0], rows[1:1 + len(SEGMENTS)]
    assert total.count == 2
    assert math.isclose(total.p50, (len(HOPS) - 1) * 1.0)  # arm → relay, ms
    for index in range(total.count):
        assert math.isclose(sum(row.samples[index] for row in segments), total.samples[index])
    for row, (_, first, last) in zip(segments, SEGMENTS, strict=True):
        assert math.isclose(row.p50, HOPS.index(last) - HOPS.index(first)), row.name


def test_a_publish_that_returns_after_the_peer_has_the_message_counts_its_hop_as_zero(
) -> None:
    """paho may write the packet inside ``publish``; a publishing thread then kept off the
    CPU returns after the peer's ``on_message``: no segment may come out negative."""
    trace = GateTrace()
    _car(trace, "in1", "process", "c-1", 10.0)
    gateway = {"gw_in": 10.0055, "gw_take": 10.007, "verdict": 10.008, "gw_out": 10.012}
    trace.merge([(hop, at, "c-1") for hop, at in gateway.items()])
    # "sent" (publish returned) at 10.005 + 20 ms of waiting for a CPU; "gw_out" after the
    # lane already has the reply (reply_in at 10.010)
    trace.cars[0].marks.update(sent=10.025, reply_in=10.010, woke=10.011, decided=10.012,
                               relay=10.013)
    rows = {row.name: row for row in trace.rows("traced", "process")}
    by_segment = {name: rows[name].samples[0] for name, _, _ in SEGMENTS}
    assert all(value >= 0 for value in by_segment.values()), by_segment
    assert by_segment["  paho → broker → gateway's paho (hop 1)"] == 0
    assert by_segment["  paho → broker → lane's paho (hop 2)"] == 0
    assert math.isclose(sum(by_segment.values()), rows["traced"].samples[0])


def test_gateway_marks_name_their_car_from_the_payload_after_the_run() -> None:
    trace = GateTrace()
    trace.gateway_mark("gw_in", json.dumps({"correlation_id": "c-9"}).encode(), at=1.5)
    trace.gateway_mark("verdict", "c-9", at=2.5)
    trace.gateway_mark("gw_in", b"not json", at=3.0)
    assert trace.gateway_marks() == [("gw_in", 1.5, "c-9"), ("verdict", 2.5, "c-9"),
                                     ("gw_in", 3.0, "")]


class _Receipt:
    def __init__(self, acknowledged: bool | None) -> None:
        self.answer = acknowledged
        self.asked = 0

    def acknowledged(self) -> bool | None:
        self.asked += 1
        return self.answer


def test_the_worker_steps_aside_for_its_replies_only_until_the_broker_has_them_or_briefly(
) -> None:
    acknowledged, given_up = _Receipt(True), _Receipt(None)
    Batches._let_replies_go([acknowledged, given_up])
    assert acknowledged.asked == 1 and given_up.asked == 1  # no wait: nothing to wait for
    pending = _Receipt(False)
    started = time.perf_counter()
    Batches._let_replies_go([pending])
    waited = time.perf_counter() - started
    assert pending.asked > 1  # it looked again while waiting
    assert waited >= REPLY_HEADSTART_S  # then gave up: the write is only delayed
    assert waited < 5.0  # bounded (a broker that never acks does not stop the gateway)


def test_what_is_kept_with_a_decision_is_made_when_it_is_written() -> None:
    assert kept_json(None) is None
    assert kept_json(lambda: {"plate": "粤B12345", "fee_fen": 500}) == \
        '{"plate": "粤B12345", "fee_fen": 500}'
