"""The handover page's gathered open items and the daily report's handover and complaint
sections, in Debian's headless Chromium against a live WebServer on a simulated site (real
Mosquitto, the gateway and lanes on mock pins, real SQLite, a manual clock).

The open items are made the way they happen: an accident opened by a guard (which alerts),
a lane gone off the bus (its Last Will through the broker: a fault alert), a plate held at
the exit. The outgoing guard hands over on /handover, a supervisor accepts, and the
manager's /reports shows it in ``#handovers``; complaints answered in time, late and not at
all are tallied in ``#complaints`` on the day they were due."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.safety.incidents import IncidentKind
from gateway.web import WebServer, WebSettings
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site
from tests.test_web_auth import add_people
from tests.test_web_browser import browser, eventually, log_in, log_out, text_of, web
from tests.test_web_pages import PLATE

pytestmark = pytest.mark.integration

__all__ = ["browser", "web"]  # the shared Chromium and the live server on the plain site

Rostered = tuple[WebServer, SimulatedSite]


@pytest.fixture
def rostered(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
             browser: WebDriver) -> Iterator[Rostered]:
    """The site fixture's lanes with the site-operations roster (so lane faults alert)."""
    with rostered_site(broker, tmp_path, test_site) as site:
        add_people(site.gateway)
        with WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings()) as server:
            browser.delete_all_cookies()
            yield server, site


def rows(site: SimulatedSite, sql: str, *args: object) -> list[dict[str, object]]:
    with site.gateway.store.reader() as db:
        return [dict(r) for r in db.query(sql, list(args))]


def on_worker(site: SimulatedSite, work):  # type: ignore[no-untyped-def]
    return site.gateway.service.call(work)


def report_row(browser: WebDriver, table: str) -> list[str]:
    return [r.text for r in browser.find_elements(By.CSS_SELECTOR, f"#{table} tr")[1:]]


def test_the_handover_page_gathers_open_items_and_the_report_lists_the_handover(
        browser: WebDriver, rostered: Rostered) -> None:
    server, site = rostered
    assert site.drive("in1", PLATE).opened
    site.settle()
    accident = on_worker(site, lambda: site.gateway.incidents.open(
        "accident", description="刮擦立柱 scraped a pillar B2-031", reported_by="guard:gina",
        plates=[PLATE]))
    on_worker(site, lambda: site.gateway.holds.hold(
        PLATE, reason="事故待处理 accident pending", actor="guard:gina",
        incident_id=accident.incident_id))
    site.lanes["out1"].node.stop()  # its Last Will: out1 offline, a fault for maintenance
    alerts = site.gateway.alerts
    assert alerts is not None
    eventually(lambda: on_worker(site, lambda: alerts.open_alert("offline:out1")) is not None,
               "out1's offline alert")
    offline = on_worker(site, lambda: alerts.open_alert("offline:out1"))
    accident_alert = next(a for a in on_worker(site, alerts.active) if a.kind == "accident")

    log_in(browser, server, "gina")
    browser.get(f"{server.url}/handover")
    listed = browser.find_element(By.CSS_SELECTOR, "ul.open-items")
    kinds = [li.get_attribute("class") or "" for li in listed.find_elements(By.TAG_NAME, "li")]
    assert sorted(kinds) == sorted(["item kind-incident", "item kind-alarm", "item kind-fault",
                                    "item kind-hold"])
    assert "scraped a pillar" in listed.find_element(By.CSS_SELECTOR, ".kind-incident").text
    assert "out1" in listed.find_element(By.CSS_SELECTOR, ".kind-fault").text
    assert "故障 fault" in listed.find_element(By.CSS_SELECTOR, ".kind-fault").text
    assert PLATE in listed.find_element(By.CSS_SELECTOR, ".kind-hold").text
    browser.find_element(By.CSS_SELECTOR, "textarea.keys").send_keys("岗亭钥匙 booth key")
    browser.find_element(By.CSS_SELECTOR, "input.cash").send_keys("150.50")
    browser.find_element(By.CSS_SELECTOR, "button.handover-button").click()
    eventually(lambda: "等待接班人确认" in text_of(browser), "the handover to be saved")
    [handover] = rows(site, "SELECT * FROM handovers")
    items = {(r["kind"], r["ref"]) for r in rows(
        site, "SELECT kind, ref FROM handover_items WHERE handover_id = ?",
        handover["handover_id"])}
    assert items == {("incident", accident.incident_id), ("alarm", accident_alert.alert_id),
                     ("fault", offline.alert_id), ("hold", PLATE), ("key", None),
                     ("cash", None)}
    [cash] = rows(site, "SELECT amount_fen FROM handover_items WHERE kind = 'cash'")
    assert cash["amount_fen"] == 15050
    log_out(browser)

    site.clock.advance(timedelta(minutes=7))
    log_in(browser, server, "sam")
    browser.get(f"{server.url}/handover")
    browser.find_element(By.CSS_SELECTOR, "button.accept-button").click()
    eventually(lambda: "已接班 / Handover accepted" in text_of(browser), "the acceptance")
    audit = rows(site, "SELECT actor, action FROM audit_log WHERE subject = ? ORDER BY seq",
                 f"handover:{handover['handover_id']}")
    assert [(a["actor"], a["action"]) for a in audit] == [
        ("guard:gina", "handover.start"), ("supervisor:sam", "handover.accept")]
    log_out(browser)

    log_in(browser, server, "max")  # the manager's daily report
    browser.get(f"{server.url}/reports?day=2026-05-06")
    [row] = report_row(browser, "handovers")
    assert "10:00" in row and "guard:gina" in row and "supervisor:sam 10:07" in row
    assert "已接班 accepted" in row and "¥150.50" in row
    for words in ("事件 incident 1", "告警 alarm 1", "故障 fault 1", "扣留车辆 held plate 1",
                  "钥匙 key 1", "现金 cash 1"):
        assert words in row, words
    browser.get(f"{server.url}/reports?day=2026-05-05")  # the day before: none
    assert report_row(browser, "handovers") == ["无 none"]


