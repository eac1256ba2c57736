"""The exit waits for money (issue 21), from the gateway's side: a car with a fee due is
refused with ``payment_due`` and waits; money arriving for it (the provider's callback, a
付款码 charged, cash or a waiver at the dashboard) orders that lane open, saying how it was
settled; the car leaving books nothing as paid that was not taken.

The gateway runs whole (``GatewayApp``) on the in-memory broker; the lane is a client of
that broker that publishes what a lane publishes and keeps the commands and replies it gets
(the lane's side is tests/test_lane*.py). The last tests run the real lanes on Mosquitto
(``site``), their drivers paying by each way (``simulator.site.ExitPayer``).
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig, PaymentSettings, WebConfig
from gateway.runtime.exits import WaitingCar
from gateway.web.settings import load_secret_key
from gateway.web.tickets import TicketSigner
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from simulator.site import PayMethod, SimulatedSite
from tests.conftest import TEST_SITE
from tests.helpers import eventually
from wire.contract import topics
from wire.contract.messages import (
    DecideReply,
    DecideRequest,
    Decision,
    LaneCommand,
    LaneState,
    Passed,
    PaymentCode,
    Settlement,
)
from wire.memory import MemoryBroker

SITE = TEST_SITE
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Wednesday
PLATE = "粤B12345"
KEY = bytes(range(32))
STAY = timedelta(hours=3, minutes=3)
CODE = "134567890123456789"  # the shape of a WeChat Pay 付款码
IDENTITY = "#QPG18F2K31QZ"  # a car without a plate: the kiosk's QR ticket
PAY_SITE = "https://pay.example.cn"


class Lane:
    """What a lane node puts on the bus and hears back, played by the test."""

    def __init__(self, broker: MemoryBroker, lane: str, direction: str) -> None:
        self.lane, self.direction = lane, direction
        self.replies: list[DecideReply] = []
        self.commands: list[LaneCommand] = []
        self.seq = 0
        self.bus = broker.bus(f"lane-{lane}")
        self.bus.subscribe(topics.lane_decide_reply(SITE, lane),
                           lambda _t, p: self.replies.append(DecideReply.from_json(p)))
        self.bus.subscribe(topics.lane_cmd(SITE, lane),
                           lambda _t, p: self.commands.append(LaneCommand.from_json(p)))
        self.bus.start()

    def ask(self, plate: str | None, now: datetime, *, identity: str | None = None) -> str:
        """A decide request for a car read as ``plate`` (or without one: the kiosk's
        ``identity``); its correlation id."""
        correlation_id = uuid.uuid4().hex[:20]
        self.bus.publish(topics.lane_decide(SITE, self.lane), DecideRequest(
            correlation_id=correlation_id, lane=self.lane, direction=self.direction,  # type: ignore[arg-type]
            plate=plate, identity=identity, confidence=0.99 if plate else 0.0, ts=now,
            deadline_ms=5_000))
        return correlation_id

    def event(self, message_type: type[Any], now: datetime, **fields: Any) -> Any:
        """Publish one lane event as the lane would (numbered), and return it."""
        self.seq += 1
        event = message_type(event_id=uuid.uuid4().hex, seq=self.seq, ts=now, lane=self.lane,
                             **fields)
        self.bus.publish(topics.lane_event(SITE, self.lane), event)
        return event

    def passed(self, plate: str, correlation_id: str, now: datetime, *,
               session_id: str | None = None, settled: Settlement = "decision",
               fee_fen: int = 0) -> Passed:
        passed: Passed = self.event(Passed, now, direction=self.direction, plate=plate,
                                    correlation_id=correlation_id, session_id=session_id,
                                    settled=settled, fee_fen=fee_fen)
        return passed

    def state(self, mode: str) -> None:
        self.bus.publish(topics.lane_state(SITE, self.lane), LaneState(
            lane=self.lane, online=True, direction=self.direction, mode=mode,  # type: ignore[arg-type]
            ts=NOW), retain=True)


class Site:
    def __init__(self, broker: MemoryBroker, app: GatewayApp, clock: ManualClock) -> None:
        self.broker, self.app, self.clock = broker, app, clock
        self.entry = Lane(broker, "in1", "entry")
        self.exit = Lane(broker, "out1", "exit")

    def handled(self) -> None:
        """Everything published so far delivered, handled by the worker and answered."""
        for _ in range(3):  # a reply or command the worker published, and what it caused
            self.broker.settle()
            assert self.app.service.wait_idle()
        self.broker.settle()

    def enter(self, plate: str = PLATE) -> str:
        correlation_id = self.entry.ask(plate, self.clock.now())
        self.handled()
        reply = self.entry.replies[-1]
        assert reply.action == "open" and reply.session_id is not None
        self.entry.passed(plate, correlation_id, self.clock.now(), session_id=reply.session_id)
        self.handled()
        return reply.session_id

    def arrive_at_exit(self, plate: str = PLATE) -> tuple[str, DecideReply]:
        correlation_id = self.exit.ask(plate, self.clock.now())
        self.handled()
        return correlation_id, self.exit.replies[-1]

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.app.store.reader() as db:
            return list(db.query(sql, params or []))

    def payments(self) -> list[tuple[str, str, int]]:
        return [(r["method"], r["state"], r["amount_fen"]) for r in self.rows(
            "SELECT method, state, amount_fen FROM payments ORDER BY created_at")]

    def debts(self) -> list[int]:
        return [r["amount_fen"] for r in self.rows("SELECT amount_fen FROM debts")]


def _site(broker: MemoryBroker, tmp_path: Path, *, public_url: str | None,
          clock: ManualClock | None = None) -> Generator[Site, None, None]:
    """The gateway on ``tmp_path``'s file, started; ``clock`` to go on with the time of a
    gateway that ran on the same file before."""
    web = None if public_url is None else WebConfig(
        port=0, secret_key_file=tmp_path / "web.key", public_url=public_url)
    config = GatewayConfig(site=SITE, database=tmp_path / "gw.db",
                           broker=BrokerSettings(host="memory"),
                           lane_keys={"out1": SecretStr(KEY.hex())}, web=web,
                           payments=PaymentSettings(provider="simulated"))
    clock = clock or ManualClock(NOW)
    bus = broker.bus(gateway_client_id(SITE), persistent=True, manual_ack=True)
    app = GatewayApp(config, clock=clock, bus=bus, allow_simulated=True)
    app.service.start()  # the worker and its subscriptions, without the web server
    bus.start()
    try:
        yield Site(broker, app, clock)
    finally:
        app.service.stop()
        bus.stop()
        app.store.close()


@pytest.fixture
def gw(memory: MemoryBroker, tmp_path: Path) -> Iterator[Site]:
    """The gateway on the in-memory broker, its lanes played by the test."""
    yield from _site(memory, tmp_path, public_url=PAY_SITE)


def waiting_car(site: Site) -> tuple[str, str, DecideReply]:
    """A visitor in at 10:00 and at the exit 3 h 3 min later, owing the tariff."""
    session_id = site.enter()
    site.clock.advance(STAY)
    correlation_id, reply = site.arrive_at_exit()
    return session_id, correlation_id, reply


def the_open(site: Site) -> LaneCommand:
    assert [c.command for c in site.exit.commands] == ["open"], site.exit.commands
    command = site.exit.commands[0]
    assert command.signature_valid(KEY)
    return command


def test_an_exit_with_a_fee_due_is_refused_with_plate_stay_amount_and_a_pay_link(
    gw: Site, tmp_path: Path,
) -> None:
    session_id, _, reply = waiting_car(gw)
    assert (reply.action, reply.reason, reply.session_id) == ("refuse", "payment_due",
                                                              session_id)
    assert reply.fee_fen > 0
    money = f"¥{reply.fee_fen // 100}.{reply.fee_fen % 100:02d}"
    assert reply.display_zh == f"{PLATE} 停3小时3分 应付{money}"
    assert reply.display_en == f"Stay 3h 3m: pay {money} - scan QR"
    assert reply.pay_url is not None
    link = urlsplit(reply.pay_url)
    query = parse_qs(link.query)
    assert (link.scheme, link.netloc, link.path) == ("https", "pay.example.cn", "/pay")
    assert (query["plate"], query["lane"]) == ([PLATE], ["out1"])
    signer = TicketSigner(load_secret_key(tmp_path / "web.key"))  # the pay page's key
    assert signer.proves(query["t"][0], PLATE, session_id, now=gw.clock.now())
    assert gw.app.service.waiting_exits()[0].session_id == session_id
    assert gw.payments() == [] and gw.exit.commands == []


def test_without_a_public_url_the_lane_shows_no_qr_only_the_payment_code(
    memory: MemoryBroker, tmp_path: Path,
) -> None:
    for site in _site(memory, tmp_path, public_url=None):
        _, _, reply = waiting_car(site)
        assert reply.reason == "payment_due" and reply.pay_url is None
        assert reply.display_en.endswith("- show pay code")


def test_a_provider_callback_opens_the_lane_the_car_waits_at_and_nothing_else_is_booked(
    gw: Site,
) -> None:
    session_id, correlation_id, reply = waiting_car(gw)
    service = gw.app.service
    pending = service.prepay(PLATE)
    assert pending is not None and pending.amount_fen == reply.fee_fen
    body, headers = gw.app.provider.pay(pending.provider_ref)  # type: ignore[attr-defined]
    service.payment_callback(body, headers)
    gw.handled()
    command = the_open(gw)
    assert command.args == {"lane": "out1", "session_id": session_id, "settled": "paid_online"}
    audited = [e for e in gw.app.audit.entries() if e.action == "lane.open"]
    after = audited[-1].after
    assert isinstance(after, dict) and after["args"] == {"session_id": session_id,
                                                         "settled": "paid_online"}

    service.payment_callback(body, headers)  # the provider's retry: booked once, no 2nd open
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="paid_online", fee_fen=reply.fee_fen)
    gw.handled()
    assert len(gw.exit.commands) == 1
    assert gw.payments() == [("prepay", "paid", reply.fee_fen)]
    assert gw.debts() == []
    assert gw.rows("SELECT state FROM sessions")[0]["state"] == "closed"
    assert service.waiting_exits() == []


def test_a_payment_code_at_the_waiting_car_is_charged_once_and_opens_the_lane(gw: Site) -> None:
    session_id, correlation_id, reply = waiting_car(gw)
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=PLATE,
                    fee_fen=reply.fee_fen)
    gw.handled()
    assert the_open(gw).args["settled"] == "payment_code"
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="payment_code", fee_fen=reply.fee_fen)
    gw.handled()
    assert gw.payments() == [("payment_code", "paid", reply.fee_fen)]  # not also "exit"
    assert gw.debts() == []


def test_the_last_cars_passage_arriving_after_the_next_cars_request_keeps_the_next_waiting(
    gw: Site,
) -> None:
    """Decide requests jump the queue: the next car's request can be answered before the
    previous car's ``passed`` is handled. That late ``passed`` must not forget the next car,
    or its 付款码 is charged and the lane never opens (found by docs/examples/scenarios/
    disk-full.toml under load)."""
    first, second = "粤B11111", "粤B22222"
    first_session, second_session = gw.enter(first), gw.enter(second)
    gw.clock.advance(STAY)
    first_correlation, _ = gw.arrive_at_exit(first)
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=first,
                  fee_fen=gw.exit.replies[-1].fee_fen)
    gw.handled()
    went = gw.clock.now()
    gw.clock.advance(timedelta(seconds=20))
    _correlation, reply = gw.arrive_at_exit(second)  # answered before the passage below
    assert reply.action == "refuse" and reply.session_id == second_session
    gw.exit.passed(first, first_correlation, went, session_id=first_session,
                   settled="payment_code", fee_fen=reply.fee_fen)
    gw.handled()
    assert [car.session_id for car in gw.app.service.waiting_exits()] == [second_session]
    gw.exit.event(PaymentCode, gw.clock.now(), code="134567890123450000", plate=second,
                  fee_fen=reply.fee_fen)
    gw.handled()
    assert [c.command for c in gw.exit.commands] == ["open", "open"]
    assert gw.exit.commands[-1].args["session_id"] == second_session


def test_a_declined_code_is_shown_on_the_display_and_the_car_keeps_waiting_without_a_debt(
    gw: Site,
) -> None:
    session_id, _, reply = waiting_car(gw)
    gw.app.provider.declined[CODE] = "insufficient_funds"  # type: ignore[attr-defined]
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=PLATE,
                    fee_fen=reply.fee_fen)
    gw.handled()
    assert [c.command for c in gw.exit.commands] == ["display"]
    assert gw.exit.commands[0].args["zh"] == "付款码支付失败 请扫码或按帮助"
    assert gw.exit.commands[0].args["en"] == "Code declined: scan QR or press Help"
    assert gw.payments() == [("payment_code", "failed", reply.fee_fen)]
    assert gw.debts() == []
    assert [car.session_id for car in gw.app.service.waiting_exits()] == [session_id]

    # the driver gives up and backs out; the next car at the lane is asked about
    gw.enter("粤B99999")
    gw.exit.ask("粤B99999", gw.clock.now())
    gw.handled()
    assert [car.plate for car in gw.app.service.waiting_exits()] == []
    assert gw.debts() == []  # a car that backs out is a refusal, not a debt


def test_an_offline_code_declined_later_is_one_debt_for_the_session_never_two(gw: Site) -> None:
    session_id = gw.enter()
    gw.clock.advance(STAY)
    gw.app.provider.declined[CODE] = "code_expired"  # type: ignore[attr-defined]
    # The lane decided alone from its replica: the code first, then the car leaving.
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=PLATE, fee_fen=1_500)
    gw.exit.passed(PLATE, "offline00000001", gw.clock.now(), session_id=session_id,
                     settled="payment_code_offline", fee_fen=1_500)
    gw.handled()
    assert gw.payments() == [("payment_code", "failed", 1_500)]
    assert gw.debts() == [1_500]
    assert gw.exit.commands == []


def test_a_guard_open_or_a_lane_claiming_a_fee_books_a_debt_never_a_payment(gw: Site) -> None:
    session_id, correlation_id, reply = waiting_car(gw)
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="guard_open", fee_fen=reply.fee_fen)
    gw.handled()
    assert gw.payments() == []
    assert gw.debts() == [reply.fee_fen]
    review = gw.rows("SELECT review FROM sessions WHERE session_id = ?", [session_id])
    assert "left without paying" in review[0]["review"]


def test_cash_at_the_dashboard_is_booked_audited_and_opens_the_lane(gw: Site) -> None:
    session_id, correlation_id, reply = waiting_car(gw)
    service = gw.app.service
    payment = service.take_cash("out1", actor="guard:0042", reason="现金 cash at booth",
                                expected_fen=reply.fee_fen)
    gw.handled()
    assert (payment.method, payment.amount_fen) == ("cash", reply.fee_fen)
    assert the_open(gw).args["settled"] == "cash"
    actions = [(e.action, e.actor) for e in gw.app.audit.entries()]
    assert ("payment.cash", "guard:0042") in actions and ("lane.open", "guard:0042") in actions
    with pytest.raises(ValueError, match="no car waits"):  # a second click takes nothing
        service.take_cash("out1", actor="guard:0042", reason="again")
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="cash", fee_fen=reply.fee_fen)
    gw.handled()
    assert gw.payments() == [("cash", "paid", reply.fee_fen)] and gw.debts() == []


def test_cash_is_refused_when_the_amount_changed_since_the_guard_looked(gw: Site) -> None:
    _, _, reply = waiting_car(gw)
    with pytest.raises(ValueError, match="now owes"):
        gw.app.service.take_cash("out1", actor="guard:0042", reason="cash",
                                   expected_fen=reply.fee_fen + 100)
    assert gw.payments() == [] and gw.exit.commands == []


def test_a_waiver_is_a_fee_override_to_zero_and_leaves_no_debt(gw: Site) -> None:
    session_id, correlation_id, reply = waiting_car(gw)
    waived = gw.app.service.waive("out1", actor="guard:0042", reason="道闸故障 barrier fault")
    gw.handled()
    assert waived == reply.fee_fen
    assert the_open(gw).args["settled"] == "waived"
    overrides = [e for e in gw.app.audit.entries() if e.action == "fee.override"]
    assert overrides[-1].after == {"fee_fen": 0}
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="waived", fee_fen=0)
    gw.handled()
    assert gw.payments() == [] and gw.debts() == []


def test_a_lane_held_free_open_lets_cars_out_free_booked_with_that_reason(gw: Site) -> None:
    session_id = gw.enter()
    gw.clock.advance(STAY)
    gw.exit.state("free_open")
    gw.handled()
    correlation_id, reply = gw.arrive_at_exit()
    assert (reply.action, reply.reason, reply.fee_fen) == ("open", "free_open", 0)
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                     settled="free_open")
    gw.handled()
    assert gw.payments() == [] and gw.debts() == []
    session = gw.rows("SELECT fee_fen FROM sessions WHERE session_id = ?", [session_id])
    assert session[0]["fee_fen"] == 0
    bill = gw.rows("SELECT bill FROM decisions WHERE direction = 'exit'")[0]["bill"]
    assert '"reason": "free_open"' in bill and '"suspended_fee_fen"' in bill


def test_a_car_that_prepaid_and_leaves_in_a_free_open_hour_keeps_what_it_paid_as_its_fee(
    gw: Site,
) -> None:
    """The books still add up: fees booked = money taken + debts (the demo found a car that
    prepaid ¥5 before the peak hour booked at ¥0 while its ¥5 stayed a payment)."""
    session_id = gw.enter()
    gw.clock.advance(STAY)
    service = gw.app.service
    pending = service.prepay(PLATE)
    assert pending is not None
    body, headers = gw.app.provider.pay(pending.provider_ref)  # type: ignore[attr-defined]
    service.payment_callback(body, headers)
    gw.clock.advance(timedelta(hours=1))  # past the grace: the stay owes more again
    gw.exit.state("free_open")
    gw.handled()
    correlation_id, reply = gw.arrive_at_exit()
    assert (reply.action, reply.reason) == ("open", "free_open")
    gw.exit.passed(PLATE, correlation_id, gw.clock.now(), session_id=session_id,
                   settled="free_open")
    gw.handled()
    assert gw.payments() == [("prepay", "paid", pending.amount_fen)] and gw.debts() == []
    session = gw.rows("SELECT fee_fen FROM sessions WHERE session_id = ?", [session_id])
    assert session[0]["fee_fen"] == pending.amount_fen


def test_a_car_let_out_free_by_the_lane_alone_is_booked_free_not_as_a_debt(gw: Site) -> None:
    session_id = gw.enter()
    gw.clock.advance(STAY)
    gw.exit.passed(PLATE, "lane0000000001", gw.clock.now(), session_id=session_id,
                     settled="free_open")
    gw.handled()
    assert gw.payments() == [] and gw.debts() == []


def test_the_lane_card_shows_the_waiting_car_and_a_guard_takes_cash_there(gw: Site) -> None:
    from fastapi.testclient import TestClient

    from gateway.web import WebSettings, create_web_app
    from tests.test_web_auth import add_people, csrf_of, login

    add_people(gw.app)
    gw.exit.state("normal")  # the lane's retained state: its card on the page
    session_id, _, reply = waiting_car(gw)
    web = create_web_app(gw.app, settings=WebSettings(), clock=gw.clock)
    with TestClient(web) as client:
        assert login(client, "gina") == 303  # a guard
        page = client.get("/lanes").text
        money = f"¥{reply.fee_fen // 100}.{reply.fee_fen % 100:02d}"
        assert PLATE in page and money in page and 'action="/lanes/out1/cash"' in page
        assert 'action="/lanes/out1/waive"' not in page  # waivers: supervisors and up
        lanes = client.get("/api/lanes").json()["lanes"]
        out1 = next(lane for lane in lanes if lane["lane"] == "out1")
        assert out1["waiting"]["session_id"] == session_id
        assert client.post("/lanes/out1/waive", data={
            "preset": "道闸故障 barrier fault", "csrf_token": csrf_of(page)},
            follow_redirects=False).status_code == 403
        client.post("/lanes/out1/cash", data={
            "preset": "", "detail": "", "due_fen": str(reply.fee_fen),
            "csrf_token": csrf_of(page)})
        assert gw.payments() == []  # no reason, no money
        client.post("/lanes/out1/cash", data={
            "preset": "现金收费 cash at the booth", "detail": "收据 0042",
            "due_fen": str(reply.fee_fen), "csrf_token": csrf_of(page)})
        gw.handled()
    assert gw.payments() == [("cash", "paid", reply.fee_fen)]
    assert the_open(gw).args["settled"] == "cash"
    cash = [e for e in gw.app.audit.entries() if e.action == "payment.cash"]
    assert cash[-1].reason == "现金收费 cash at the booth: 收据 0042"


# --- with the real lanes, on Mosquitto --------------------------------------------------------


# --- a gateway restart, and 付款码 naming a stay --------------------------------------------


def test_a_car_waiting_to_pay_is_remembered_when_the_gateway_restarts(
    memory: MemoryBroker, tmp_path: Path,
) -> None:
    """The driver pays on the phone after the gateway came back: its lane still opens."""
    first = _site(memory, tmp_path, public_url=PAY_SITE)
    site = next(first)
    session_id, correlation_id, reply = waiting_car(site)
    site.exit.event(Decision, site.clock.now(), correlation_id=correlation_id,  # as reported
                    direction="exit", plate=PLATE, action="refuse", reason="payment_due",
                    fee_fen=reply.fee_fen, session_id=session_id, decided_by="gateway",
                    wait_ms=20.0)
    site.handled()
    since, clock = site.clock.now(), site.clock
    first.close()  # the gateway stops (its worker, its bus, its file); the car stays
    clock.advance(timedelta(minutes=2))
    for again in _site(memory, tmp_path, public_url=PAY_SITE, clock=clock):
        service = again.app.service
        assert service.waiting_exits() == [
            WaitingCar("out1", session_id, PLATE, reply.fee_fen, since)]
        pending = service.prepay(PLATE)
        assert pending is not None
        body, headers = again.app.provider.pay(pending.provider_ref)  # type: ignore[attr-defined]
        service.payment_callback(body, headers)
        again.handled()
        assert the_open(again).args == {"lane": "out1", "session_id": session_id,
                                        "settled": "paid_online"}
        assert service.waiting_exits() == []


def test_a_restarted_gateway_holds_no_car_its_lane_has_moved_on_from(
    memory: MemoryBroker, tmp_path: Path,
) -> None:
    first = _site(memory, tmp_path, public_url=PAY_SITE)
    site = next(first)
    waiting_car(site)
    # The lane's report of the refusal is not in yet; it let the next car out alone.
    site.clock.advance(timedelta(seconds=30))
    site.exit.event(Decision, site.clock.now(), correlation_id="offline00000002",
                    direction="exit", plate="粤C00001", action="open", reason="offline_paid",
                    decided_by="lane", wait_ms=3_000.0)
    site.handled()
    clock = site.clock
    first.close()
    for again in _site(memory, tmp_path, public_url=PAY_SITE, clock=clock):
        assert again.app.service.waiting_exits() == []


def no_plate_stay(site: Site) -> str:
    """A car without a plate let in on the kiosk's QR ticket: its session."""
    correlation_id = site.entry.ask(None, site.clock.now(), identity=IDENTITY)
    site.handled()
    reply = site.entry.replies[-1]
    assert reply.action == "open" and reply.session_id is not None
    site.entry.event(Passed, site.clock.now(), direction="entry", plate=None,
                     identity=IDENTITY, correlation_id=correlation_id,
                     session_id=reply.session_id)
    site.handled()
    return reply.session_id


