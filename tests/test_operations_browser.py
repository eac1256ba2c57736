"""The hold button, the handover page and the emergency numbers in a real browser: Debian's
headless Chromium against a live WebServer on a simulated site (real Mosquitto, the gateway
and lanes on mock pins, real SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.web import WebServer, WebSettings
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site
from tests.test_web_auth import add_people
from tests.test_web_browser import browser, eventually, log_in, log_out, text_of, web
from tests.test_web_pages import PLATE

pytestmark = pytest.mark.integration

__all__ = ["browser", "web"]  # the browser and live server fixtures, shared


def test_every_staff_page_shows_the_emergency_numbers_as_tap_to_call_links(
        browser: WebDriver, web: WebServer) -> None:
    log_in(browser, web, "gina")
    for path in ("/lanes", "/alerts", "/handover", "/holds"):
        browser.get(f"{web.url}{path}")
        links = browser.find_elements(By.CSS_SELECTOR, "#emergency a.call")
        assert [a.get_attribute("href") for a in links] == [
            "tel:119", "tel:110", "tel:120", "tel:122"], path
        assert "火警" in links[0].text and "Fire" in links[0].text


def test_a_guard_holds_a_plate_from_the_lane_page_and_lifts_it_with_a_reason(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    site.drive("in1", PLATE)
    site.settle()
    log_in(browser, web, "gina")
    browser.get(f"{web.url}/lanes")
    card = browser.find_element(By.ID, "lane-out1")
    card.find_element(By.CSS_SELECTOR, "details.hold summary").click()
    card.find_element(By.CSS_SELECTOR, ".hold-form input.plate-input").send_keys(PLATE)
    reason = card.find_element(By.CSS_SELECTOR, ".hold-form input.hold-reason")
    assert reason.get_attribute("required") is not None
    reason.send_keys("刮擦立柱 scraped a pillar")
    card.find_element(By.CSS_SELECTOR, "button.hold-button").click()
    eventually(lambda: "已扣留" in text_of(browser), "the hold to be confirmed")

    site.clock.advance(timedelta(hours=1))
    refused = site.drive("out1", PLATE)
    site.settle()
    assert (refused.opened, refused.reason) == (False, "plate_held")

    browser.get(f"{web.url}/holds")
    row = browser.find_element(By.CSS_SELECTOR, f"#holds-active tr.hold[data-plate='{PLATE}']")
    assert "guard:gina" in row.text and "刮擦立柱" in row.text
    row.find_element(By.CSS_SELECTOR, "input.reason").send_keys("已拍照 双方和解 settled")
    row.find_element(By.CSS_SELECTOR, "button.lift-button").click()
    eventually(lambda: "已解除扣留" in text_of(browser), "the lift to be confirmed")
    assert not browser.find_elements(By.CSS_SELECTOR, "#holds-active tr.hold")
    assert "已拍照" in browser.find_element(By.ID, "holds-lifted").text
    assert site.drive("out1", PLATE).opened


def test_the_outgoing_guard_hands_over_and_another_login_accepts_from_the_banner(
        browser: WebDriver, web: WebServer) -> None:
    log_in(browser, web, "gina")
    assert not browser.find_elements(By.ID, "handover-banner")
    browser.get(f"{web.url}/handover")
    browser.find_element(By.CSS_SELECTOR, "textarea.keys").send_keys(
        "岗亭钥匙 booth key\n道闸柜钥匙 barrier cabinet key")
    browser.find_element(By.CSS_SELECTOR, "input.cash").send_keys("200")
    browser.find_element(By.CSS_SELECTOR, "button.handover-button").click()
    eventually(lambda: "等待接班人确认" in text_of(browser), "the handover to be saved")
    waiting = browser.find_element(By.ID, "handover-waiting")
    assert "booth key" in waiting.text and "¥200.00" in waiting.text
    assert not waiting.find_elements(By.CSS_SELECTOR, "button.accept-button")  # not her own
    log_out(browser)

    log_in(browser, web, "sam")
    banner = browser.find_element(By.ID, "handover-banner")
    assert "guard:gina" in banner.text
    banner.find_element(By.CSS_SELECTOR, "a").click()
    eventually(lambda: browser.current_url.endswith("/handover"), "the handover page")
    browser.find_element(By.CSS_SELECTOR, "button.accept-button").click()
    eventually(lambda: "已接班 / Handover accepted" in text_of(browser), "the acceptance")
    assert not browser.find_elements(By.ID, "handover-banner")
    assert "supervisor:sam" in browser.find_element(By.ID, "handovers").text


def test_a_supervisor_records_a_call_back_on_a_complaint_and_can_hold_from_the_incident(
        browser: WebDriver, web: WebServer) -> None:
    log_in(browser, web, "sam")
    browser.get(f"{web.url}/incidents")
    form = browser.find_element(By.CSS_SELECTOR, "form[action='/incidents'].card")
    form.find_element(By.CSS_SELECTOR, "select[name=kind] option[value=complaint]").click()
    form.find_element(By.NAME, "description").send_keys("收费员态度差 rude at the booth")
    form.find_element(By.CSS_SELECTOR, "button").click()
    eventually(lambda: "已登记事件" in text_of(browser), "the complaint to be opened")
    card = browser.find_element(By.CSS_SELECTOR, "section.incident")
    assert "答复期限 Answer by" in card.text and "05-07" in card.text  # 24 h after 10:00
    card.find_element(By.NAME, "outcome").send_keys("已致歉 apologised")
    card.find_element(By.CSS_SELECTOR, "button.callback-button").click()
    eventually(lambda: "已记录回访" in text_of(browser), "the call-back to be recorded")
    card = browser.find_element(By.CSS_SELECTOR, "section.incident")
    assert "已回访 answered" in card.text and "supervisor:sam" in card.text

    card.find_element(By.CSS_SELECTOR, ".hold-form input.plate-input").send_keys(PLATE)
    card.find_element(By.CSS_SELECTOR, "button.hold-button").click()
    eventually(lambda: "已扣留" in text_of(browser), "the hold from the incident")
    browser.get(f"{web.url}/holds")
    assert "inc-" in browser.find_element(By.ID, "holds-active").text


@pytest.fixture
def rostered_web(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult,
                 browser: WebDriver) -> Iterator[tuple[SimulatedSite, WebServer]]:
    """The dashboard over a site with the shared roster (shifts a 08:00, b 16:00, c 00:00)."""
    with rostered_site(broker, tmp_path, test_site) as site:
        add_people(site.gateway)
        with WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings(live_poll_ms=200)) as server:
            browser.delete_all_cookies()
            yield site, server


def test_the_handover_due_banner_appears_at_the_shift_change_until_a_handover_is_started(
        browser: WebDriver, rostered_web: tuple[SimulatedSite, WebServer]) -> None:
    site, web = rostered_web
    shanghai = ZoneInfo("Asia/Shanghai")
    site.clock.set(datetime(2026, 5, 6, 15, 59, tzinfo=shanghai))
    log_in(browser, web, "gina")
    assert not browser.find_elements(By.ID, "handover-due-banner")

    site.clock.set(datetime(2026, 5, 6, 16, 0, tzinfo=shanghai))  # shift b starts
    browser.get(f"{web.url}/lanes")
    due = browser.find_element(By.ID, "handover-due-banner")
    assert "交接班时间" in due.text and "Handover due" in due.text
    assert "a → b" in due.text and "16:00" in due.text
    assert (due.get_attribute("data-from-shift"), due.get_attribute("data-to-shift")) == (
        "a", "b")
    due.find_element(By.CSS_SELECTOR, "a").click()
    eventually(lambda: browser.current_url.endswith("/handover"), "the handover page")
    browser.find_element(By.CSS_SELECTOR, "textarea.keys").send_keys("岗亭钥匙 booth key")
    browser.find_element(By.CSS_SELECTOR, "button.handover-button").click()
    eventually(lambda: "等待接班人确认" in text_of(browser), "the handover to be saved")
    assert not browser.find_elements(By.ID, "handover-due-banner")
    assert browser.find_elements(By.ID, "handover-banner")  # now waiting for shift b
