"""The cleaner's page in a real browser (Debian's headless Chromium, as
tests/test_web_browser.py): a cleaner logs in, lands on her cleaning tasks of the day and
sees nothing else of the dashboard, ticks the booth floor done with its checklist, and a
manager then finds it counted in the daily report. The gateway is built on a real SQLite
file with the example regime and the example tariff's calendar; no broker is needed for
the page (the taps' own path is tests/test_cleaning.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.web import WebServer, WebSettings
from gateway.web.users import UserStore
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.test_web_auth import FAST_HASHER, PASSWORD
from tests.test_web_browser import browser as browser  # the shared Chromium
from tests.test_web_browser import eventually, log_in, log_out, text_of

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/patrols.toml"
NOW = datetime(2026, 10, 2, 2, 0, tzinfo=UTC)  # 10:00 on National Day in Shanghai


@pytest.fixture
def cleaning_web(tmp_path: Path, browser: WebDriver) -> Iterator[WebServer]:
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1),
                           patrol_file=EXAMPLE)
    clock = ManualClock(NOW)
    app = GatewayApp(config, clock=clock)

    def add() -> None:  # on the gateway's worker: it owns the connection
        store = UserStore(app.store.db, hasher=FAST_HASHER)
        store.add("ma", "cleaner", PASSWORD)
        store.add("max", "manager", PASSWORD)

    app.service.call(add)
    server = WebServer(app, "127.0.0.1", 0, clock=clock, settings=WebSettings())
    try:
        with server:
            browser.delete_all_cookies()
            yield server
    finally:
        app.store.close()


def task_row(browser: WebDriver, obligation: str) -> str:
    return str(browser.find_element(
        By.CSS_SELECTOR, f'#cleaning-tasks tr.task[data-obligation="{obligation}"]').text)


def test_a_cleaner_sees_only_her_tasks_and_ticks_the_booth_floor_done(
        browser: WebDriver, cleaning_web: WebServer) -> None:
    browser.set_window_size(1366, 900)
    log_in(browser, cleaning_web, "ma")
    eventually(lambda: browser.current_url.endswith("/cleaning"), "the cleaning page")
    assert "保洁任务 2026-10-02" in browser.find_element(By.TAG_NAME, "h1").text
    links = [a.get_attribute("data-nav") for a in
             browser.find_elements(By.CSS_SELECTOR, "#nav a[data-nav]")]
    assert links == ["/cleaning"]
    calls = [a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, "#emergency a.call")]
    assert calls[:1] == ["tel:119"]  # a cleaner who finds a fire calls 119 first
    rows = browser.find_elements(By.CSS_SELECTOR, "#cleaning-tasks tr.task")
    assert {r.get_attribute("data-obligation") for r in rows} == {
        "lenses-signs", "booth-floor", "booth-walls", "booth-exterior", "barrier-cleaning"}
    assert "未到期 pending" in task_row(browser, "booth-floor")
    assert "马阿姨" in text_of(browser)

    form = browser.find_element(By.CSS_SELECTOR, 'form.tick-form[data-obligation="booth-floor"]')
    Select(form.find_element(By.NAME, "item_floor_clean")).select_by_value("ok")
    form.find_element(By.NAME, "note").send_keys("拖地 mopped")
    form.find_element(By.CSS_SELECTOR, "button.tick-button").click()
    eventually(lambda: "已完成" in text_of(browser), "the tick to be taken")
    floor = task_row(browser, "booth-floor")
    assert "达标 met" in floor and "0 / 1" in floor and "ma" in floor
    assert not browser.find_elements(By.CSS_SELECTOR,
                                     'form.tick-form[data-obligation="booth-floor"]')
    assert "完成 1 / 应完成 1" in browser.find_element(By.ID, "cleaning-compliance").text
    scroll = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= 1366  # no sideways scrolling on the control-room screen
    browser.set_window_size(412, 900)  # a cleaner's phone: each task a card, still no
    browser.refresh()                   # sideways scrolling, the Done button in reach
    eventually(lambda: "保洁任务" in text_of(browser), "the page on a phone")
    width = browser.execute_script("return window.innerWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    button = browser.find_element(
        By.CSS_SELECTOR, 'form.tick-form[data-obligation="barrier-cleaning"] .tick-button')
    assert button.is_displayed() and button.rect["x"] + button.rect["width"] <= width
    browser.set_window_size(1366, 900)

    browser.get(f"{cleaning_web.url}/lanes")  # nothing else of the dashboard
    eventually(lambda: bool(browser.find_elements(By.ID, "forbidden")),
               "the lanes page refused")

    browser.get(f"{cleaning_web.url}/cleaning")
    log_out(browser)
    log_in(browser, cleaning_web, "max")
    browser.get(f"{cleaning_web.url}/reports?day=2026-10-02")
    eventually(lambda: "值勤与保洁" in text_of(browser), "the report's duties")
    assert "节假日 holiday" in text_of(browser)
    assert "保洁完成 1 / 应完成 1" in browser.find_element(By.ID, "cleaning-compliance").text
    assert "排班满足要求" in browser.find_element(By.ID, "short-rosters").text
