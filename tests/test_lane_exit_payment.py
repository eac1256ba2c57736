"""The exit waits for money: a car with a fee due stays at the barrier until the gateway's
``open`` (money taken), a 付款码 while the lane decides alone, or a free-open or a fire;
each ``passed`` says how it was let go (``settled``).

One exit lane on mock pins, the in-memory bus and a manual clock. The test plays the
gateway's decide answers (the contract's ``DecideReply``) and sends the gateway's real
signed, audited commands (:class:`~gateway.lanes.commands.LaneCommander`). Nothing sleeps:
"it did not open" is asserted after the lane settled and the clock moved on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from pydantic import SecretStr

from firmware.lane.commands import CommandVerifier
from firmware.lane.config import CommandSettings
from firmware.lane.events import Verdict
from firmware.lane.kiosk import SimulatedKiosk
from firmware.lane.states import State
from gateway.lanes.commands import LaneCommander
from gateway.records.audit import AuditLog
from gateway.storage.migrations import migrate
from parkguard.clock import ManualClock
from simulator.driver import CarDriver, Passage
from tests.conftest import SITE_START, TEST_SITE
from tests.lane_harness import MemoryLane
from tests.test_lane_offline import VISITOR, snapshot
from wire.contract import topics
from wire.contract.chunks import split_snapshot
from wire.contract.messages import AlarmState, DecideReply, DecideRequest, LaneCommand
from wire.memory import MemoryBroker, MemoryBus

SITE, LANE = TEST_SITE, "out1"
KEY, OTHER_KEY = bytes(range(32)), bytes(range(1, 33))
PLATE, SESSION, FEE = "粤B12345", "s-0001", 1_500
LINES = ("粤B12345 停3小时3分 应付¥15.00", "Stay 3h 3m: pay ¥15.00 - scan QR")
PAY_URL = "https://pay.example.test/pay?plate=%E7%B2%A4B12345&lane=out1&t=tok0001"
CODE = "134567890123456789"  # a WeChat Pay 付款码
DECLINED = ("付款码支付失败 请扫码或按帮助", "Code declined: scan QR or press Help")

Answer = Callable[[DecideRequest], "DecideReply | None"]


def payment_due(request: DecideRequest) -> DecideReply:
    """What the gateway answers for a car whose stay still owes money."""
    return DecideReply(correlation_id=request.correlation_id, action="refuse",
                       reason="payment_due", fee_fen=FEE, session_id=SESSION,
                       display_zh=LINES[0], display_en=LINES[1], pay_url=PAY_URL,
                       ts=request.ts)


def prepaid(request: DecideRequest) -> DecideReply:
    return DecideReply(correlation_id=request.correlation_id, action="open", reason="prepaid",
                       session_id=SESSION, display_zh="已缴费 一路平安",
                       display_en="Paid: goodbye", ts=request.ts)


class DecideDesk:
    """The gateway's decide answers on the in-memory bus; ``answer`` None: it is away."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.answer: Answer | None = payment_due
        self.bus = broker.bus("gateway-decide")
        self.bus.subscribe(topics.lane_decide(SITE, LANE), self._on_request)
        self.bus.start()

    def _on_request(self, _topic: str, payload: bytes) -> None:
        answer = self.answer
        reply = answer(DecideRequest.from_json(payload)) if answer is not None else None
        if reply is not None:
            self.bus.publish(topics.lane_decide_reply(SITE, LANE), reply)


@dataclass
class Exit:
    lane: MemoryLane
    desk: DecideDesk
    commander: LaneCommander
    kiosk: SimulatedKiosk
    gateway_bus: MemoryBus

    def arrive(self, plate: str = PLATE) -> None:
        self.lane.camera.show(plate)
        self.lane.pins.arming.drive_high()
        self.lane.settle()

    def drive_through(self) -> None:
        pins = self.lane.pins
        assert pins.relay.state, "barrier up"
        pins.safety.drive_high()
        pins.arming.drive_low()
        pins.safety.drive_low()
        self.lane.settle()

    def open(self, **args: str) -> LaneCommand:
        return self.commander.open(LANE, actor="gateway:payments", reason="money taken",
                                   args=args or None)

    def after(self, event: dict[str, Any]) -> list[str]:
        """The event types the lane reported after ``event``."""
        return [e["type"] for e in self.lane.events() if e["seq"] > event["seq"]]


