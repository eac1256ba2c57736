"""The dashboard and the pay page in a real browser: Debian's headless Chromium driven by
Selenium, against a live WebServer on top of a simulated site (real Mosquitto, gateway and
lanes on mock pins).

Chromium and its driver are system packages that ``make test`` installs; without them
these tests fail (they are never skipped), saying so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from gateway.web import WebServer, WebSettings
from simulator.site import SimulatedSite
from tests.test_web_auth import PASSWORD, PEOPLE, add_people
from tests.test_web_pages import PLATE, commander_for

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: The links each role's navigation shows, and one page it must be refused.
SEES: dict[str, tuple[set[str], str]] = {
    "guard": ({"/lanes", "/alerts", "/incidents/report", "/handover", "/plans", "/contacts",
               "/sessions"}, "/audit"),
    "supervisor": ({"/lanes", "/alerts", "/incidents/report", "/handover", "/plans",
                    "/contacts", "/sessions",
                    "/audit", "/incidents", "/patrols", "/cleaning"},
                   "/reports"),
    "manager": ({"/lanes", "/alerts", "/incidents/report", "/handover", "/plans",
                 "/contacts", "/sessions",
                 "/audit", "/incidents", "/patrols", "/cleaning", "/reports",
                 "/admin/merchants", "/admin/passes", "/admin/refunds"}, "/merchant"),
    "merchant": ({"/merchant"}, "/lanes"),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the whole module (cookies are cleared per test)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the browser tests need Debian's "
                    "chromium and chromium-driver; run `make test`, which installs them",
                    pytrace=False)
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download anything
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--lang=zh-CN"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except WebDriverException as error:
        pytest.fail(f"headless chromium did not start ({error.msg}); run `make test` to "
                    "install chromium and chromium-driver", pytrace=False)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def web(site: SimulatedSite, test_site: ProvisionResult,
        browser: WebDriver) -> Iterator[WebServer]:
    commander_for(site, test_site)
    add_people(site.gateway)
    server = WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings(live_poll_ms=200))
    with server:
        browser.delete_all_cookies()
        yield server


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for the page to show something. An element that went away between finding it
    and reading it (the page navigated, or its live part was redrawn), or is not there yet,
    counts as "not yet", as the user would see it a moment later; so does Chromium saying a
    node no longer belongs to the document mid-navigation. A browser that is gone still
    fails, by timing out."""
    deadline = time.monotonic() + timeout
    while not _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except (StaleElementReferenceException, NoSuchElementException):
        return False
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return False
        raise


def log_in(browser: WebDriver, web: WebServer, name: str) -> None:
    browser.get(f"{web.url}/login")
    browser.find_element(By.ID, "username").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    eventually(lambda: "/login" not in browser.current_url, f"{name} to be logged in")


def log_out(browser: WebDriver) -> None:
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    eventually(lambda: browser.current_url.endswith("/login"), "the login page")


def text_of(browser: WebDriver) -> str:
    """The page's text; "" while the browser is between pages (the body went stale), so a
    waiting check looks again instead of failing on the navigation."""
    try:
        return str(browser.find_element(By.TAG_NAME, "body").text)
    except StaleElementReferenceException:
        return ""


def live_text(browser: WebDriver, selector: str) -> str:
    """The text of part of a live lane card, read afresh: live.js swaps a card's live part in
    place when a poll brings a change, so an element found a moment earlier may be gone (a
    CI run under load once read one after the swap)."""
    found: list[str] = []

    def read() -> bool:
        found.append(browser.find_element(By.CSS_SELECTOR, selector).text)
        return True

    eventually(read, f"the text of {selector}")
    return found[-1]


def test_each_role_logs_in_and_sees_only_what_it_may(browser: WebDriver,
                                                     web: WebServer) -> None:
    for name, (role, _merchant) in PEOPLE.items():
        links, refused = SEES[role]
        log_in(browser, web, name)
        nav = browser.find_elements(By.CSS_SELECTOR, "#nav a")
        shown = {str(a.get_attribute("data-nav")) for a in nav}
        assert shown == links, role
        for path in links:
            browser.get(f"{web.url}{path}")
            assert browser.find_element(By.TAG_NAME, "h1").is_displayed(), (role, path)
            assert "无权访问" not in text_of(browser), (role, path)
        browser.get(f"{web.url}{refused}")
        assert browser.find_element(By.ID, "forbidden").is_displayed(), (role, refused)
        log_out(browser)


