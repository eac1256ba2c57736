"""Alerts: escalation on simulated time, dedup, signed links, real e-mail and webhook through
Apprise, and the retained alert topic and staff acks on a real, locked-down Mosquitto."""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from aiosmtpd.controller import Controller
from pydantic import SecretStr

from broker.provision.generate import provision_site
from broker.provision.inventory import BrokerSpec, LaneSpec, SensorSpec, SiteInventory, StaffSpec
from broker.runner import MosquittoBroker
from gateway.records.audit import AuditLog, verify
from gateway.safety.alerts import (
    AckTokenError,
    AlertDesk,
    AlertError,
    AlertSettings,
    AppriseNotifier,
    Person,
    Shift,
    Step,
    load_or_create_key,
)
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from parkguard.errors import ContractError
from tests.conftest import TEST_SITE
from tests.helpers import Recorder, eventually
from wire.contract import topics
from wire.contract.messages import Alert
from wire.mqtt import MqttBus

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: shift "a"
KEY = b"k" * 32


@dataclass
class RecordingNotifier:
    """The Notifier seam for timing tests: what would have left, and when."""

    clock: ManualClock
    sent: list[tuple[datetime, str, str, str]] = field(default_factory=list)

    def send(self, url: str, title: str, body: str) -> None:
        self.sent.append((self.clock.now(), url, title, body))

    def targets(self) -> list[str]:
        return [url.removeprefix("rec://") for _at, url, _t, _b in self.sent]


def person(pid: str, role: str | None, shift: str | None, *teams: str) -> Person:
    return Person.model_validate({"id": pid, "name": pid.upper(), "role": role,
                                  "shift": shift, "teams": teams,
                                  "contacts": {"app": f"rec://{pid}"}})


def roster(**extra: Any) -> AlertSettings:
    return AlertSettings(
        shifts=(Shift(name="a", start=time(8)), Shift(name="b", start=time(16)),
                Shift(name="c", start=time(0))),
        people=(person("guard-a", "guard", "a"), person("guard-b", "guard", "b"),
                person("lead-a", "squad_leader", "a"), person("lead-b", "squad_leader", "b"),
                person("cap-a", "captain", "a"), person("tech-a", None, "a", "facilities"),
                person("boss", "manager", None)),
        steps=(Step(role="guard", after_min=0), Step(role="squad_leader", after_min=5),
               Step(role="captain", after_min=10), Step(role="manager", after_min=15)),
        repeat_min=30, ack_base_url="https://gw.test/alerts/ack", ack_link_ttl_min=60,
        **extra,
    )


@dataclass
class Desk:
    desk: AlertDesk
    clock: ManualClock
    notes: RecordingNotifier
    audit: AuditLog
    db: sqlite_utils.Database


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    clock = ManualClock(START)
    db = open_database(tmp_path / "gateway.db")
    audit = AuditLog(db, clock=clock)
    notes = RecordingNotifier(clock)
    alerts = AlertDesk(db, site=TEST_SITE, clock=clock, audit=audit, settings=roster(),
                       notifier=notes, ack_key=KEY)
    yield Desk(alerts, clock, notes, audit, db)
    db.close()


def _raise(d: Desk, key: str = "flood:1", **kw: Any) -> str:
    view, new = d.desk.raise_alert(key, kind="flood", severity="warning", title_zh="水位一级预警",
                                   title_en="Flood level 1", detail="120 mm at flood1", **kw)
    assert new
    return view.alert_id


def _at(d: Desk, minutes: float) -> list[str]:
    """Advance to ``minutes`` after START, tick, and say who was messaged by that tick."""
    before = len(d.notes.sent)
    d.clock.set(START + timedelta(minutes=minutes))
    d.desk.tick()
    return [url.removeprefix("rec://") for _at, url, _t, _b in d.notes.sent[before:]]