def test_the_report_tallies_complaints_answered_in_time_late_and_not_at_all(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    incidents, complaints = site.gateway.incidents, site.gateway.complaints

    def opened(kind: IncidentKind, what: str) -> str:
        return str(on_worker(site, lambda: incidents.open(
            kind, description=what, reported_by="guard:gina")).incident_id)

    rude = opened("complaint", "收费员态度差 rude at the booth")  # 6 May 10:00, due 7 May 10:00
    dispute = opened("fee_dispute", "多收 5 元 charged 5 yuan too much")
    ignored = opened("complaint", "灯不亮 lights out on B2")
    opened("accident", "倒车碰撞 reversing bump")  # no answer-by time
    site.clock.advance(timedelta(minutes=30))
    on_worker(site, lambda: complaints.callback(rude, by="supervisor:sam",
                                                outcome="已致歉 apologised"))
    site.clock.advance(timedelta(hours=24, minutes=30))  # 7 May 11:00: past both due times
    on_worker(site, lambda: complaints.callback(dispute, by="supervisor:sam",
                                                outcome="已退款 refunded"))
    on_worker(site, lambda: incidents.close(dispute, outcome="退款 5 元 refunded",
                                            actor="supervisor:sam"))
    deadlines = {r["incident_id"]: r for r in rows(site, "SELECT * FROM incident_deadlines")}
    assert set(deadlines) == {rude, dispute, ignored}
    assert deadlines[ignored]["answered_at"] is None

    log_in(browser, web, "max")
    browser.get(f"{web.url}/reports?day=2026-05-06")  # the day they were opened
    tally = browser.find_element(By.ID, "complaints")
    facts = dict(zip([dt.text for dt in tally.find_elements(By.TAG_NAME, "dt")],
                     [dd.text for dd in tally.find_elements(By.TAG_NAME, "dd")], strict=True))
    assert facts == {"新增 Opened · 事故 accident": "1", "新增 Opened · 投诉 complaint": "2",
                     "新增 Opened · 收费争议 fee dispute": "1",
                     "按时回复 Answered in time": "0", "超时回复 Answered late": "0",
                     "超时未回复 Not answered in time": "0", "结案 Closed": "0"}
    browser.get(f"{web.url}/reports?day=2026-05-07")  # the day they were due
    tally = browser.find_element(By.ID, "complaints")
    facts = dict(zip([dt.text for dt in tally.find_elements(By.TAG_NAME, "dt")],
                     [dd.text for dd in tally.find_elements(By.TAG_NAME, "dd")], strict=True))
    assert facts == {"按时回复 Answered in time": "1", "超时回复 Answered late": "1",
                     "超时未回复 Not answered in time": "1", "结案 Closed": "1"}