def test_a_guard_opens_a_barrier_with_a_reason_and_the_audit_log_shows_it(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    log_in(browser, web, "gina")
    browser.get(f"{web.url}/lanes")
    assert PLATE not in live_text(browser, "#lane-in1 .reads")
    site.drive("in1", PLATE)  # the card updates by itself, without a reload
    site.settle()
    eventually(lambda: PLATE in browser.find_element(By.ID, "lane-in1").text,
               "the read to appear on the live lane card")
    card = browser.find_element(By.ID, "lane-out1")
    reason = card.find_element(By.CSS_SELECTOR, "input.reason")
    assert reason.get_attribute("required") is not None  # the browser will not send it empty
    reason.send_keys("帮助按钮: 票机卡纸 help button, ticket jammed")
    card.find_element(By.CSS_SELECTOR, "button.open-button").click()
    eventually(lambda: "已发送开闸指令" in text_of(browser), "the open to be confirmed")
    log_out(browser)
    log_in(browser, web, "sam")
    browser.get(f"{web.url}/audit")
    rows = browser.find_elements(By.CSS_SELECTOR, "#audit tr.entry[data-action='lane.open']")
    assert len(rows) == 1
    assert "guard:gina" in rows[0].text and "票机卡纸" in rows[0].text
    assert "lane:out1" in rows[0].text


def test_a_driver_pays_on_the_pay_page_and_the_exit_opens_without_charging(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(hours=3))
    browser.set_window_size(390, 844)  # a phone
    try:
        browser.get(f"{web.url}/pay")
        browser.find_element(By.ID, "plate").send_keys(PLATE)
        browser.find_element(By.ID, "find").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "pay-button")), "the bill")
        due = browser.find_element(By.ID, "bill-due").text
        assert due.startswith("¥") and due != "¥0.00"
        browser.find_element(By.ID, "pay-button").click()
        eventually(lambda: "/sim-pay/" in browser.current_url, "the wallet")
        assert browser.find_element(By.ID, "amount").text == due
        browser.find_element(By.ID, "wallet-pay").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "paid")), "the paid page")
        paid = browser.find_element(By.ID, "paid").text
        # paid at 13:00 site-local (10:00 + 3 h), then 15 minutes' grace
        assert "请于 13:15 前离场" in paid and "leave by 13:15" in paid
    finally:
        browser.set_window_size(1280, 900)
    passage = site.drive("out1", PLATE)
    assert (passage.opened, passage.reason, passage.fee_fen) == (True, "prepaid", 0)


def test_a_merchant_issues_a_coupon_and_the_drivers_quote_shows_it(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(hours=2))
    browser.get(f"{web.url}/pay?plate={PLATE}")
    full = browser.find_element(By.ID, "bill-due").text
    log_in(browser, web, "mia")
    browser.find_element(By.ID, "coupon-plate").send_keys(PLATE)
    browser.find_element(By.CSS_SELECTOR, "#coupon-kind option[value='amount_off']").click()
    browser.find_element(By.ID, "coupon-amount").send_keys("5")
    browser.find_element(By.ID, "coupon-submit").click()
    eventually(lambda: "已发券" in text_of(browser), "the coupon to be issued")
    assert "粤B1***5" in browser.find_element(By.ID, "coupons").text
    log_out(browser)
    browser.get(f"{web.url}/pay?plate={PLATE}")
    discounts = browser.find_elements(By.CSS_SELECTOR, "#bill tr.discount")
    assert discounts and "-¥5.00" in discounts[0].text
    after = browser.find_element(By.ID, "bill-due").text
    assert _fen(full) - _fen(after) == 500


def _fen(text: str) -> int:
    yuan, _, fen = text.lstrip("¥").partition(".")
    return int(yuan) * 100 + int(fen)