def charged(site: Site) -> list[tuple[str, str, int]]:
    """The 付款码 payments: session, state, amount."""
    return [(r["session_id"], r["state"], r["amount_fen"]) for r in site.rows(
        "SELECT session_id, state, amount_fen FROM payments WHERE method = 'payment_code' "
        "ORDER BY created_at")]


def test_a_code_for_a_waiting_car_without_a_plate_is_charged_to_its_stay(gw: Site) -> None:
    session_id = no_plate_stay(gw)
    gw.clock.advance(STAY)
    gw.exit.ask(None, gw.clock.now(), identity=IDENTITY)
    gw.handled()
    reply = gw.exit.replies[-1]
    assert (reply.reason, reply.session_id) == ("payment_due", session_id)
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=None, identity=IDENTITY,
                  session_id=session_id, fee_fen=reply.fee_fen)
    gw.handled()
    assert charged(gw) == [(session_id, "paid", reply.fee_fen)]
    assert the_open(gw).args == {"lane": "out1", "session_id": session_id,
                                 "settled": "payment_code"}


def test_a_code_for_a_car_without_a_plate_that_has_left_is_charged_to_its_stay(
    gw: Site,
) -> None:
    session_id = no_plate_stay(gw)
    gw.clock.advance(STAY)
    # The lane decided alone and let the car go on its code; the passage came in first.
    gw.exit.event(Passed, gw.clock.now(), direction="exit", plate=None, identity=IDENTITY,
                  correlation_id="offline00000003", session_id=session_id,
                  settled="payment_code_offline", fee_fen=1_500)
    gw.handled()
    assert gw.rows("SELECT state FROM sessions WHERE session_id = ?",
                   [session_id])[0]["state"] == "closed"
    assert gw.debts() == []  # the code is on its way: it pays or becomes the debt
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=None, identity=IDENTITY,
                  session_id=session_id, fee_fen=1_500)
    gw.handled()
    assert charged(gw) == [(session_id, "paid", 1_500)]
    assert gw.debts() == []  # charged once, not also owed