def test_escalation_climbs_the_ladder_at_the_right_minutes_and_stops_on_ack(desk: Desk) -> None:
    alert_id = _raise(desk)
    assert desk.notes.targets() == ["guard-a"]  # the guard on duty, at once
    assert desk.desk.view(alert_id).state == "notified"
    assert _at(desk, 4.99) == []
    assert _at(desk, 5) == ["lead-a"]
    assert _at(desk, 9) == []
    assert _at(desk, 10) == ["cap-a"]
    assert _at(desk, 15) == ["boss"]
    assert _at(desk, 29) == []
    assert _at(desk, 30) == ["guard-a"]  # the ladder starts again: nobody answered
    assert desk.desk.view(alert_id).round == 1
    view = desk.desk.ack(alert_id, "staff:lead-a", "dashboard")
    assert (view.state, view.acked_by, view.acked_via) == ("acked", "staff:lead-a", "dashboard")
    for minutes in (35, 40, 45, 60, 600):
        assert _at(desk, minutes) == []
    assert desk.desk.next_due() is None
    sent_at = [(at - START).total_seconds() / 60 for at, *_ in desk.notes.sent]
    assert sent_at == [0, 5, 10, 15, 30]


def test_the_shift_on_duty_gets_it_and_missed_steps_go_out_when_the_gateway_catches_up(
        desk: Desk) -> None:
    desk.clock.set(START + timedelta(hours=7))  # 17:00 local: shift b
    _raise(desk)
    assert desk.notes.targets() == ["guard-b"]
    desk.clock.advance(timedelta(minutes=12))  # the ticker was late: both due steps leave
    desk.desk.tick()
    assert desk.notes.targets() == ["guard-b", "lead-b"]  # no captain on shift b: nobody
    events = [e["detail"] for e in desk.desk.events("a-000001") if e["event"] == "escalated"]
    assert events[-1].endswith("nobody on duty")


def test_fire_goes_to_everyone_on_duty_and_the_managers_at_once(desk: Desk) -> None:
    view, _ = desk.desk.raise_alert("fire", kind="fire", severity="critical", title_zh="火警",
                                    title_en="FIRE", all_at_once=True)
    assert sorted(desk.notes.targets()) == ["boss", "cap-a", "guard-a", "lead-a", "tech-a"]
    assert desk.desk.view(view.alert_id).step == 3
    assert _at(desk, 15) == []
    assert sorted(_at(desk, 30)) == ["boss", "cap-a", "guard-a", "lead-a", "tech-a"]
    desk.desk.ack(view.alert_id, "staff:guard-a", "mqtt")
    assert _at(desk, 60) == []


def test_a_team_alert_reaches_the_team_with_the_guard(desk: Desk) -> None:
    _raise(desk, team="facilities")
    assert desk.notes.targets() == ["guard-a", "tech-a"]


def test_the_same_condition_raises_one_alert(desk: Desk) -> None:
    first = _raise(desk, "missing:flood1")
    for _ in range(5):
        again, new = desk.desk.raise_alert("missing:flood1", kind="trouble",
                                           severity="warning", title_zh="传感器失联",
                                           title_en="missing", detail="still missing")
        assert (again.alert_id, new) == (first, False)
    assert len(desk.notes.sent) == 1
    assert desk.desk.view(first).detail == "still missing"
    desk.desk.resolve(first, "gateway", "node back")
    assert desk.desk.resolve_key("missing:flood1", "gateway", "again") is None
    second = _raise(desk, "missing:flood1")  # a new occurrence is a new alert
    assert second != first
    assert [v.alert_id for v in desk.desk.active()] == [second]


