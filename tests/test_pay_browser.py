"""The pay page's province keypad and new-energy toggle in Debian's headless Chromium, on a
phone-sized window: with JavaScript (the keypad fills the plate box, a typed province moves
onto the keypad, the special last characters appear) and without it (the same radios and
box are a plain form the server puts together)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.web import WebServer, WebSettings
from simulator.site import SimulatedSite
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, eventually, text_of
from tests.test_web_browser import browser as browser  # the shared Chromium

pytestmark = pytest.mark.integration

PLATE = "粤B12345"
GREEN = "沪AD12345"


@pytest.fixture
def web(site: SimulatedSite) -> Iterator[WebServer]:
    with WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                   settings=WebSettings()) as server:
        yield server


@pytest.fixture
def no_js() -> Iterator[WebDriver]:
    """A second headless Chromium with JavaScript switched off, as a locked-down phone."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} not found: run `make test`, which installs Debian's chromium "
                        "and chromium-driver", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=390,844", "--lang=zh-CN"):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def park(site: SimulatedSite, plate: str) -> None:
    assert site.drive("in1", plate).opened
    site.settle()
    site.clock.advance(timedelta(hours=3, minutes=3))


def key(driver: WebDriver, char: str) -> None:
    """Tap a province on the keypad (its label: the radio itself is hidden)."""
    driver.find_element(By.XPATH, f"//fieldset[@id='provinces']//label[span='{char}']").click()


def test_the_keypad_with_javascript(browser: WebDriver, web: WebServer,
                                    site: SimulatedSite) -> None:
    park(site, PLATE)
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{web.url}/pay")
        assert browser.find_element(By.ID, "suffixes").is_displayed()
        key(browser, "粤")
        assert browser.find_element(By.ID, "chosen").text == "粤"
        box = browser.find_element(By.ID, "plate")
        box.send_keys("b12345")
        assert box.get_attribute("value") == "B12345"
        browser.find_element(By.ID, "find").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "pay-button")), "the bill")
        assert browser.find_element(By.ID, "bill-plate").text == PLATE
        assert browser.find_element(By.ID, "bill-due").text == "¥15.00"
        # a whole plate typed over the keypad's choice: its province moves onto the keypad
        browser.get(f"{web.url}/pay")
        key(browser, "京")
        box = browser.find_element(By.ID, "plate")
        box.send_keys("沪ad12345")
        assert box.get_attribute("value") == "AD12345"
        assert browser.find_element(By.ID, "chosen").text == "沪"
        browser.find_element(By.ID, "new-energy").click()
        assert box.get_attribute("placeholder") == "AD12345"
        browser.find_element(By.ID, "find").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "bill-plate")), "the answer")
        assert browser.find_element(By.ID, "bill-plate").text == GREEN
        assert browser.find_element(By.ID, "nothing-due").is_displayed()
    finally:
        browser.set_window_size(1280, 900)


def test_the_keypad_without_javascript(no_js: WebDriver, web: WebServer,
                                       site: SimulatedSite) -> None:
    park(site, GREEN)
    no_js.get(f"{web.url}/pay")
    assert not no_js.find_element(By.ID, "suffixes").is_displayed()
    key(no_js, "沪")
    no_js.find_element(By.ID, "new-energy").click()
    no_js.find_element(By.ID, "plate").send_keys("AD12345")
    no_js.find_element(By.ID, "find").click()
    eventually(lambda: bool(no_js.find_elements(By.ID, "bill-plate")), "the bill")
    assert no_js.find_element(By.ID, "bill-plate").text == GREEN
    assert no_js.find_element(By.ID, "bill-due").text == "¥7.50"
    assert no_js.find_element(By.ID, "pay-button").is_displayed()
    # the toggle on for a 7-character plate: refused, saying why, in both languages
    no_js.get(f"{web.url}/pay")
    key(no_js, "粤")
    no_js.find_element(By.ID, "new-energy").click()
    no_js.find_element(By.ID, "plate").send_keys("B12345")
    no_js.find_element(By.ID, "find").click()
    eventually(lambda: "新能源车牌为8位" in text_of(no_js), "the refusal")
    assert "8 characters" in text_of(no_js)