def test_an_offline_code_declined_after_the_passage_came_in_is_one_debt(gw: Site) -> None:
    session_id = gw.enter()
    gw.clock.advance(STAY)
    gw.app.provider.declined[CODE] = "insufficient_funds"  # type: ignore[attr-defined]
    gw.exit.passed(PLATE, "offline00000004", gw.clock.now(), session_id=session_id,
                   settled="payment_code_offline", fee_fen=1_500)
    gw.handled()
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=PLATE, session_id=session_id,
                  fee_fen=1_500)
    gw.handled()
    assert charged(gw) == [(session_id, "failed", 1_500)]
    assert gw.debts() == [1_500]


def test_a_code_naming_a_stay_of_another_car_is_not_charged_to_it(gw: Site) -> None:
    no_plate = no_plate_stay(gw)
    plated = gw.enter()
    gw.clock.advance(STAY)
    gw.exit.event(PaymentCode, gw.clock.now(), code=CODE, plate=PLATE, session_id=no_plate,
                  fee_fen=1_500)
    gw.handled()
    assert charged(gw) == [(plated, "paid", 1_500)]  # the plate's own stay
    # A ticket nobody came in on, naming the plated car's stay: charged to nobody, kept.
    gw.exit.event(PaymentCode, gw.clock.now(), code="134567890123456780", plate=None,
                  identity="#QZZZZZZZZZZZZ", session_id=plated, fee_fen=1_500)
    gw.handled()
    assert charged(gw) == [(plated, "paid", 1_500)]
    (letter,) = gw.rows("SELECT reason FROM dead_letters")
    assert "no session" in letter["reason"]