@pytest.fixture
def exit_lane(memory: MemoryBroker, tmp_path: Path) -> Iterator[Exit]:
    clock = ManualClock(SITE_START)
    audit = AuditLog(migrate(sqlite_utils.Database(tmp_path / "audit.db")), clock=clock)
    kiosk = SimulatedKiosk()
    desk = DecideDesk(memory)
    with memory.bus("gateway") as gateway_bus, MemoryLane(
            tmp_path, lane=LANE, direction="exit", broker=memory, clock=clock, scanner=kiosk,
            commands=CommandSettings(hmac_key=SecretStr(KEY.hex()))) as lane:
        commander = LaneCommander(gateway_bus, SITE, {LANE: KEY, "out2": OTHER_KEY}, clock,
                                  audit)
        yield Exit(lane, desk, commander, kiosk, gateway_bus)
    desk.bus.stop()


def waiting_with_a_fee_due(exit_: Exit) -> dict[str, Any]:
    """A car with money due at the exit: refused, waiting, barrier down. Its decision."""
    exit_.arrive()
    decision = exit_.lane.events("decision")[-1]
    assert (decision["action"], decision["reason"], decision["fee_fen"],
            decision["session_id"]) == ("refuse", "payment_due", FEE, SESSION)
    assert exit_.lane.controller.machine.state is State.REFUSED
    assert not exit_.lane.relay_up
    return decision


def test_a_fee_due_shows_plate_stay_amount_and_qr_and_waits_for_the_gateways_open(
    exit_lane: Exit,
) -> None:
    lane = exit_lane.lane
    refused = waiting_with_a_fee_due(exit_lane)
    assert (lane.screen.current, lane.screen.current_qr) == (LINES, PAY_URL)
    lane.step(minutes=5)  # the driver pays on the phone: nothing moves meanwhile
    assert not lane.relay_up and exit_lane.after(refused) == []

    order = exit_lane.open(session_id=SESSION, settled="paid_online")
    lane.settle()
    exit_lane.drive_through()
    assert not lane.relay_up, "closed behind the car"
    passed = lane.events("passed")
    assert [(p["settled"], p["fee_fen"], p["session_id"], p["correlation_id"])
            for p in passed] == [("paid_online", FEE, SESSION, order.nonce)]
    manual = lane.events("decision")[-1]
    assert (manual["reason"], manual["correlation_id"]) == ("manual_open", order.nonce)
    assert lane.screen.current_qr is None, "the QR went with its car"


def test_an_open_for_another_lane_or_another_car_leaves_this_car_waiting(
    exit_lane: Exit,
) -> None:
    lane = exit_lane.lane
    waiting_with_a_fee_due(exit_lane)
    # Signed for out2 and sent to out1's topic; and the real order for out2 on its own topic.
    stray = LaneCommand(command="open", args={"lane": "out2", "session_id": SESSION,
                                              "settled": "paid_online"},
                        reason="paid", issuer="gateway:payments", nonce="ab" * 16,
                        issued=lane.clock.now(),
                        expires=lane.clock.now() + timedelta(seconds=30)).signed(KEY)
    exit_lane.gateway_bus.publish_and_wait(topics.lane_cmd(SITE, LANE), stray)
    exit_lane.commander.open("out2", actor="gateway:payments", reason="paid",
                             args={"session_id": SESSION, "settled": "paid_online"})
    # Money for another session (that car backed out; this one is someone else).
    exit_lane.open(session_id="s-9999", settled="paid_online")
    lane.settle()
    lane.step(minutes=1)
    assert not lane.relay_up and not lane.events("passed")
    details = [f["detail"] for f in lane.events("fault")]
    assert [d.split(":")[0] for d in details] == ["wrong_lane", "wrong_session"]
    assert lane.controller.machine.state is State.REFUSED, "still waiting"
    assert lane.screen.current_qr == PAY_URL

    exit_lane.open(session_id=SESSION, settled="cash")
    lane.settle()
    exit_lane.drive_through()
    assert [p["settled"] for p in lane.events("passed")] == ["cash"]


def test_a_payment_code_online_waits_for_the_gateways_answer_and_a_decline_keeps_the_car(
    exit_lane: Exit,
) -> None:
    lane = exit_lane.lane
    waiting_with_a_fee_due(exit_lane)
    exit_lane.kiosk.scan(CODE)
    lane.settle()
    code = lane.events("payment_code")
    assert [(c["code"], c["plate"], c["fee_fen"]) for c in code] == [(CODE, PLATE, FEE)]
    assert "payment_code" in [kind for _seq, kind, _sent in lane.node.journal.events()]
    assert lane.screen.current == ("已收到付款码 正在扣款", "Pay code received: charging")
    lane.step(seconds=30)
    assert not lane.relay_up, "a code is not money until the gateway charged it"

    exit_lane.commander.display(LANE, *DECLINED, actor="gateway:payments",
                                reason="payment code declined: insufficient_funds")
    lane.settle()
    lane.step(minutes=2)
    assert (lane.screen.current, lane.screen.current_qr) == (DECLINED, PAY_URL)
    assert not lane.relay_up and lane.controller.machine.state is State.REFUSED

    exit_lane.kiosk.scan("134567890123456790")  # another code: charged this time
    lane.settle()
    exit_lane.open(session_id=SESSION, settled="payment_code")
    lane.settle()
    exit_lane.drive_through()
    assert len(lane.events("payment_code")) == 2
    assert [(p["settled"], p["fee_fen"]) for p in lane.events("passed")] == [
        ("payment_code", FEE)]


