"""The contact register and the heavy-rain checklist in Debian's headless Chromium, on the
simulated site of tests/test_site_plans.py (real Mosquitto, gateway, SQLite): a driver
agrees on the pay page's consent form, the guard sees the number masked, the supervisor
reveals it only with a reason; the supervisor's heavy-rain switch shows the checklist until
every item is ticked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.web import WebServer, WebSettings
from simulator.site import SimulatedSite
from tests.sms_peer import SmsEagle
from tests.test_site_plans import DIGITS, PHONE, PLATE, park, plans_site
from tests.test_web_auth import add_people
from tests.test_web_browser import browser as browser  # the shared Chromium
from tests.test_web_browser import eventually, log_in, log_out, text_of

pytestmark = pytest.mark.integration


@pytest.fixture
def web(broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult, eagle: SmsEagle,
        browser: WebDriver) -> Iterator[tuple[WebServer, SimulatedSite]]:
    with plans_site(broker, tmp_path, test_site, eagle) as site:
        add_people(site.gateway)
        with WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings()) as server:
            browser.delete_all_cookies()
            yield server, site


def test_consent_on_the_pay_page_masked_for_the_guard_revealed_with_a_reason(
        browser: WebDriver, web: tuple[WebServer, SimulatedSite]) -> None:
    server, site = web
    park(site)
    browser.get(f"{server.url}/pay?plate={PLATE}")  # the pay page links the consent form
    browser.find_element(By.ID, "contact-link").click()
    eventually(lambda: bool(browser.find_elements(By.ID, "consent-form")), "the consent form")
    assert browser.find_element(By.ID, "consent-plate").get_attribute("value") == PLATE
    assert not browser.find_element(By.ID, "consent-box").is_selected()  # never pre-ticked
    browser.find_element(By.ID, "consent-phone").send_keys(PHONE)
    browser.find_element(By.ID, "consent-submit").click()  # the box not ticked: refused
    eventually(lambda: bool(browser.find_elements(By.ID, "consent-error")), "the refusal")
    browser.find_element(By.ID, "consent-phone").send_keys(PHONE)
    browser.find_element(By.ID, "consent-box").click()
    browser.find_element(By.ID, "consent-submit").click()
    eventually(lambda: bool(browser.find_elements(By.ID, "consent-done")), "the thanks")

    log_in(browser, server, "gina")  # a guard: masked, and no reveal form
    browser.get(f"{server.url}/contacts")
    row = browser.find_element(By.CSS_SELECTOR, "#contacts tbody tr")
    assert "139****5678" in row.text and PLATE in row.text and DIGITS not in text_of(browser)
    assert not row.find_elements(By.CSS_SELECTOR, "form.reveal")
    log_out(browser)

    log_in(browser, server, "sam")  # a supervisor: reveals with a reason
    browser.get(f"{server.url}/contacts")
    form = browser.find_element(By.CSS_SELECTOR, "#contacts form.reveal")
    assert form.find_element(By.CSS_SELECTOR, "input.reason").get_attribute("required") \
        is not None
    form.find_element(By.CSS_SELECTOR, "input.reason").send_keys("car alarm sounding B2")
    form.find_element(By.TAG_NAME, "button").click()
    eventually(lambda: bool(browser.find_elements(By.CSS_SELECTOR, ".revealed")),
               "the number revealed")
    assert browser.find_element(By.CSS_SELECTOR, ".revealed").text == DIGITS
    browser.get(f"{server.url}/contacts")  # shown once: masked again on the next page
    assert DIGITS not in text_of(browser) and "139****5678" in text_of(browser)
    browser.get(f"{server.url}/audit")
    eventually(lambda: "car alarm sounding B2" in text_of(browser), "the reveal audited")
    assert DIGITS not in text_of(browser)


def test_the_heavy_rain_switch_shows_the_checklist_until_every_item_is_ticked(
        browser: WebDriver, web: tuple[WebServer, SimulatedSite]) -> None:
    server, _site = web
    log_in(browser, server, "sam")
    browser.get(f"{server.url}/plans")
    browser.find_element(By.ID, "rain-note").send_keys("暴雨橙色预警 orange warning")
    browser.find_element(By.ID, "heavy-rain-on").click()
    eventually(lambda: bool(browser.find_elements(By.ID, "checklist")), "the checklist")
    assert "还剩 3 项" in browser.find_element(By.ID, "remaining").text
    def ticked(item: str) -> bool:
        shown = browser.find_elements(By.ID, f"item-{item}")
        return not shown or "done" in (shown[0].get_attribute("class") or "")

    for item in ("leaders", "pumps"):
        browser.find_element(By.CSS_SELECTOR, f"#item-{item} button.check").click()
        eventually(lambda: ticked(item), f"{item} ticked")  # noqa: B023
    assert "还剩 1 项" in browser.find_element(By.ID, "remaining").text
    browser.find_element(By.CSS_SELECTOR, "#item-sandbags button.check").click()
    eventually(lambda: bool(browser.find_elements(By.ID, "no-readiness")),
               "the checklist closed once complete")