def _booked(site: SimulatedSite) -> tuple[list[tuple[str, str, int]], list[int]]:
    with site.gateway.store.reader() as db:
        payments = [(r["method"], r["state"], r["amount_fen"]) for r in db.query(
            "SELECT method, state, amount_fen FROM payments ORDER BY plate")]
        debts = [r["amount_fen"] for r in db.query("SELECT amount_fen FROM debts")]
    return payments, debts


@pytest.mark.integration
def test_on_real_lanes_each_way_of_paying_lets_the_car_out_and_is_booked_once(
    site: SimulatedSite,
) -> None:
    ways: dict[str, PayMethod] = {"粤B00001": "qr", "粤B00002": "code", "粤B00003": "cash",
                                  "粤B00004": "declined"}
    for plate in ways:
        site.drive("in1", plate)
        site.settle()
    site.clock.advance(timedelta(minutes=90))  # ¥7 each
    site.payer.choose = ways.__getitem__
    passages = {}
    for plate in ways:
        passages[plate] = site.drive("out1", plate)
        site.settle()

    assert {plate: (p.opened, p.reason, p.fee_fen, p.settled) for plate, p in passages.items()} == {
        "粤B00001": (True, "payment_due", 700, "paid_online"),
        "粤B00002": (True, "payment_due", 700, "payment_code"),
        "粤B00003": (True, "payment_due", 700, "cash"),
        "粤B00004": (True, "payment_due", 700, "guard_open"),  # declined; a guard let it out
    }
    payments, debts = _booked(site)
    assert payments == [("prepay", "paid", 700), ("payment_code", "paid", 700),
                        ("cash", "paid", 700), ("payment_code", "failed", 700)]
    assert debts == [700]  # the declined car's fee, once
    with site.gateway.store.reader() as db:
        states = {r["state"] for r in db.query("SELECT state FROM sessions")}
    assert states == {"closed"}
    assert len(site.payer.callback_to_barrier_ms) == 1


