"""The fire plan's pages in Debian's headless Chromium, on the simulated site of
tests/test_site_plans.py (real Mosquitto, the gateway on a real SQLite file, lanes on mock
pins, texts through Apprise to the local SMS peer): a supervisor starts a drill on /plans,
a guard acknowledges her team's alert on /alerts, the supervisor ends it and the drill
report says who acknowledged when; the equipment register's tick; the guard's "your car
needs attention" form on /contacts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.plans.drills import DRILL_DISPLAY, DRILL_OVER_DISPLAY
from gateway.records.audit import verify
from gateway.web import WebServer
from simulator.site import SimulatedSite
from tests.sms_peer import SmsEagle
from tests.test_site_plans import DIGITS, PHONE, PLATE, on_worker, park, register_of, texts
from tests.test_site_plans_browser import browser, web
from tests.test_web_browser import eventually, log_in, log_out, text_of

pytestmark = pytest.mark.integration

__all__ = ["browser", "web"]  # the shared Chromium and the live server

Web = tuple[WebServer, SimulatedSite]


def rows(site: SimulatedSite, sql: str, *args: object) -> list[dict[str, object]]:
    with site.gateway.store.reader() as db:
        return [dict(r) for r in db.query(sql, list(args))]


def shows(site: SimulatedSite, lane: str, text: tuple[str, str]) -> bool:
    shown = site.lanes[lane].node.controller.display
    return shown is not None and (shown.zh, shown.en) == text


def test_a_drill_started_and_ended_on_the_page_reports_who_acknowledged_when(
        browser: WebDriver, web: Web) -> None:
    server, site = web
    log_in(browser, server, "gina")  # a guard may not start a drill
    browser.get(f"{server.url}/plans")
    assert not browser.find_elements(By.ID, "drill-start")
    log_out(browser)

    log_in(browser, server, "sam")
    browser.get(f"{server.url}/plans")
    form = browser.find_element(By.CSS_SELECTOR, "#drills form[action='/plans/drills']")
    form.find_element(By.NAME, "note").send_keys("突击演习 B2 东 surprise drill B2 east")
    browser.find_element(By.ID, "drill-start").click()
    eventually(lambda: "演习已登记" in text_of(browser), "the drill to be started")
    [drill] = rows(site, "SELECT * FROM drills")
    drill_id = str(drill["drill_id"])
    assert (drill["state"], drill["kind"], drill["started_by"]) == (
        "running", "unscheduled", "supervisor:sam")
    row = browser.find_element(By.ID, drill_id)
    assert "进行中 running" in row.text and "突击演习 unscheduled" in row.text
    eventually(lambda: shows(site, "in1", DRILL_DISPLAY), "the drill on the lane display")
    alerts = rows(site, "SELECT key, alert_id, kind, state FROM alerts ORDER BY id")
    assert {a["key"] for a in alerts} == {f"drill:{drill_id}", f"drill:{drill_id}:fire_fighting",
                                          f"drill:{drill_id}:evacuation",
                                          f"drill:{drill_id}:cordon"}
    assert {a["kind"] for a in alerts} == {"drill"}
    evacuation = next(str(a["alert_id"]) for a in alerts
                      if a["key"] == f"drill:{drill_id}:evacuation")
    log_out(browser)

    site.clock.advance(timedelta(seconds=95))  # the guard acknowledges her team's task
    log_in(browser, server, "gina")
    browser.get(f"{server.url}/alerts")
    alert_row = browser.find_element(By.CSS_SELECTOR, f"tr[data-alert='{evacuation}']")
    assert "演习 DRILL" in alert_row.text and "疏散引导组" in alert_row.text
    alert_row.find_element(By.CSS_SELECTOR, "button").click()
    eventually(lambda: "已确认" in text_of(browser), "the acknowledgement")
    log_out(browser)

    site.clock.advance(timedelta(seconds=40))
    log_in(browser, server, "sam")
    browser.get(f"{server.url}/plans")
    browser.find_element(By.CSS_SELECTOR, f"tr[id='{drill_id}'] button").click()
    eventually(lambda: "演习结束" in text_of(browser), "the drill to be ended")
    assert "已结束 over" in browser.find_element(By.ID, drill_id).text
    assert not browser.find_elements(By.CSS_SELECTOR, f"tr[id='{drill_id}'] button")
    heading = browser.find_element(By.ID, f"report-{drill_id}")
    assert "evacuation team acknowledged in 95 s" in heading.text
    table = heading.find_element(By.XPATH, "following-sibling::table[1]")
    by_team = {r.find_elements(By.TAG_NAME, "td")[0].text: r.text
               for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")}
    assert set(by_team) == {"全员 Everyone on duty", "灭火组 Fire-fighting team",
                            "疏散引导组 Evacuation team", "警戒组 Cordon team"}
    evac = by_team["疏散引导组 Evacuation team"]
    assert "guard:gina" in evac and "10:01:35" in evac and "95 s" in evac
    assert "gina, evan" in evac  # whom the alert reached
    assert "未确认 not yet" in by_team["警戒组 Cordon team"]

    [over] = rows(site, "SELECT * FROM drills")
    assert (over["state"], over["ended_by"]) == ("over", "supervisor:sam")
    assert {a["state"] for a in rows(site, "SELECT state FROM alerts")} == {"resolved"}
    audit = rows(site, "SELECT actor, action, reason FROM audit_log WHERE subject = ?",
                 f"drill:{drill_id}")
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("supervisor:sam", "drill.start"), ("supervisor:sam", "drill.end")]
    assert audit[0]["reason"] == "突击演习 B2 东 surprise drill B2 east"
    eventually(lambda: shows(site, "in1", DRILL_OVER_DISPLAY), "the drill's end on the lane")
    assert verify(site.gateway.store.db).ok


def test_the_equipment_register_is_ticked_on_the_page_and_a_fault_needs_a_note(
        browser: WebDriver, web: Web) -> None:
    server, site = web
    log_in(browser, server, "gina")
    browser.get(f"{server.url}/plans")
    counts = browser.find_element(By.ID, "equipment-counts")
    assert "Extinguishers 0/72" in counts.text and "Hydrants 0/36" in counts.text
    browser.find_element(By.CSS_SELECTOR, "#equipment details summary").click()

    def check(item: str, result: str, note: str = "") -> None:
        row = browser.find_element(By.ID, f"eq-{item}")
        row.find_element(By.CSS_SELECTOR, f"select[name=result] option[value={result}]").click()
        if note:
            row.find_element(By.NAME, "note").send_keys(note)
        row.find_element(By.TAG_NAME, "button").click()

    check("hyd-07", "fault")  # a fault without saying what: refused, nothing stored
    eventually(lambda: "say what is wrong" in text_of(browser), "the refusal")
    assert rows(site, "SELECT * FROM equipment_checks") == []
    browser.find_element(By.CSS_SELECTOR, "#equipment details summary").click()
    check("hyd-07", "fault", "水带卷盘缺失 hose reel missing")
    eventually(lambda: "已检查" in text_of(browser), "the fault to be recorded")
    browser.find_element(By.CSS_SELECTOR, "#equipment details summary").click()
    check("ext-05", "ok")
    eventually(lambda: "Extinguishers 1/72" in browser.find_element(
        By.ID, "equipment-counts").text, "the count to go up")
    counts_text = browser.find_element(By.ID, "equipment-counts").text
    assert "Hydrants 1/36" in counts_text and "faults: hyd-07" in counts_text
    browser.find_element(By.CSS_SELECTOR, "#equipment details summary").click()
    ext = browser.find_element(By.ID, "eq-ext-05").text
    assert "guard:gina" in ext and "页面 page" in ext and "ok" in ext

    stored = rows(site, "SELECT item, month, checked_by, via, result, note "
                        "FROM equipment_checks ORDER BY id")
    assert stored == [
        {"item": "hyd-07", "month": "2026-05", "checked_by": "guard:gina", "via": "page",
         "result": "fault", "note": "水带卷盘缺失 hose reel missing"},
        {"item": "ext-05", "month": "2026-05", "checked_by": "guard:gina", "via": "page",
         "result": "ok", "note": ""}]
    [fault] = rows(site, "SELECT actor, reason FROM audit_log WHERE action = 'equipment.fault' "
                         "AND subject = 'equipment:hyd-07'")
    assert fault == {"actor": "guard:gina", "reason": "水带卷盘缺失 hose reel missing"}
    [alert] = rows(site, "SELECT key, team, state FROM alerts")
    assert (alert["key"], alert["team"]) == ("equipment-fault:hyd-07", "facilities")
    assert alert["state"] != "resolved"


def test_a_guard_tells_an_owner_their_car_needs_attention_from_the_contacts_page(
        browser: WebDriver, web: Web, eagle: SmsEagle) -> None:
    server, site = web
    register = register_of(site)
    park(site)
    on_worker(site, lambda: register.consent(PHONE, plate=PLATE, source="pay_page",
                                             wording_version="v1"))
    log_in(browser, server, "gina")
    browser.get(f"{server.url}/contacts")
    browser.find_element(By.ID, "tell-plate").send_keys("粤B99999")  # not inside: refused
    browser.find_element(By.CSS_SELECTOR, "#tell-concern option[value=leaking]").click()
    browser.find_element(By.ID, "tell-send").click()
    eventually(lambda: "not inside" in text_of(browser), "the refusal")
    assert rows(site, "SELECT * FROM contact_messages") == []

    browser.find_element(By.ID, "tell-plate").send_keys(PLATE)
    browser.find_element(By.CSS_SELECTOR, "#tell-concern option[value=leaking]").click()
    browser.find_element(By.CSS_SELECTOR, "#tell-owner input[name=note]").send_keys("B2-031")
    browser.find_element(By.ID, "tell-send").click()
    eventually(lambda: "已通知车主 1 条" in text_of(browser), "the text to be sent")
    assert DIGITS not in text_of(browser)
    [sms] = texts(eagle, 1)
    assert sms["to"] == f"+86{DIGITS}"
    assert "漏油" in sms["message"] and PLATE in sms["message"] and "B2-031" in sms["message"]
    eventually(lambda: [m["status"] for m in rows(site, "SELECT status FROM contact_messages")]
               == ["sent"], "the text recorded as sent")
    [message] = rows(site, "SELECT * FROM contact_messages")
    assert message["target"] == "139****5678" and DIGITS not in str(message)
    [audited] = rows(site, "SELECT actor, subject FROM audit_log "
                           "WHERE action = 'contact.message'")
    assert audited == {"actor": "guard:gina", "subject": f"plate:{PLATE}"}
