"""Dashboard pages and JSON API: what each role may open, and the office actions behind them
(manual open, fee override, coupons, the pay page), on a real simulated site."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.provision.generate import ProvisionResult
from gateway.lanes.commands import LaneCommander
from gateway.web import WebSettings, create_web_app
from gateway.web.access import PERMISSIONS
from gateway.web.forms import parse_yuan
from parkguard.core.privacy import mask_phone, mask_phones_in, mask_plate
from simulator.site import SimulatedSite
from tests.test_web_auth import PEOPLE, add_people, csrf_of, login, unstarted_gateway

PLATE = "粤B12345"

#: page → the roles that may open it (everyone else gets 403).
PAGES: dict[str, set[str]] = {
    "/lanes": {"guard", "supervisor", "manager"},
    "/alerts": {"guard", "supervisor", "manager"},
    "/plans": {"guard", "supervisor", "manager"},
    "/contacts": {"guard", "supervisor", "manager"},
    "/api/alerts": {"guard", "supervisor", "manager"},
    "/sessions": {"guard", "supervisor", "manager"},
    "/api/lanes": {"guard", "supervisor", "manager"},
    "/api/sessions?q=B123": {"guard", "supervisor", "manager"},
    "/audit": {"supervisor", "manager"},
    "/api/audit": {"supervisor", "manager"},
    "/incidents": {"supervisor", "manager"},
    "/patrols": {"supervisor", "manager"},
    "/cleaning": {"supervisor", "manager"},  # and cleaners: tests/test_cleaning_browser.py
    "/reports": {"manager"},
    "/reports/2026-05-06/summary.csv": {"manager"},
    "/reports/2026-05-06/sessions.csv": {"manager"},
    "/admin/merchants": {"manager"},
    "/admin/passes": {"manager"},
    "/admin/refunds": {"manager"},
    "/merchant": {"merchant"},
    "/merchant/statement?month=2026-05": {"merchant"},
    "/api/merchant": {"merchant"},
}
NAV_LINKS = {"/lanes": "lanes", "/alerts": "lanes", "/incidents/report": "report",
             "/handover": "lanes",
             "/plans": "lanes", "/contacts": "lanes",
             "/sessions": "sessions", "/audit": "audit",
             "/incidents": "incidents", "/patrols": "patrols", "/cleaning": "cleaning",
             "/reports": "reports",
             "/admin/merchants": "admin",
             "/admin/passes": "admin", "/admin/refunds": "admin", "/merchant": "merchant"}


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[TestClient]:
    with unstarted_gateway(tmp_path) as gateway:
        web = create_web_app(gateway, settings=WebSettings())
        add_people(gateway)
        with TestClient(web) as client:
            yield client


@pytest.mark.parametrize("name", sorted(PEOPLE))
def test_each_role_opens_only_its_pages_and_sees_only_their_links(offline: TestClient,
                                                                  name: str) -> None:
    role = PEOPLE[name][0]
    assert login(offline, name) == 303
    for page, allowed in PAGES.items():
        status = offline.get(page, follow_redirects=False).status_code
        assert status == (200 if role in allowed else 403), (role, page, status)
    home = offline.get("/", follow_redirects=True).text
    nav = re.search(r'<nav id="nav">(.*?)</nav>', home, re.S)
    assert nav is not None
    shown = set(re.findall(r'data-nav="([^"]+)"', nav.group(1)))
    assert shown == {path for path, perm in NAV_LINKS.items() if role in PERMISSIONS[perm]}


def test_nobody_logged_in_is_sent_to_the_login_page(offline: TestClient) -> None:
    for page in PAGES:
        answer = offline.get(page, follow_redirects=False)
        if page.startswith("/api/"):
            assert answer.status_code == 401
        else:
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login")
    assert offline.get("/pay").status_code == 200  # drivers need no account


def test_pages_carry_security_headers_and_no_cdn(offline: TestClient) -> None:
    page = offline.get("/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "https://" not in page.text and "//cdn" not in page.text
    assert offline.get("/static/app.css").status_code == 200
    assert offline.get("/static/live.js").status_code == 200


def test_masking_and_money_parsing() -> None:
    assert mask_plate("粤B12345") == "粤B1***5"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phones_in("driver 13812345678 called") == "driver 138****5678 called"
    assert parse_yuan("12.5") == 1250 and parse_yuan("¥0") == 0
    for bad in ("-1", "1.234", "abc"):
        with pytest.raises(ValueError):
            parse_yuan(bad)


# --- on a running simulated site ------------------------------------------------------------


def commander_for(site: SimulatedSite, test_site: ProvisionResult) -> LaneCommander:
    app = site.gateway
    if not app.commander.lanes:
        app.commander = LaneCommander(app.bus, app.config.site,
                                      test_site.device("gateway").lane_keys, site.clock,
                                      app.audit)
    return app.commander


@pytest.fixture
def live(site: SimulatedSite, test_site: ProvisionResult) -> Iterator[TestClient]:
    commander_for(site, test_site)
    web = create_web_app(site.gateway, settings=WebSettings(), clock=site.clock)
    add_people(site.gateway)
    with TestClient(web) as client:
        yield client


def park(site: SimulatedSite, plate: str = PLATE, hours: float = 2) -> None:
    passage = site.drive("in1", plate)
    assert passage.opened
    site.settle()
    site.clock.advance(timedelta(hours=hours))


@pytest.mark.integration
def test_a_guard_opens_a_lane_with_a_reason_and_the_audit_log_shows_it(
        site: SimulatedSite, live: TestClient) -> None:
    assert login(live, "gina") == 303
    page = live.get("/lanes").text
    refused = live.post("/lanes/out1/open", data={"reason": "", "csrf_token": csrf_of(page)})
    assert "reason is required" in live.get("/lanes").text or refused.status_code == 200
    live.post("/lanes/out1/open", data={"reason": "help button: ticket jammed",
                                        "csrf_token": csrf_of(page)})
    entries = [e for e in site.gateway.audit.entries() if e.action == "lane.open"]
    assert [(e.actor, e.subject, e.reason) for e in entries] == [
        ("guard:gina", "lane:out1", "help button: ticket jammed")]
    assert live.get("/audit").status_code == 403  # guards do not read the audit log
    live.post("/logout", data={"csrf_token": csrf_of(live.get("/lanes").text)})
    assert login(live, "sam") == 303
    audit = live.get("/audit?action=lane.open").text
    assert "help button: ticket jammed" in audit and "guard:gina" in audit


@pytest.mark.integration
def test_lanes_page_and_api_show_state_and_last_reads(site: SimulatedSite,
                                                      live: TestClient) -> None:
    park(site)
    assert login(live, "gina") == 303
    lanes = live.get("/api/lanes").json()["lanes"]
    in1 = next(lane for lane in lanes if lane["lane"] == "in1")
    assert in1["reads"][0]["plate"] == PLATE
    assert in1["online"] is True and in1["direction"] == "entry"
    svg = live.get(f"/lanes/reads/{in1['reads'][0]['event_id']}.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and PLATE in svg.text
    assert PLATE in live.get("/lanes").text


@pytest.mark.integration
def test_fuzzy_search_finds_the_car_from_a_dirty_read(site: SimulatedSite,
                                                      live: TestClient) -> None:
    park(site)
    assert login(live, "gina") == 303
    found = live.get("/api/sessions", params={"q": "粤B1234S"}).json()
    assert found["candidates"][0]["plate"] == PLATE and found["candidates"][0]["inside"]
    history = live.get("/api/sessions", params={"plate": PLATE}).json()["history"]
    assert [row["state"] for row in history] == ["open"]
    assert live.get("/api/bill", params={"plate": PLATE}).json()["due_fen"] > 0


@pytest.mark.integration
def test_a_supervisor_overrides_a_fee_with_a_reason(site: SimulatedSite,
                                                    live: TestClient) -> None:
    park(site)
    assert login(live, "sam") == 303
    session_id = live.get("/api/bill", params={"plate": PLATE}).json()["session_id"]
    page = live.get(f"/sessions/{session_id}").text
    live.post(f"/sessions/{session_id}/override",
              data={"fee": "1.00", "reason": "", "csrf_token": csrf_of(page)})
    assert live.get("/api/bill", params={"plate": PLATE}).json()["fee_fen"] != 100
    live.post(f"/sessions/{session_id}/override",
              data={"fee": "1.00", "reason": "barrier fault, agreed", "csrf_token": csrf_of(page)})
    assert live.get("/api/bill", params={"plate": PLATE}).json()["fee_fen"] == 100
    assert [e.reason for e in site.gateway.audit.entries() if e.action == "fee.override"] == [
        "barrier fault, agreed"]
    assert site.drive("out1", PLATE).fee_fen == 100


@pytest.mark.integration
def test_driver_prepays_on_the_pay_page_and_leaves_without_paying_again(
        site: SimulatedSite, live: TestClient) -> None:
    park(site)
    page = live.get("/pay", params={"plate": PLATE})
    assert 'id="bill-due"' in page.text and 'id="pay-button"' in page.text
    assert "入场 Entered" not in page.text  # a typed plate: what is due, not since when
    wallet = live.post("/pay", data={"plate": PLATE, "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)
    assert wallet.headers["location"].startswith("/sim-pay/sim-")
    wallet_page = live.get(wallet.headers["location"]).text
    done = live.post(wallet.headers["location"], data={"csrf_token": csrf_of(wallet_page)})
    assert "请于" in done.text and "前离场" in done.text and "leave by" in done.text
    passage = site.drive("out1", PLATE)
    assert (passage.opened, passage.reason, passage.fee_fen) == (True, "prepaid", 0)


@pytest.mark.integration
def test_forged_payment_callbacks_are_refused(site: SimulatedSite, live: TestClient) -> None:
    answer = live.post("/api/payments/callback", content=b'{"order_id":"x"}',
                       headers={"X-Signature": "0" * 64})
    assert answer.status_code == 400


@pytest.mark.integration
def test_a_merchant_coupon_shows_on_the_drivers_quote(site: SimulatedSite,
                                                      live: TestClient) -> None:
    park(site)
    before = live.get("/api/bill", params={"plate": PLATE})  # not logged in: refused
    assert before.status_code == 401
    assert login(live, "mia") == 303
    page = live.get("/merchant").text
    live.post("/merchant/coupons", data={"plate": PLATE, "kind": "amount_off", "amount": "3",
                                         "csrf_token": csrf_of(page)})
    page = live.get("/merchant").text
    assert "粤B1***5" in page and PLATE not in page  # the merchant sees the plate masked
    assert live.get("/sessions").status_code == 403
    pay = live.get("/pay", params={"plate": PLATE}).text
    assert "-¥3.00" in pay
    statement = live.get("/merchant/statement?month=2026-05")
    assert statement.status_code == 200


@pytest.mark.integration
def test_a_supervisor_opens_notes_and_closes_an_incident(site: SimulatedSite,
                                                         live: TestClient) -> None:
    park(site)
    assert login(live, "sam") == 303
    page = live.get("/incidents").text
    live.post("/incidents", data={"kind": "fee_dispute", "description": "driver disputes fee",
                                  "lane": "in1", "contact_phone": "13812345678",
                                  "csrf_token": csrf_of(page)})
    page = live.get("/incidents").text
    assert "driver disputes fee" in page and "13812345678" not in page
    incident_id = re.findall(r'id="(inc-[0-9a-f]+)"', page)[0]
    live.post(f"/incidents/{incident_id}/note", data={"text": "called back",
                                                      "csrf_token": csrf_of(page)})
    live.post(f"/incidents/{incident_id}/close", data={"text": "explained the tariff",
                                                       "csrf_token": csrf_of(page)})
    closed = live.get("/incidents?state=closed").text
    assert "called back" in closed and "explained the tariff" in closed


@pytest.mark.integration
def test_a_manager_runs_the_office(site: SimulatedSite, live: TestClient) -> None:
    park(site)
    assert login(live, "max") == 303
    page = live.get("/admin/merchants").text
    live.post("/admin/merchants", data={"merchant_id": "m-cafe", "name": "Cafe",
                                        "overdraft": "0", "reason": "new tenant",
                                        "csrf_token": csrf_of(page)})
    live.post("/admin/merchants/m-cafe/top-up", data={"amount": "100", "reason": "first deposit",
                                                      "csrf_token": csrf_of(page)})
    assert "¥100.00" in live.get("/admin/merchants").text
    page = live.get("/admin/passes").text
    live.post("/admin/passes", data={"kind": "monthly", "plates": "粤B99999",
                                     "holder": "Li", "phone": "13912345678", "days": "30",
                                     "reason": "sold at the desk", "csrf_token": csrf_of(page)})
    live.post("/admin/lists", data={"list_name": "whitelist", "plate": "粤B88888",
                                    "reason": "landlord car", "csrf_token": csrf_of(page)})
    passes = live.get("/admin/passes").text
    assert "粤B99999" in passes and "139****5678" in passes and "13912345678" not in passes
    assert "粤B88888" in passes
    report = live.get("/reports?day=2026-05-06")
    assert report.status_code == 200 and "<svg" in report.text
    csv = live.get("/reports/2026-05-06/sessions.csv")
    assert csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv.headers["content-disposition"]
    actions = {e.action for e in site.gateway.audit.entries()}
    assert {"merchant.open", "merchant.top_up", "pass.issue"} <= actions