@pytest.mark.integration
def test_on_real_lanes_a_driver_who_cannot_pay_backs_out_owing_nothing(
    site: SimulatedSite,
) -> None:
    site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(minutes=90))
    site.lanes["out1"].driver.payer = None
    backed_out = site.drive("out1", PLATE)
    site.settle()
    assert (backed_out.opened, backed_out.reason) == (False, "payment_due")
    assert _booked(site) == ([], [])  # a refusal: no money, no debt

    site.lanes["out1"].driver.payer = site.payer  # comes back with a phone that works
    leaving = site.drive("out1", PLATE)
    site.settle()
    assert (leaving.opened, leaving.settled) == (True, "paid_online")
    assert _booked(site) == ([("prepay", "paid", 700)], [])


@pytest.mark.integration
def test_on_real_lanes_an_exit_held_free_open_lets_the_car_out_booked_free(
    site: SimulatedSite,
) -> None:
    site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(minutes=90))
    gateway = site.gateway
    gateway.service.call(lambda: gateway.commander.hold_open(
        "out1", actor="office:peak", reason="peak hour: exits free"))
    controller = site.lanes["out1"].node.controller
    eventually(lambda: controller.mode == "free_open", what="out1 held free-open")
    leaving = site.drive("out1", PLATE)
    site.settle()
    assert (leaving.opened, leaving.settled) == (True, "free_open")
    assert _booked(site) == ([], [])
    with gateway.store.reader() as db:
        fee = db.execute("SELECT fee_fen FROM sessions").fetchone()[0]
    assert fee == 0  # booked free with the reason, never as paid