def test_signed_link_acknowledges_once_and_forged_or_expired_links_are_refused(
        desk: Desk) -> None:
    alert_id = _raise(desk)
    body = desk.notes.sent[0][3]
    url = next(line.split(": ", 1)[1] for line in body.splitlines() if "Acknowledge" in line)
    assert url.startswith("https://gw.test/alerts/ack?t=")
    token = url.split("?t=", 1)[1]
    claim = desk.desk.verify_ack_token(token)
    assert (claim.alert_id, claim.person) == (alert_id, "guard-a")
    view = desk.desk.ack_with_token(token)
    assert (view.state, view.acked_by, view.acked_via) == ("acked", "staff:guard-a", "link")
    with pytest.raises(AckTokenError) as used:
        desk.desk.ack_with_token(token)
    assert used.value.reason == "used"

    other = _raise(desk, "flood:2")
    good = desk.desk.ack_token(other, "guard-a")
    payload, sig = good.split(".")
    forged_claim = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB")
    for forged in (f"{forged_claim}.{sig}", f"{payload}.{sig[::-1]}", "garbage", ""):
        with pytest.raises(AckTokenError) as refused:
            desk.desk.ack_with_token(forged)
        assert refused.value.reason in ("forged", "malformed")
    stranger = AlertDesk(desk.db, site=TEST_SITE, clock=desk.clock, audit=desk.audit,
                         settings=roster(), notifier=desk.notes, ack_key=b"x" * 32)
    with pytest.raises(AckTokenError) as foreign:
        desk.desk.ack_with_token(stranger.ack_token(other, "guard-a"))
    assert foreign.value.reason == "forged"
    desk.clock.advance(timedelta(minutes=61))
    with pytest.raises(AckTokenError) as expired:
        desk.desk.ack_with_token(good)
    assert expired.value.reason == "expired"
    assert desk.desk.view(other).state == "notified"

    entries = [(e.action, e.actor) for e in desk.audit.entries()]
    assert entries == [("alert.ack", "staff:guard-a")]
    desk.desk.resolve(other, "staff:boss", "pump restarted, water down")
    assert [e.action for e in desk.audit.entries()] == ["alert.ack", "alert.resolve"]
    assert verify(desk.db).ok
    with pytest.raises(AlertError):
        desk.desk.ack(other, "staff:guard-a", "dashboard")  # resolved already


def test_staff_ack_message_names_its_sender_in_the_topic(desk: Desk) -> None:
    alert_id = _raise(desk)
    topic = topics.alert_ack(TEST_SITE, alert_id, "lead-a")
    view = desk.desk.handle_ack_message(topic, json.dumps({"alert_id": alert_id}).encode())
    assert (view.acked_by, view.acked_via) == ("staff:lead-a", "mqtt")
    with pytest.raises(ContractError):
        desk.desk.handle_ack_message(topic, b'{"alert_id": "a-999999"}')
    with pytest.raises(ContractError):
        desk.desk.handle_ack_message(topic, b"not json")
    with pytest.raises(AlertError):
        desk.desk.handle_ack_message(topics.alert_ack(TEST_SITE, alert_id, "intruder"),
                                     json.dumps({"alert_id": alert_id}).encode())


def test_a_failing_channel_is_recorded_and_the_alert_stays_raised(tmp_path: Path) -> None:
    class Broken:
        def send(self, url: str, title: str, body: str) -> None:
            raise RuntimeError("DingTalk said 310000 keywords not in content")

    clock = ManualClock(START)
    db = open_database(tmp_path / "g.db")
    alerts = AlertDesk(db, site=TEST_SITE, clock=clock, audit=AuditLog(db, clock=clock),
                       settings=roster(), notifier=Broken(), ack_key=KEY)
    view, _ = alerts.raise_alert("k", kind="trouble", severity="warning", title_zh="t",
                                 title_en="t")
    [note] = alerts.notifications(view.alert_id)
    assert note["status"] == "failed" and "310000" in note["error"]
    assert alerts.view(view.alert_id).state == "raised"


def test_ack_key_file_is_made_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ack.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_key(path) == key


