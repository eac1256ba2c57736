"""The shift handover log on a running site (real Mosquitto, gateway, lanes on mock pins,
real SQLite): open items gathered, keys and cash typed in, accepted only by another login,
both audited, unaccepted items carried over, and the day's handovers in the daily report.
At the roster's shift change (the clock is stepped): a handover due until one is started,
and a late or unaccepted one alerting the squad leader on duty until it is accepted."""

from __future__ import annotations

import re
import tomllib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.config import SafetySettings
from gateway.records import reports
from gateway.safety.handover import HandoverError
from gateway.safety.shift_change import boundary_at
from gateway.web import WebSettings
from gateway.web.app import create_web_app
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.helpers import eventually
from tests.ops_roster import rostered_site
from tests.test_web_auth import add_people, login
from wire.contract.messages import Fault

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Shanghai")

#: Three shifts, a guard and a squad leader on each of a and b; a late handover alerts after
#: 15 minutes. The site's clock starts at 10:00 (shift a); b starts at 16:00 (08:00 UTC).
SHIFT_ROSTER = """
[alerts]
timezone = "Asia/Shanghai"
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]
people = [
  { id = "gina", name = "Gina", role = "guard", shift = "a" },
  { id = "sam", name = "Sam", role = "squad_leader", shift = "a" },
  { id = "bo", name = "Bo", role = "guard", shift = "b" },
  { id = "lin", name = "Lin", role = "squad_leader", shift = "b" },
  { id = "mo", name = "Mo", teams = ["maintenance"] },
]

[handover]
alert_after_min = 15
"""
B_STARTS = datetime(2026, 5, 6, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai
B_KEY = "handover:2026-05-06T08:00:00.000Z"


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path,
             test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


@pytest.fixture
def shifts(broker: MosquittoBroker, tmp_path: Path,
           test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """The site fixture's lanes with :data:`SHIFT_ROSTER` as the safety file."""
    roster = tmp_path / "safety.toml"
    roster.write_text(SHIFT_ROSTER, encoding="utf-8")
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=("in1",),
                       exit_lanes=("out1",), safety_file=roster,
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


def test_the_outgoing_guard_hands_over_what_is_open_and_the_incoming_guard_accepts(
    rostered: SimulatedSite,
) -> None:
    site = rostered
    gateway = site.gateway
    call = gateway.service.call
    incident = call(lambda: gateway.incidents.open(
        "accident", description="scrape at B2 pillar 14", reported_by="guard:gina",
        lane="out1"))
    call(lambda: gateway.holds.hold("粤B12345", reason="scraped a pillar", actor="guard:gina",
                                    incident_id=incident.incident_id))
    site.replay_journal("out1", Fault(
        event_id=uuid.uuid4().hex, seq=70_000, ts=site.clock.now(), lane="out1",
        code="display_failed", detail="no answer on RS-485"))
    site.settle()

    handover = call(lambda: gateway.handover.start(
        "guard:gina", keys=["booth key", "barrier cabinet key"],
        cash=[("booth float", 20_000)], note="out1 display dark"))
    kinds = [item.kind for item in handover.items]
    assert handover.state == "waiting" and handover.from_shift == "a"
    assert kinds.count("incident") == 1 and kinds.count("hold") == 1
    # the accident's own alert; no car came to the exit (no hold alert)
    assert kinds.count("fault") == 1 and kinds.count("alarm") == 1
    assert any("事故" in item.text for item in handover.items if item.kind == "alarm")
    assert kinds.count("key") == 2 and handover.cash_fen == 20_000

    with pytest.raises(HandoverError, match="own handover"):
        call(lambda: gateway.handover.accept(handover.handover_id, "staff:gina"))
    site.clock.advance(timedelta(hours=6))  # 16:00: shift b takes over
    accepted = call(lambda: gateway.handover.accept(handover.handover_id, "guard:bo"))
    assert (accepted.state, accepted.accepted_by, accepted.to_shift) == (
        "accepted", "guard:bo", "b")
    assert call(gateway.handover.waiting) is None

    with gateway.store.reader() as db:
        audited = [(r["action"], r["actor"]) for r in db.query(
            "SELECT action, actor FROM audit_log WHERE subject = ? ORDER BY seq",
            [f"handover:{handover.handover_id}"])]
        day = reports.daily_summary(db, site.clock.now().astimezone(
            ZoneInfo("Asia/Shanghai")).date(), ZoneInfo("Asia/Shanghai"))
    assert audited == [("handover.start", "guard:gina"), ("handover.accept", "guard:bo")]
    (row,) = day.handovers
    assert (row.outgoing, row.accepted_by, row.state, row.cash_fen) == (
        "guard:gina", "guard:bo", "accepted", 20_000)
    assert row.items["key"] == 2


def test_an_unaccepted_handover_carries_its_items_into_the_next(
    rostered: SimulatedSite,
) -> None:
    gateway = rostered.gateway
    call = gateway.service.call
    first = call(lambda: gateway.handover.start("guard:gina", keys=["booth key"],
                                                cash=[("float", 5_000)]))
    rostered.clock.advance(timedelta(hours=8))
    second = call(lambda: gateway.handover.start("guard:bo", keys=["store room key"]))
    assert call(lambda: gateway.handover.handover(first.handover_id)).state == "superseded"
    assert second.carried_from == first.handover_id
    assert sorted(i.text for i in second.items if i.kind == "key") == [
        "booth key", "store room key"]
    assert second.cash_fen == 5_000
    assert call(gateway.handover.waiting) == second


def test_typed_items_are_bounded(rostered: SimulatedSite) -> None:
    gateway = rostered.gateway
    with pytest.raises(HandoverError, match="cash"):
        gateway.service.call(lambda: gateway.handover.start("guard:gina",
                                                            cash=[("x", -1)]))
    with pytest.raises(HandoverError, match="key"):
        gateway.service.call(lambda: gateway.handover.start("guard:gina", keys=["k" * 201]))


# --- the shift change ------------------------------------------------------------------------


def test_a_boundary_is_the_last_shift_start_and_the_shift_before_it() -> None:
    roster = SafetySettings.model_validate(_toml(SHIFT_ROSTER)).alerts
    at_3 = boundary_at(roster, datetime(2026, 5, 6, 3, 0, tzinfo=ZONE))
    assert (at_3.from_shift, at_3.to_shift, at_3.at) == (
        "b", "c", datetime(2026, 5, 6, 0, 0, tzinfo=ZONE))
    assert at_3.previous == datetime(2026, 5, 5, 16, 0, tzinfo=ZONE)
    at_8 = boundary_at(roster, datetime(2026, 5, 6, 8, 0, tzinfo=ZONE))
    assert (at_8.from_shift, at_8.to_shift) == ("c", "a") and at_8.key == (
        "handover:2026-05-06T00:00:00.000Z")
    assert boundary_at(roster, datetime(2026, 5, 6, 23, 59, tzinfo=ZONE)).key == B_KEY


@pytest.mark.parametrize("bad", ["alert_after_min = -1", "alert_after_min = 241",
                                 "early_min = 121", "alert_after_min = 1.5", "every = 3"])
def test_the_handover_settings_are_bounded(bad: str) -> None:
    text = SHIFT_ROSTER.replace("alert_after_min = 15", bad)
    with pytest.raises(ValueError, match="handover"):
        SafetySettings.model_validate(_toml(text))


def test_at_the_shift_change_a_handover_is_due_until_one_is_started(
    rostered: SimulatedSite,
) -> None:
    gateway, clock = rostered.gateway, rostered.clock
    desk, call = gateway.handover, gateway.service.call
    # 10:00: the 08:00 change came before this gateway started, on a database without a
    # handover: not judged
    assert call(desk.shift_change) is None
    clock.set(B_STARTS - timedelta(seconds=1))
    assert call(desk.shift_change) is None
    clock.set(B_STARTS)
    change = call(desk.shift_change)
    assert change is not None and (change.state, change.key) == ("due", B_KEY)
    assert (change.boundary.from_shift, change.boundary.to_shift) == ("a", "b")
    assert change.alert_at is None  # the alert is off in this roster: only the banner
    assert call(lambda: desk.tick(clock.now())) is None
    clock.advance(timedelta(hours=2))  # still due at 18:00: nobody handed over
    assert call(desk.shift_change).state == "due"  # type: ignore[union-attr]

    started = call(lambda: desk.start("guard:gina", keys=["booth key"]))
    change = call(desk.shift_change)
    assert change is not None and (change.state, change.handover_id) == (
        "waiting", started.handover_id)
    call(lambda: desk.accept(started.handover_id, "guard:bo"))
    assert call(desk.shift_change).state == "accepted"  # type: ignore[union-attr]

    # the next change (00:00, b → c): due again; a handover from 23:40 answers it
    clock.set(datetime(2026, 5, 6, 23, 40, tzinfo=ZONE))
    early = call(lambda: desk.start("guard:bo"))
    clock.set(datetime(2026, 5, 7, 0, 0, tzinfo=ZONE))
    change = call(desk.shift_change)
    assert change is not None and (change.boundary.from_shift, change.boundary.to_shift,
                                   change.handover_id) == ("b", "c", early.handover_id)


def test_no_handover_at_the_change_alerts_the_squad_leader_until_one_is_accepted(
    shifts: SimulatedSite,
) -> None:
    gateway, clock = shifts.gateway, shifts.clock
    desk, call, alerts = gateway.handover, gateway.service.call, gateway.alerts
    assert alerts is not None
    clock.set(B_STARTS + timedelta(minutes=14, seconds=59))
    change = call(lambda: desk.tick(clock.now()))
    assert change is not None and change.state == "due"
    assert change.alert_at == B_STARTS + timedelta(minutes=15)
    assert call(lambda: alerts.open_alert(B_KEY)) is None

    clock.set(B_STARTS + timedelta(minutes=15))
    call(lambda: desk.tick(clock.now()))
    call(lambda: desk.tick(clock.now()))  # one alert, not a storm
    alert = call(lambda: alerts.open_alert(B_KEY))
    assert alert is not None and alert.kind == "handover_overdue"
    assert "a → b" in alert.title_en and "no handover started" in alert.detail
    told = call(lambda: alerts.events(alert.alert_id))
    assert [e["detail"] for e in told if e["event"] == "escalated"] == [
        "round 0 step 0: bo, lin"]  # the guard and the squad leader on duty (shift b)
    call(lambda: alerts.ack(alert.alert_id, "staff:lin", "dashboard"))

    clock.advance(timedelta(minutes=5))
    started = call(lambda: desk.start("guard:gina", keys=["booth key"]))
    assert not any(i.ref == alert.alert_id for i in started.items)  # not handed over itself
    call(lambda: desk.tick(clock.now()))
    assert call(lambda: alerts.open_alert(B_KEY)) is not None  # started is not accepted
    clock.advance(timedelta(minutes=3))
    call(lambda: desk.accept(started.handover_id, "guard:bo"))
    assert call(lambda: alerts.open_alert(B_KEY)) is None
    ended = call(lambda: alerts.view(alert.alert_id))
    assert (ended.state, ended.acked_by, ended.resolved_by) == (
        "resolved", "staff:lin", "guard:bo")

    with gateway.store.reader() as db:
        day = reports.daily_summary(db, clock.now().astimezone(ZONE).date(), ZONE)
    (row,) = day.handover_alerts
    assert row.raised_at.strftime("%H:%M") == "16:15" and row.acked_by == "staff:lin"
    assert row.resolved_by == "guard:bo" and row.resolved_at is not None
    assert row.resolved_at.strftime("%H:%M") == "16:23"

    add_people(gateway)
    with TestClient(create_web_app(gateway, settings=WebSettings(), clock=clock)) as client:
        assert login(client, "max") == 303
        page = client.get("/reports?day=2026-05-06").text
    shown = re.search(r'<ul id="handover-alerts">(.*?)</ul>', page, re.S)
    assert shown is not None and "交接班未完成" in shown.group(1)
    assert "staff:lin" in shown.group(1) and "guard:bo" in shown.group(1)


def test_a_handover_left_unaccepted_after_the_change_alerts_and_accepting_ends_it(
    shifts: SimulatedSite,
) -> None:
    gateway, clock = shifts.gateway, shifts.clock
    desk, call, alerts = gateway.handover, gateway.service.call, gateway.alerts
    assert alerts is not None
    clock.set(B_STARTS - timedelta(minutes=10))  # 15:50: Gina hands over before the change
    started = call(lambda: desk.start("guard:gina", cash=[("booth float", 20_000)]))
    clock.set(B_STARTS + timedelta(minutes=14))
    change = call(lambda: desk.tick(clock.now()))
    assert change is not None and (change.state, change.handover_id) == (
        "waiting", started.handover_id)
    assert call(lambda: alerts.open_alert(B_KEY)) is None
    clock.set(B_STARTS + timedelta(minutes=15))
    call(lambda: desk.tick(clock.now()))
    alert = call(lambda: alerts.open_alert(B_KEY))
    assert alert is not None and "not accepted" in alert.detail
    assert started.handover_id in alert.detail
    call(lambda: desk.accept(started.handover_id, "guard:bo"))
    assert call(lambda: alerts.open_alert(B_KEY)) is None


def test_the_gateway_ticker_raises_the_late_handover_on_its_clock(
    shifts: SimulatedSite,
) -> None:
    gateway, alerts = shifts.gateway, shifts.gateway.alerts
    assert alerts is not None
    shifts.clock.set(B_STARTS + timedelta(minutes=16))  # the gateway's own tick, no call here
    eventually(lambda: gateway.service.call(lambda: alerts.open_alert(B_KEY)) is not None,
               what="the ticker to raise the late handover")


def _toml(text: str) -> dict[str, object]:
    return tomllib.loads(text)
