"""The patrol page in a real browser (Debian's headless Chromium, as tests/test_web_browser.py):
a supervisor finds it in the navigation, steps to the tapped day with the day picker and
reads each round's status, missed checkpoint, too-fast leg and cloned tag in site-local time,
on a 1366-pixel-wide screen without scrolling sideways. The gateway is built on a real SQLite
file with the example regime; the day's taps went through the patrol desk
(tests/patrol_day_data.py); no broker is needed for the page."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.web import WebServer, WebSettings
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.patrol_day_data import AFTER, DAY, EXAMPLE, tap_the_day
from tests.test_web_auth import add_people
from tests.test_web_browser import browser as browser  # the shared Chromium
from tests.test_web_browser import eventually, log_in, text_of

pytestmark = pytest.mark.integration


@pytest.fixture
def patrol_web(tmp_path: Path, browser: WebDriver) -> Iterator[WebServer]:
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1),
                           patrol_file=EXAMPLE)
    app = GatewayApp(config, clock=ManualClock(AFTER))  # just after the tapped day
    assert app.patrols is not None
    tap_the_day(app.patrols)
    add_people(app)
    server = WebServer(app, "127.0.0.1", 0, clock=ManualClock(AFTER), settings=WebSettings())
    try:
        with server:
            browser.delete_all_cookies()
            yield server
    finally:
        app.store.close()


def row_of(browser: WebDriver, subject: str, route: str) -> str:
    rows = browser.find_elements(
        By.CSS_SELECTOR, f'#patrol-rounds tr[data-subject="{subject}"][data-route="{route}"]')
    return "\n".join(str(r.text) for r in rows)


def test_a_supervisor_reads_the_days_rounds_on_the_patrol_page(
        browser: WebDriver, patrol_web: WebServer) -> None:
    browser.set_window_size(1366, 900)
    log_in(browser, patrol_web, "sam")
    browser.find_element(By.CSS_SELECTOR, '#nav a[data-nav="/patrols"]').click()
    eventually(lambda: "巡查" in browser.find_element(By.TAG_NAME, "h1").text,
               "the patrol page")
    today = str(DAY + timedelta(days=1))  # site-local: AFTER is just past midnight there
    assert today in browser.find_element(By.TAG_NAME, "h1").text

    # the day picker: the date field, then Show
    field = browser.find_element(By.ID, "day")
    browser.execute_script("arguments[0].value = arguments[1]", field, str(DAY))
    browser.find_element(By.CSS_SELECTOR, "#day-picker button[type=submit]").click()
    eventually(lambda: str(DAY) in browser.find_element(By.TAG_NAME, "h1").text,
               "the tapped day")

    zhao = row_of(browser, "zhao", "b1-loop")
    assert "01:00" in zhao and "01:12" in zhao and "完成 done" in zhao  # Shanghai time
    assert "标签异常 cloned" in zhao and "01:05" in zhao
    li = row_of(browser, "li", "b2-loop")
    assert "未完成 missed" in li and "3/4 · 75%" in li and "B2 east ramp 东坡道" in li
    wang = row_of(browser, "wang", "b1-loop")
    assert "逾时完成 late" in wang and "超时 late" in wang and "45" in wang
    chen = row_of(browser, "chen", "full")
    assert "过快 walked too fast: b1-pump→b2-west 10 s < 47 s" in chen
    floor = row_of(browser, "cleaner+guard+squad_leader", "booth-floor")
    assert "未巡查 not walked" in floor
    people = browser.find_element(By.ID, "patrol-people").text
    assert "王强" in people and "100%" in people and "李明" in people
    flags = browser.find_element(By.ID, "patrol-tag-flags").text
    assert "01:05:00" in flags and "cloned" in flags and "r3#3" in flags

    wide = browser.execute_script("return document.documentElement.scrollWidth")
    assert wide <= 1366, f"the page is {wide} px wide: it scrolls sideways at 1366"
    if shots := os.environ.get("PARKGUARD_SCREENSHOTS"):  # to look at it: a directory
        browser.save_screenshot(str(Path(shots) / "patrols.png"))
        browser.execute_script("document.getElementById('patrol-rounds').scrollIntoView()")
        browser.save_screenshot(str(Path(shots) / "patrols-rounds.png"))

    # the previous-day link steps back a day
    browser.find_element(By.ID, "previous-day").click()
    eventually(lambda: "2026-05-05" in browser.find_element(By.TAG_NAME, "h1").text,
               "the day before")
    assert browser.find_elements(By.CSS_SELECTOR, ".flag.cloned") == []
    assert "无 none" in browser.find_element(By.ID, "patrol-tag-flags").text
    assert "未巡查 not walked" in text_of(browser)  # nobody tapped that day