# --- real delivery through Apprise ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []  # noqa: RUF012

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((self.path, json.loads(self.rfile.read(length))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_email_and_webhook_really_leave_through_apprise(tmp_path: Path) -> None:
    mailbox = _Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    _Hook.received = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        settings = roster().model_copy(update={"people": (Person(
            id="guard-a", name="Wang", role="guard", shift="a", contacts={
                "email": SecretStr(f"mailto://127.0.0.1:{smtp.port}?from=parkguard@test.lan"
                                   "&to=wang@test.lan&mode=insecure"),
                "webhook": SecretStr(f"json://127.0.0.1:{http.server_port}/alerts")}),)})
        clock = ManualClock(START)
        db = open_database(tmp_path / "g.db")
        alerts = AlertDesk(db, site=TEST_SITE, clock=clock, audit=AuditLog(db, clock=clock),
                           settings=settings, notifier=AppriseNotifier(), ack_key=KEY)
        view, _ = alerts.raise_alert("flood:2", kind="flood", severity="critical",
                                     title_zh="水位二级 暂停入场",
                                     title_en="Flood level 2: entries closed",
                                     detail="310 mm at flood1")
        assert len(mailbox.messages) == 1
        mail = mailbox.messages[0].decode("utf-8", "replace")
        assert "To: wang@test.lan" in mail
        [(path, hook)] = _Hook.received
        assert path == "/alerts"
        assert hook["title"] == "【紧急 CRITICAL】水位二级 暂停入场 / Flood level 2: entries closed"
        assert "310 mm at flood1" in hook["message"]
        assert "https://" not in hook["message"] or "?t=" in hook["message"]
        statuses = {(n["channel"], n["status"], n["target"])
                    for n in alerts.notifications(view.alert_id)}
        assert statuses == {("email", "sent", "mailto://127.0.0.1:" + str(smtp.port)),
                            ("webhook", "sent", f"json://127.0.0.1:{http.server_port}")}
        assert alerts.view(view.alert_id).state == "notified"
    finally:
        smtp.stop()
        http.shutdown()


def test_courier_sends_off_the_owner_thread_and_records_through_it(tmp_path: Path) -> None:
    clock = ManualClock(START)
    db = open_database(tmp_path / "g.db")
    notes = RecordingNotifier(clock)
    handed: queue.Queue[tuple[str, Any]] = queue.Queue()

    def owner(work: Any) -> None:  # like Gateway.call: the work runs on the owner's thread
        handed.put((threading.current_thread().name, work))

    alerts = AlertDesk(db, site=TEST_SITE, clock=clock, audit=AuditLog(db, clock=clock),
                       settings=roster(), notifier=notes, ack_key=KEY, run_on_owner=owner)
    view, _ = alerts.raise_alert("k", kind="trouble", severity="warning", title_zh="t",
                                 title_en="t")
    alerts.close()
    assert [n["status"] for n in alerts.notifications(view.alert_id)] == ["queued"]
    sender, work = handed.get(timeout=30)
    assert sender == "alert-courier"
    work()
    assert [n["status"] for n in alerts.notifications(view.alert_id)] == ["sent"]


# --- the retained topic and staff acks on a real broker --------------------------------------


@pytest.fixture(scope="module")
def staff_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoBroker]:
    """A site with a staff app user, locked down as an installer provisions it."""
    inventory = SiteInventory(
        site="alerts", broker=BrokerSpec(address="localhost"),
        lanes=(LaneSpec(id="in1", direction="entry"),),
        sensors=(SensorSpec(id="fire1", kind="fire_panel"),),
        staff=(StaffSpec(id="lead-a", name="Squad leader A"),),
        monitors=(),
    )
    result = provision_site(inventory, tmp_path_factory.mktemp("alerts-site"))
    with MosquittoBroker(tmp_path_factory.mktemp("alerts-mosquitto"), site=result) as running:
        yield running


def test_alert_is_retained_while_active_cleared_when_resolved_and_acked_from_the_staff_app(
        staff_broker: MosquittoBroker, tmp_path: Path) -> None:
    clock = ManualClock(START)
    db = open_database(tmp_path / "g.db")
    received: list[tuple[str, bytes]] = []
    with MqttBus(staff_broker.address("gateway"), client_id="gateway-alerts") as gateway:
        gateway.subscribe(f"{topics.all_alerts('alerts')}/ack/+",
                          lambda t, p: received.append((t, p)))
        alerts = AlertDesk(db, site="alerts", clock=clock, audit=AuditLog(db, clock=clock),
                           settings=roster(), notifier=RecordingNotifier(clock), ack_key=KEY,
                           publisher=gateway)
        view, _ = alerts.raise_alert("fire", kind="fire", severity="critical", title_zh="火警",
                                     title_en="FIRE", all_at_once=True)
        topic = topics.alert("alerts", view.alert_id)
        staff_seen: list[bytes] = []
        with MqttBus(staff_broker.address("staff-lead-a"), client_id="staff-lead-a") as app:
            app.subscribe(topics.all_alerts("alerts"), lambda _t, p: staff_seen.append(p))
            eventually(lambda: bool(staff_seen), what="the retained alert on the staff app")
            alert = Alert.from_json(staff_seen[-1])
            assert (alert.state, alert.severity, alert.escalation_step) == ("raised",
                                                                              "critical", 3)
            app.publish_and_wait(topics.alert_ack("alerts", view.alert_id, "lead-a"),
                                 json.dumps({"alert_id": view.alert_id}).encode())
            eventually(lambda: bool(received), what="the ack at the gateway")
            acked = alerts.handle_ack_message(*received[0])
            assert acked.acked_by == "staff:lead-a"
            eventually(lambda: Alert.from_json(staff_seen[-1]).state == "acked",
                       what="the acked state on the topic")
            alerts.resolve(view.alert_id, "staff:lead-a", "false alarm: dust in detector B2-7")
            eventually(lambda: staff_seen[-1] == b"", what="the retained alert cleared")
            states = [Alert.from_json(p).state for p in staff_seen if p]
            assert states[-1] == "resolved"
        # A newcomer finds nothing retained for it any more. The sentinel: a second alert,
        # retained, subscribed to after the first topic on the same connection; the broker
        # sends what is retained for each subscription in the order they came, so once the
        # sentinel is in, anything retained on the resolved topic would have come first.
        other, _ = alerts.raise_alert("flood:1", kind="flood", severity="warning",
                                      title_zh="水位一级预警", title_en="Flood level 1")
        late: list[bytes] = []
        sentinel: list[bytes] = []
        with MqttBus(staff_broker.address("staff-lead-a"), client_id="staff-lead-a") as app:
            app.subscribe(topic, lambda _t, p: late.append(p))
            app.subscribe(topics.alert("alerts", other.alert_id),
                          lambda _t, p: sentinel.append(p))
            eventually(lambda: bool(sentinel), what="the retained sentinel alert")
        assert Alert.from_json(sentinel[0]).alert_id == other.alert_id
        assert late == []


def test_monitor_sees_the_retained_alert_on_the_shared_test_site(broker: MosquittoBroker,
                                                                  tmp_path: Path) -> None:
    clock = ManualClock(START)
    db = open_database(tmp_path / "g.db")
    with MqttBus(broker.address("gateway"), client_id="gateway-test") as gateway:
        alerts = AlertDesk(db, site=TEST_SITE, clock=clock, audit=AuditLog(db, clock=clock),
                           settings=roster(), notifier=RecordingNotifier(clock), ack_key=KEY,
                           publisher=gateway)
        view, _ = alerts.raise_alert("flood:1", kind="flood", severity="warning",
                                     title_zh="水位一级预警", title_en="Flood level 1")
        with Recorder(broker, topics.all_alerts(TEST_SITE), device="monitor-watch1") as watch:
            eventually(lambda: bool(watch.payloads()), what="retained alert")
            assert Alert.from_json(watch.payloads()[0]).alert_id == view.alert_id
