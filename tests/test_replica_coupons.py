"""Merchant coupons in the lanes' replicas: an offline exit prices with the same coupons, the
same pure tariff core and the same stacking as the gateway's bill.

Real parts: the gateway's SQLite file with its desks and :class:`ReplicaPublisher`, the
in-memory broker (the real bus's twin, with its packet limit), a :class:`LaneReplica` fed
from its topics, and a lane node on mock pins for the offline exit itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.lane.devices.display import RecordingDisplay
from firmware.lane.replica import LaneReplica
from gateway.lanes.replicas import ReplicaPublisher
from gateway.money.billing import Billing
from gateway.money.merchants import (
    MAX_LIVE_PER_PLATE,
    CouponGrant,
    IssuedCoupon,
    MerchantAccounts,
    TooManyCouponsError,
    rule_for_spend,
)
from gateway.money.passes import AccessDesk
from gateway.money.payments import PaymentDesk, SimulatedProvider
from gateway.money.pricing import EXAMPLE_TARIFF, SitePricing
from gateway.records.audit import AuditLog
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock, utc_iso
from tests.conftest import TEST_SITE
from tests.lane_harness import MemoryLane
from wire.contract import topics
from wire.contract.chunks import join_chunks
from wire.contract.messages import (
    MAX_PLATE_COUPONS,
    PlateCoupons,
    ReplicaChunk,
    ReplicaDelta,
    decode,
)
from wire.memory import MemoryBroker, MemoryBus

CAP = 6_000
WORKDAY = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)        # Monday 10:00 in Shanghai
NATIONAL_DAY = datetime(2026, 10, 2, 2, 0, tzinfo=UTC)  # a public holiday
PRE_MID_AUTUMN = datetime(2026, 9, 21, 2, 0, tzinfo=UTC)


class Gateway:
    """The gateway's file, desks and replica publisher on the in-memory broker, and lane
    out1's replica fed from its topics."""

    def __init__(self, path: Path, broker: MemoryBroker, start: datetime, *,
                 max_packet_size: int = 256 * 1024) -> None:
        self.clock = ManualClock(start)
        self.store = GatewayStore.open(path)
        db, audit = self.store.db, AuditLog(self.store.db, clock=self.clock)
        self.merchants = MerchantAccounts(db, clock=self.clock, audit=audit)
        payments = PaymentDesk(db, clock=self.clock, audit=audit,
                               provider=SimulatedProvider(b"test-secret", self.clock))
        self.billing = Billing(pricing=SitePricing.from_file(EXAMPLE_TARIFF),
                               merchants=self.merchants,
                               access=AccessDesk(db, clock=self.clock, audit=audit),
                               payments=payments)
        self.broker = broker
        self.bus = broker.bus("gateway", max_packet_size=max_packet_size).start()
        self.replicas = ReplicaPublisher(
            self.bus, TEST_SITE, self.clock, lanes=["out1"], store=self.store,
            access=self.billing.access, payments=payments, tariff_file=EXAMPLE_TARIFF,
            max_packet_size=max_packet_size, merchants=self.merchants)
        self.lane = LaneReplica(site=TEST_SITE, lane="out1")
        self.lane_bus: MemoryBus = broker.bus("lane-out1").start()
        for topic in self.lane.topics():
            self.lane_bus.subscribe(topic, self._deliver)
        self.merchants.open_account("M001", name="星巴克", actor="manager", reason="tenant")
        self.merchants.top_up("M001", 1_000_000, actor="cashier", reason="deposit")

    def _deliver(self, topic: str, payload: bytes) -> None:
        self.lane.on_message(topic, payload)

    def close(self) -> None:
        self.lane_bus.stop()
        self.bus.stop()
        self.store.close()

    def enter(self, session_id: str, plate: str) -> None:
        """A car comes in now: its session stored and sent to the lane."""
        now = self.clock.now()
        self.store.db.table("sessions").insert({
            "session_id": session_id, "plate": plate, "state": "open", "entry_lane": "in1",
            "entry_at": utc_iso(now), "fee_fen": 0, "access": "visitor"})
        self.replicas.session_opened(session_id, plate, now)
        self.broker.settle()

    def give(self, plate: str, grant: CouponGrant, *, hours: float = 24) -> IssuedCoupon:
        """The merchant gives ``plate`` a coupon (as the office's worker does: the lanes
        are told after it)."""
        coupon = self.merchants.issue_coupon(
            "M001", plate, grant, expires_at=self.clock.now() + timedelta(hours=hours),
            actor="M001:till", reason="shopper")
        self.replicas.coupons_changed()
        self.broker.settle()
        return coupon

    def both(self, session_id: str, plate: str) -> tuple[int, int, dict[str, Any]]:
        """(what the lane alone would collect, what the gateway's bill says is due, the bill)
        for this car leaving now."""
        session = self.store.session(session_id)
        assert session is not None
        bill = self.billing.bill(session, self.clock.now())
        verdict = self.lane.exit(plate, [0.99] * len(plate), self.clock.now())
        assert verdict.session_id == session_id, verdict
        return verdict.fee_fen, bill.due_fen, bill.as_json()


