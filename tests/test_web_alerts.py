"""Alerts on the dashboard: the banner on every staff page, acknowledging (dashboard and the
signed link in a message) and the fire reset, on a running gateway with a safety file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.web import WebSettings, create_web_app
from parkguard.clock import ManualClock
from simulator.site import settings_of
from tests.conftest import SITE_START, TEST_SITE
from tests.test_web_auth import add_people, csrf_of, login
from wire.contract.messages import SensorReading

pytestmark = pytest.mark.integration

#: The roster: dashboard users are roster people by id (user name = roster id).
SAFETY = """
[alerts]
timezone = "Asia/Shanghai"
repeat_min = 30
ack_base_url = "http://gw.test/alerts/ack"
ack_link_ttl_min = 60
shifts = [{ name = "a", start = 08:00:00 }, { name = "b", start = 16:00:00 },
          { name = "c", start = 00:00:00 }]

[[alerts.people]]
id = "gina"
name = "Gina"
role = "guard"
shift = "a"

[[alerts.people]]
id = "sam"
name = "Sam"
role = "squad_leader"
shift = "a"

[[alerts.people]]
id = "max"
name = "Max"
role = "manager"

[alarms]
fire_reset_roles = ["captain", "manager"]
"""


@pytest.fixture
def gateway(broker: MosquittoBroker, tmp_path: Path,
            test_site: ProvisionResult) -> Iterator[GatewayApp]:
    """The gateway of the ``site`` fixture, with a safety file (no lanes: not needed here)."""
    safety = tmp_path / "safety.toml"
    safety.write_text(SAFETY, encoding="utf-8")
    config = GatewayConfig(
        site=TEST_SITE, database=tmp_path / "gateway.db",
        broker=settings_of(broker.address("gateway")), safety_file=safety,
        lane_keys={lane: SecretStr(key.hex())
                   for lane, key in test_site.device("gateway").lane_keys.items()},
        sensors=dict(test_site.device("gateway").sensors))
    with GatewayApp(config, clock=ManualClock(SITE_START)) as app:
        yield app


@pytest.fixture
def client(gateway: GatewayApp) -> Iterator[TestClient]:
    web = create_web_app(gateway, settings=WebSettings(), clock=gateway.clock)
    add_people(gateway)
    with TestClient(web) as test_client:
        yield test_client


_seq = iter(range(1, 1_000_000))


def panel(gateway: GatewayApp, *, fire: bool) -> None:
    """A fire-panel reading, handed to the monitor on the worker as the bus would."""
    reading = SensorReading(node="fire1", seq=next(_seq), ts=gateway.clock.now(),
                            kind="fire_panel", fire=fire, trouble=False, supervisory=False,
                            zone="b2-east" if fire else None)
    alarms = gateway.alarms
    assert alarms is not None
    gateway.service.call(lambda: alarms.on_reading(reading))


def banner(html: str) -> str:
    found = re.search(r'<div id="alert-banner"(.*?)</div>', html, re.S)
    assert found, "no alert banner on the page"
    return found.group(0)


def audit_actions(gateway: GatewayApp) -> list[tuple[str, str, str]]:
    return [(e.action, e.actor, e.reason) for e in gateway.audit.entries()]


def test_the_banner_is_on_every_staff_page_and_sounds_for_fire_until_acknowledged(
    gateway: GatewayApp, client: TestClient
) -> None:
    assert login(client, "gina") == 303
    quiet = client.get("/lanes").text
    assert 'class="alert-banner empty"' in banner(quiet)
    assert '<script src="/static/alerts.js" defer></script>' in quiet
    assert client.get("/api/alerts").json()["alerts"] == []

    panel(gateway, fire=True)
    for page in ("/lanes", "/sessions", "/alerts"):
        shown = banner(client.get(page).text)
        assert "empty" not in shown.split(">", 1)[0]
        assert "火警 b2-east 请立即处置" in shown and 'data-sound="fire"' in shown
    api = client.get("/api/alerts").json()
    assert api["fire"] is True and api["enabled"] is True
    # The fire's own alert, then one per response team (gateway/plans/teams.py).
    fire, *teams = api["alerts"]
    assert fire["key"] == "fire" and {t["key"] for t in teams} <= {
        "fire:fire_fighting", "fire:evacuation", "fire:cordon"}
    assert (fire["kind"], fire["severity"], fire["sound"]) == ("fire", "critical", True)

    page = client.get("/lanes").text
    answer = client.post(f"/alerts/{fire['alert_id']}/ack",
                         data={"csrf_token": csrf_of(page), "next": "/lanes"},
                         follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/lanes"
    after = client.get("/api/alerts").json()["alerts"][0]
    assert (after["state"], after["acked_by"], after["sound"]) == ("acked", "guard:gina", False)
    assert ("alert.ack", "guard:gina", "acknowledged via dashboard") in audit_actions(gateway)
    assert "已确认" in client.get("/lanes").text  # the flash, then the banner says acked

    # A forged form (no CSRF token) acknowledges nothing.
    assert client.post(f"/alerts/{fire['alert_id']}/ack", data={}).status_code == 403


@pytest.mark.parametrize("name", ["gina", "sam", "max"])
def test_staff_open_the_alerts_page_merchants_and_strangers_do_not(
    client: TestClient, name: str
) -> None:
    assert client.get("/alerts", follow_redirects=False).status_code == 303
    assert client.get("/api/alerts").status_code == 401
    assert login(client, name) == 303
    assert client.get("/alerts").status_code == 200
    assert client.get("/static/alerts.js").status_code == 200


def test_merchants_get_no_banner_and_no_alerts(gateway: GatewayApp, client: TestClient) -> None:
    panel(gateway, fire=True)
    assert login(client, "mia") == 303
    assert 'id="alert-banner"' not in client.get("/merchant").text
    assert client.get("/alerts").status_code == 403
    assert client.get("/api/alerts").status_code == 403


def reset(client: TestClient, reason: str) -> str:
    token = csrf_of(client.get("/alerts").text)
    answer = client.post("/alerts/fire/reset", data={"csrf_token": token, "reason": reason},
                         follow_redirects=True)
    assert answer.status_code == 200
    return str(answer.text)


def test_fire_reset_needs_an_authorised_roster_person_a_reason_and_a_panel_back_to_normal(
    gateway: GatewayApp, client: TestClient
) -> None:
    alarms = gateway.alarms
    assert alarms is not None
    panel(gateway, fire=True)

    assert login(client, "gina") == 303  # a guard has no reset form and may not post one
    assert 'id="fire-reset"' not in client.get("/alerts").text
    token = csrf_of(client.get("/alerts").text)
    assert client.post("/alerts/fire/reset", data={"csrf_token": token, "reason": "fine now"},
                       follow_redirects=False).status_code == 403

    assert login(client, "max") == 303
    assert "still reports fire" in reset(client, "checked B2 east, dusty detector")
    panel(gateway, fire=False)
    assert "The panel is back to normal" in client.get("/alerts").text

    assert login(client, "sam") == 303  # supervisor on the dashboard, squad leader on the roster
    page = client.get("/alerts").text
    assert 'id="fire-reset"' in page and "squad_leader" in page
    assert "not authorised" in reset(client, "checked B2 east, dusty detector")
    assert alarms.fire_active()

    assert login(client, "max") == 303
    assert "reason is required" in reset(client, " ")
    assert alarms.fire_active()
    done = reset(client, "checked B2 east, dusty detector")
    assert "Fire alarm reset" in done
    assert not alarms.fire_active()
    assert client.get("/api/alerts").json() == {**client.get("/api/alerts").json(),
                                               "alerts": [], "fire": False}
    entries = [(a, who) for a, who, _r in audit_actions(gateway)]
    assert ("alarm.fire_reset", "staff:max") in entries
    reason = next(r for a, _w, r in audit_actions(gateway) if a == "alarm.fire_reset")
    assert reason == "checked B2 east, dusty detector (dashboard user manager:max)"
    recent = client.get("/alerts").text
    assert 'id="recent-alerts"' in recent and "fire reset: checked B2 east" in recent


def test_the_signed_link_shows_the_alert_acknowledges_on_the_button_and_only_once(
    gateway: GatewayApp, client: TestClient
) -> None:
    desk = gateway.alerts
    assert desk is not None
    view, _ = gateway.service.call(lambda: desk.raise_alert(
        "flood:1", kind="flood", severity="warning", title_zh="水位一级预警",
        title_en="Flood level 1", detail="120 mm at flood1"))
    token = desk.ack_token(view.alert_id, "gina")

    # Opening the link (or a chat app previewing it) acknowledges nothing.
    page = client.get(f"/alerts/ack?t={token}")
    assert page.status_code == 200 and 'id="ack-confirm"' in page.text
    assert "水位一级预警" in page.text and "gina" in page.text
    assert desk.view(view.alert_id).state in ("raised", "notified")

    done = client.post("/alerts/ack", data={"csrf_token": csrf_of(page.text), "t": token})
    assert done.status_code == 200 and 'id="ack-done"' in done.text
    acked = desk.view(view.alert_id)
    assert (acked.state, acked.acked_by, acked.acked_via) == ("acked", "staff:gina", "link")
    assert ("alert.ack", "staff:gina", "acknowledged via link") in audit_actions(gateway)

    again = client.get(f"/alerts/ack?t={token}")
    assert again.status_code == 409 and 'data-problem="used"' in again.text
    assert "used already" in again.text
    reused = client.post("/alerts/ack", data={"csrf_token": csrf_of(page.text), "t": token})
    assert reused.status_code == 409

    body, _dot, signature = token.partition(".")
    forged = client.get(f"/alerts/ack?t={body}.{signature[::-1]}")
    assert forged.status_code == 403 and "not issued by this gateway" in forged.text
    assert client.get("/alerts/ack?t=nonsense").status_code == 400
    assert client.get("/alerts/ack").status_code == 400

    old = desk.ack_token(view.alert_id, "gina", now=SITE_START - timedelta(minutes=61))
    expired = client.get(f"/alerts/ack?t={old}")
    assert expired.status_code == 410 and "expired" in expired.text


def test_a_link_to_a_resolved_alert_says_there_is_nothing_to_acknowledge(
    gateway: GatewayApp, client: TestClient
) -> None:
    desk = gateway.alerts
    assert desk is not None
    view, _ = gateway.service.call(lambda: desk.raise_alert(
        "missing:flood1", kind="trouble", severity="warning", title_zh="传感器离线",
        title_en="Sensor offline"))
    token = desk.ack_token(view.alert_id, "sam")
    gateway.service.call(lambda: desk.resolve(view.alert_id, "gateway", "back online"))
    page = client.get(f"/alerts/ack?t={token}")
    assert page.status_code == 200 and "nothing to acknowledge" in page.text
    assert 'id="ack-submit"' not in page.text
    form_token = csrf_of(client.get("/login").text)  # the same browser session's token
    answer = client.post("/alerts/ack", data={"csrf_token": form_token, "t": token})
    assert answer.status_code == 409 and 'data-problem="resolved"' in answer.text