def test_offline_a_payment_code_opens_at_once_and_is_journaled_before_the_passed(
    exit_lane: Exit,
) -> None:
    lane, gateway = exit_lane.lane, exit_lane.gateway_bus
    topic = topics.lane_replica(SITE, LANE, "snapshot")
    for chunk in split_snapshot(snapshot(), max_payload=200_000, snapshot_id="abcdef0123"):
        gateway.publish_and_wait(topic, chunk)
    lane.settle()
    exit_lane.desk.answer = None  # the gateway is away
    exit_lane.arrive(VISITOR)
    lane.step(milliseconds=lane.config.timing.decide_deadline_ms)
    refused = lane.events("decision")[-1]
    assert (refused["action"], refused["reason"], refused["decided_by"]) == (
        "refuse", "offline_payment_due", "lane")
    fee = refused["fee_fen"]
    assert fee > 0 and not lane.relay_up
    assert lane.screen.current is not None and "show pay code" in lane.screen.current[1]
    assert lane.screen.current_qr is None

    exit_lane.kiosk.scan(CODE)
    lane.settle()
    assert lane.relay_up, "out at once: the gateway charges the code from the journal"
    exit_lane.drive_through()
    assert exit_lane.after(refused) == ["payment_code", "barrier", "passed", "barrier"]
    passed = lane.events("passed")[0]
    assert (passed["settled"], passed["fee_fen"], passed["session_id"],
            passed["correlation_id"]) == ("payment_code_offline", fee, "s-visitor",
                                          refused["correlation_id"])
    journaled = [kind for _seq, kind, _sent in lane.node.journal.events()]
    assert journaled.index("payment_code") < journaled.index("passed")
    assert lane.events("payment_code")[0]["fee_fen"] == fee


def test_a_car_that_backs_out_while_money_is_due_is_a_refusal_and_nothing_else(
    exit_lane: Exit,
) -> None:
    lane = exit_lane.lane
    refused = waiting_with_a_fee_due(exit_lane)
    lane.pins.arming.drive_low()
    lane.settle()
    assert exit_lane.after(refused) == []
    assert lane.controller.machine.state is State.IDLE
    assert (lane.screen.current, lane.screen.current_qr) == (("欢迎光临", "Welcome"), None)
    exit_lane.open(session_id=SESSION, settled="paid_online")  # paid after backing out
    lane.settle()
    assert not lane.relay_up, "no barrier for nobody: asked again, it has paid"
    assert [f["detail"].split(":")[0] for f in lane.events("fault")] == ["wrong_session"]


def test_a_plain_guard_open_is_guard_open_and_an_open_decision_is_decision(
    exit_lane: Exit,
) -> None:
    lane = exit_lane.lane
    waiting_with_a_fee_due(exit_lane)
    exit_lane.commander.open(LANE, actor="guard:0042", reason="help button: driver insists")
    lane.settle()
    exit_lane.drive_through()
    exit_lane.desk.answer = prepaid
    exit_lane.arrive("粤B54321")
    exit_lane.drive_through()
    assert [(p["settled"], p["fee_fen"], p["session_id"]) for p in lane.events("passed")] == [
        ("guard_open", FEE, SESSION), ("decision", 0, SESSION)]


def test_a_lane_held_open_lets_cars_with_a_fee_due_out_free(exit_lane: Exit) -> None:
    lane = exit_lane.lane
    waiting_with_a_fee_due(exit_lane)
    exit_lane.commander.hold_open(LANE, actor="gateway:peak-rule", reason="holiday peak")
    lane.settle()
    exit_lane.drive_through()  # the car that waited goes out free
    assert lane.relay_up and lane.controller.mode == "free_open"
    exit_lane.arrive("粤B54321")  # and so does the next one
    assert lane.events("decision")[-1]["reason"] == "free_open"
    assert lane.screen.current_qr is None
    exit_lane.drive_through()
    assert [(p["settled"], p["fee_fen"]) for p in lane.events("passed")] == [
        ("free_open", FEE), ("free_open", FEE)]