def site(tmp_path: Path, memory: MemoryBroker, start: datetime, **options: Any) -> Gateway:
    gateway = Gateway(tmp_path / "gateway.db", memory, start, **options)
    gateway.replicas.publish_snapshot()
    memory.settle()
    assert gateway.lane.has_snapshot
    return gateway


SPEND_88 = CouponGrant.for_rule("spend_88", cap_fen=CAP)


@dataclass(frozen=True)
class Case:
    name: str
    entry: datetime
    stay: timedelta
    grants: tuple[CouponGrant, ...]
    plate: str = "粤B12345"
    expect_fen: int | None = None


CASES = [
    Case("spend 88 on a workday: 2 h off a 3 h stay", WORKDAY, timedelta(hours=3),
         (SPEND_88,), expect_fen=500),
    Case("spend 88 on National Day: 3 h free", NATIONAL_DAY, timedelta(hours=3), (SPEND_88,),
         expect_fen=0),
    Case("spend 88 the week before Mid-Autumn", PRE_MID_AUTUMN, timedelta(hours=3, minutes=40),
         (SPEND_88,)),
    Case("best_of: the better of a rule and ¥3 off", WORKDAY, timedelta(hours=2, minutes=10),
         (CouponGrant.amount_off(300), SPEND_88)),
    Case("best_of: ¥9 off beats 1 h free on a long stay", WORKDAY, timedelta(hours=6),
         (CouponGrant.free_minutes(60, cap_fen=CAP), CouponGrant.amount_off(900))),
    Case("full free", WORKDAY, timedelta(hours=5), (CouponGrant.full_free(cap_fen=CAP),),
         expect_fen=0),
    Case("a new-energy car's class and a coupon", WORKDAY, timedelta(hours=4), (SPEND_88,),
         plate="粤BD54321"),
    Case("no coupon at all", WORKDAY, timedelta(hours=4), ()),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_an_offline_exit_and_the_gateways_bill_take_the_same_coupons_off(
        tmp_path: Path, memory: MemoryBroker, case: Case) -> None:
    gateway = site(tmp_path, memory, case.entry)
    try:
        gateway.enter("s-1", case.plate)
        given = [gateway.give(case.plate, grant) for grant in case.grants]
        gateway.clock.advance(case.stay)
        lane_fen, gateway_fen, bill = gateway.both("s-1", case.plate)
        assert lane_fen == gateway_fen
        if case.expect_fen is not None:
            assert gateway_fen == case.expect_fen
        if given:  # the coupons really worked, on both sides
            assert (bill["coupons"] and bill["quote"]["charged_fen"] > gateway_fen) \
                or bill["quote"]["charged_fen"] == 0
            assert {ref for ref, _fen in bill["coupons"]} <= {c.coupon_id for c in given}
    finally:
        gateway.close()


_GRANTS = st.sampled_from([
    SPEND_88, CouponGrant.amount_off(300), CouponGrant.amount_off(1_000),
    CouponGrant.free_minutes(30, cap_fen=CAP), CouponGrant.free_minutes(150, cap_fen=CAP),
    CouponGrant.full_free(cap_fen=CAP)])


def test_over_random_dates_stays_and_coupon_sets_the_lane_and_the_gateway_agree(
        tmp_path: Path, memory: MemoryBroker) -> None:
    """One site whose clock runs through 2026 (holidays, the weeks before festivals, nights):
    every car priced by both sides, with whatever coupons it was given."""
    gateway = site(tmp_path, memory, datetime(2026, 1, 1, tzinfo=UTC))
    cars = iter(range(1, 10_000))

    @given(wait=st.integers(0, 20 * 24 * 60), stay=st.integers(0, 30 * 60),
           grants=st.lists(_GRANTS, max_size=3),
           plate=st.sampled_from(["粤B{:05d}", "粤BD{:05d}", "沪A{:05d}"]))
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    def one_car(wait: int, stay: int, grants: list[CouponGrant], plate: str) -> None:
        n = next(cars)
        spelled = plate.format(n + 20_000)
        gateway.clock.advance(timedelta(minutes=wait))
        gateway.enter(f"s-{n}", spelled)
        for grant in grants:
            gateway.give(spelled, grant, hours=stay / 60 + 1)
        gateway.clock.advance(timedelta(minutes=stay))
        lane_fen, gateway_fen, bill = gateway.both(f"s-{n}", spelled)
        assert lane_fen == gateway_fen, bill
        gateway.store.db.table("sessions").update(f"s-{n}", {"state": "closed"})
        gateway.replicas.session_closed(f"s-{n}", gateway.clock.now())
        memory.settle()

    try:
        one_car()
    finally:
        gateway.close()


def test_an_expired_or_revoked_coupon_counts_on_neither_side(tmp_path: Path,
                                                            memory: MemoryBroker) -> None:
    gateway = site(tmp_path, memory, NATIONAL_DAY)
    try:
        gateway.enter("s-1", "粤B12345")
        gateway.enter("s-2", "粤B67890")
        gateway.give("粤B12345", SPEND_88, hours=2)  # gone before the car leaves
        revoked = gateway.give("粤B67890", SPEND_88)
        gateway.merchants.revoke(revoked.coupon_id, actor="M001", reason="refunded purchase")
        gateway.replicas.coupons_changed()
        memory.settle()
        gateway.clock.advance(timedelta(hours=3))
        for session_id, plate in (("s-1", "粤B12345"), ("s-2", "粤B67890")):
            lane_fen, gateway_fen, bill = gateway.both(session_id, plate)
            assert lane_fen == gateway_fen == 1_300 and bill["coupons"] == []
    finally:
        gateway.close()


def test_coupons_travel_in_the_snapshot_and_each_change_as_one_plates_whole_set(
        tmp_path: Path, memory: MemoryBroker) -> None:
    gateway = Gateway(tmp_path / "gateway.db", memory, WORKDAY)
    seen: list[tuple[str, bytes]] = []
    watcher = memory.bus("watch").start()
    watcher.subscribe(topics.all_lane_replicas(TEST_SITE, "delta"),
                      lambda topic, payload: seen.append((topic, payload)))
    try:
        first = gateway.merchants.issue_coupon(
            "M001", "粤B12345", SPEND_88, expires_at=WORKDAY + timedelta(hours=24),
            actor="M001", reason="spent ¥100")
        snapshot = gateway.replicas.publish_snapshot()
        memory.settle()
        assert [(c.coupon_id, c.kind, c.rule) for c in snapshot.coupons] == [
            (first.coupon_id, "rule", "spend_88")]
        gateway.clock.advance(timedelta(minutes=1))
        second = gateway.give("粤b·12345", CouponGrant.amount_off(500))
        gateway.merchants.revoke(first.coupon_id, actor="M001", reason="mistake")
        gateway.replicas.coupons_changed()
        memory.settle()
        deltas = [decode(topic, payload) for topic, payload in seen]
        assert all(isinstance(d, ReplicaDelta) and d.kind == "coupons_changed" for d in deltas)
        sets = [[c.coupon_id for c in d.data.coupons] for d in deltas
                if isinstance(d, ReplicaDelta) and isinstance(d.data, PlateCoupons)]
        assert sets == [[first.coupon_id, second.coupon_id], [second.coupon_id]]
        assert gateway.replicas.coupons_changed() == []  # nothing new: nothing sent
        assert gateway.lane.has_snapshot and gateway.lane.version == gateway.replicas.version
        offered = gateway.lane._coupons.offered("粤B12345", gateway.clock.now())
        assert [(c.kind, c.fen, c.ref) for c in offered] == [
            ("amount_off", 500, second.coupon_id)]
    finally:
        watcher.stop()
        gateway.close()


def test_a_plate_holds_at_most_the_coupons_one_delta_carries(tmp_path: Path,
                                                             memory: MemoryBroker) -> None:
    assert MAX_LIVE_PER_PLATE == MAX_PLATE_COUPONS
    gateway = Gateway(tmp_path / "gateway.db", memory, WORKDAY)
    try:
        for _ in range(MAX_LIVE_PER_PLATE):
            gateway.merchants.issue_coupon("M001", "粤B12345", CouponGrant.amount_off(100),
                                           expires_at=WORKDAY + timedelta(hours=1),
                                           actor="M001", reason="one more")
        with pytest.raises(TooManyCouponsError, match="16 live coupons"):
            gateway.merchants.issue_coupon("M001", "粤B12345", CouponGrant.amount_off(100),
                                           expires_at=WORKDAY + timedelta(hours=1),
                                           actor="M001", reason="one too many")
        [delta] = gateway.replicas.coupons_changed()
        assert isinstance(delta.data, PlateCoupons) and len(delta.data.coupons) == 16
        assert len(delta.to_json()) < 8 * 1024  # far inside any packet limit
    finally:
        gateway.close()


def test_a_big_sites_coupons_reach_the_lane_in_chunks_within_the_packet_limit(
        tmp_path: Path, memory: MemoryBroker) -> None:
    limit = 16 * 1024
    gateway = Gateway(tmp_path / "gateway.db", memory, WORKDAY, max_packet_size=limit)
    chunks: list[bytes] = []
    watcher = memory.bus("watch").start()
    watcher.subscribe(topics.all_lane_replicas(TEST_SITE, "snapshot"),
                      lambda _topic, payload: chunks.append(payload))
    try:
        expires = utc_iso(WORKDAY + timedelta(hours=24))
        rows = [{"coupon_id": f"{n:032x}", "merchant_id": "M001", "plate": f"粤B{n:05d}",
                 "kind": "rule", "rule": "spend_88", "minutes": 0, "fen": 0, "cap_fen": CAP,
                 "issued_at": utc_iso(WORKDAY), "expires_at": expires, "state": "issued"}
                for n in range(3_000)]
        gateway.store.db.table("merchant_coupons").insert_all(rows, batch_size=1000)
        gateway.replicas.publish_snapshot()
        memory.settle()
        pieces = [ReplicaChunk.from_json(payload) for payload in chunks if payload]
        assert len(pieces) > 10 and max(len(payload) for payload in chunks) < limit
        assert len(join_chunks(pieces).coupons) == 3_000
        offered = gateway.lane._coupons.offered("粤B02999", WORKDAY)
        assert [str(c) for c in offered] == ["rule:spend_88"]
    finally:
        watcher.stop()
        gateway.close()


def test_a_used_coupon_leaves_the_lanes_when_its_car_has_left(tmp_path: Path,
                                                             memory: MemoryBroker) -> None:
    gateway = site(tmp_path, memory, NATIONAL_DAY)
    try:
        gateway.enter("s-1", "粤B12345")
        coupon = gateway.give("粤B12345", SPEND_88)
        gateway.clock.advance(timedelta(hours=2))
        bill = gateway.billing.bill(gateway.store.session("s-1") or {}, gateway.clock.now())
        [(ref, applied)] = bill.coupons
        assert (ref, applied, bill.due_fen) == (coupon.coupon_id, 900, 0)
        charged = gateway.merchants.redeem(ref, session_id="s-1", plate="粤B12345",
                                           applied_fen=applied)
        assert charged.charged_fen == 900  # the merchant pays what its coupon took off
        gateway.replicas.session_closed("s-1", gateway.clock.now())
        memory.settle()
        assert gateway.lane._coupons.offered("粤B12345", gateway.clock.now()) == []
        assert len(gateway.lane._coupons) == 0
    finally:
        gateway.close()


def test_the_spend_rule_the_till_picks_is_the_one_the_lane_prices(tmp_path: Path,
                                                                  memory: MemoryBroker) -> None:
    gateway = site(tmp_path, memory, NATIONAL_DAY)
    try:
        tariff = gateway.billing.pricing.document.book.in_force(NATIONAL_DAY.date())
        assert tariff is not None
        rule = rule_for_spend(tariff, 8_800)
        gateway.enter("s-1", "粤B12345")
        gateway.give("粤B12345", CouponGrant.for_rule(rule.code, cap_fen=CAP))
        gateway.clock.advance(timedelta(hours=3, minutes=20))  # 3 h free, 20 min to pay
        lane_fen, gateway_fen, _bill = gateway.both("s-1", "粤B12345")
        assert lane_fen == gateway_fen == 500
    finally:
        gateway.close()


# --- the lane itself, alone --------------------------------------------------------------


def test_a_lane_alone_lets_a_car_out_free_on_its_holiday_coupon(tmp_path: Path,
                                                               memory: MemoryBroker) -> None:
    """Lane out1 on mock pins never hears from the gateway: the replica's coupon makes the
    3-hour holiday stay free, so it opens by itself and reports no money due."""
    gateway = Gateway(tmp_path / "gateway.db", memory, NATIONAL_DAY)
    try:
        gateway.enter("s-1", "粤B12345")
        gateway.give("粤B12345", SPEND_88)
        gateway.clock.advance(timedelta(hours=3))
        with MemoryLane(tmp_path, lane="out1", direction="exit", broker=memory,
                        clock=ManualClock(gateway.clock.now()),
                        display=RecordingDisplay()) as out1:
            gateway.replicas.publish_snapshot(lanes=["out1"])
            out1.settle()
            assert out1.node.replica.has_snapshot
            out1.camera.show("粤B12345")
            out1.pins.arming.drive_high()
            out1.settle()
            out1.step(milliseconds=400)  # the gateway stays silent past the deadline
            verdict = out1.controller.last_verdict
            assert verdict is not None and verdict.decided_by == "lane"
            assert (verdict.action, verdict.fee_fen) == ("open", 0)
            assert out1.relay_up
            [decision] = out1.events("decision")
            assert decision["decided_by"] == "lane" and decision["fee_fen"] == 0
            assert json.dumps(decision, ensure_ascii=False).count("offline_") >= 1
    finally:
        gateway.close()