def test_a_fire_lets_a_waiting_car_out_as_fire(exit_lane: Exit) -> None:
    lane = exit_lane.lane
    waiting_with_a_fee_due(exit_lane)
    alarm = AlarmState(kind="fire", active=True, source="gateway", zone="B2",
                       ts=datetime.now(UTC))
    exit_lane.gateway_bus.publish_and_wait(topics.alarm(SITE, "fire"), alarm, retain=True)
    lane.settle()
    exit_lane.drive_through()
    assert [(p["settled"], p["fee_fen"]) for p in lane.events("passed")] == [("fire", 0)]


# The open command's arguments ---------------------------------------------------------


def _open(**args: Any) -> LaneCommand:
    return LaneCommand(command="open", args={"lane": LANE, **args}, reason="paid",
                       issuer="gateway:payments", nonce="cd" * 16, issued=SITE_START,
                       expires=SITE_START + timedelta(seconds=30)).signed(KEY)


@pytest.mark.parametrize(("args", "problem"), [
    pytest.param({"settled": "paid_twice"}, "args.settled must be one of", id="not-a-settlement"),
    pytest.param({"settled": 3}, "args.settled must be one of", id="not-text"),
    pytest.param({"session_id": "s" * 65}, "args.session_id must be text", id="long-session"),
])
def test_an_open_whose_settlement_is_not_one_the_contract_knows_is_malformed(
    args: dict[str, Any], problem: str
) -> None:
    verdict = CommandVerifier(KEY, ManualClock(SITE_START), LANE).check(_open(**args))
    assert (verdict.accepted, verdict.reason) == (False, "malformed")
    assert problem in verdict.detail
    assert CommandVerifier(KEY, ManualClock(SITE_START), LANE).check(
        _open(settled="waived", session_id=SESSION)).accepted


# The simulated driver --------------------------------------------------------------------


def driver(exit_: Exit, payer: Callable[[str, Verdict], None] | None = None) -> CarDriver:
    lane = exit_.lane
    return CarDriver(lane.pins, lane.camera, lane.controller, payer=payer)


def test_a_driver_without_a_payer_backs_out_and_one_with_a_payer_pays_and_passes(
    exit_lane: Exit,
) -> None:
    assert driver(exit_lane).drive_through(PLATE) == Passage(False, "payment_due", 0)
    paid: list[tuple[str, str | None]] = []

    def pay_on_the_phone(lane_id: str, verdict: Verdict) -> None:
        assert verdict.pay_url == PAY_URL and verdict.fee_fen == FEE
        paid.append((lane_id, verdict.session_id))
        exit_lane.commander.open(lane_id, actor="gateway:payments", reason="paid online",
                                 args={"session_id": str(verdict.session_id),
                                       "settled": "paid_online"})

    passage = driver(exit_lane, pay_on_the_phone).drive_through(PLATE)
    assert passage == Passage(True, "payment_due", FEE, "paid_online")
    assert paid == [(LANE, SESSION)]


def test_a_driver_whose_code_is_declined_backs_out_still_owing(exit_lane: Exit) -> None:
    def declined(lane_id: str, _verdict: Verdict) -> None:
        exit_lane.kiosk.scan(CODE)
        exit_lane.commander.display(lane_id, *DECLINED, actor="gateway:payments",
                                    reason="payment code declined")

    assert driver(exit_lane, declined).drive_through(PLATE) == Passage(
        False, "payment_due", 0)
    exit_lane.lane.settle()
    assert not exit_lane.lane.events("passed")
    assert len(exit_lane.lane.events("payment_code")) == 1


def test_the_next_car_coming_onto_the_loop_as_a_paid_car_leaves_gets_its_own_decision(
    exit_lane: Exit,
) -> None:
    """The paid car is on the safety loop when the next one rolls onto the arming loop:
    the guard's opening was for the first car only, so the second is read and decided
    (it used to be counted as served by that opening, and waited with no verdict)."""
    lane, pins = exit_lane.lane, exit_lane.lane.pins
    waiting_with_a_fee_due(exit_lane)
    exit_lane.open(session_id=SESSION, settled="cash")
    lane.settle()
    assert lane.relay_up
    decided = lane.controller.verdicts
    pins.safety.drive_high()
    pins.arming.drive_low()
    lane.camera.show("粤B99999")
    pins.arming.drive_high()  # the next car, bumper to the first one's boot
    pins.safety.drive_low()
    lane.settle()
    assert [p["settled"] for p in lane.events("passed")] == ["cash"]
    assert lane.controller.verdicts == decided + 1, "the next car was decided"
    assert lane.events("decision")[-1]["plate"] == "粤B99999"
