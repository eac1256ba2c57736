"""The QR self-claim in a real browser (headless Chromium, Selenium) against a live WebServer
on a simulated site: the shop prints codes, a driver opens one, types the plate, and the
pay page's bill takes the rule's two hours off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from gateway.web import WebServer
from simulator.site import SimulatedSite
from tests.test_web_browser import browser, eventually, log_in, log_out, web
from tests.test_web_pages import PLATE

pytestmark = pytest.mark.integration
__all__ = ["browser", "web"]  # the browser and live server fixtures, shared


def text_of(browser: WebDriver) -> str:
    """The page's text; "" while the browser is between pages (no body yet, or a stale one),
    so a waiting check looks again instead of failing on the navigation."""
    try:
        return str(browser.find_element(By.TAG_NAME, "body").text)
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def test_a_driver_claims_the_shops_qr_coupon_and_the_bill_takes_it_off(
        browser: WebDriver, web: WebServer, site: SimulatedSite) -> None:
    site.drive("in1", PLATE)
    site.settle()
    site.clock.advance(timedelta(hours=2))
    log_in(browser, web, "mia")
    browser.find_element(By.ID, "codes-count").clear()
    browser.find_element(By.ID, "codes-count").send_keys("2")
    browser.find_element(By.CSS_SELECTOR, "#codes-kind option[value='rule:spend_88']").click()
    browser.find_element(By.ID, "codes-submit").click()
    eventually(lambda: "只显示这一次" in text_of(browser), "the printed codes")
    links = [a.get_attribute("href") for a in
             browser.find_elements(By.CSS_SELECTOR, "#claim-codes a.claim-link")]
    assert len(links) == 2 and all(str(link).startswith(f"{web.url}/claim?c=")
                                   for link in links)
    log_out(browser)

    browser.get(str(links[0]))  # the driver scans the QR
    eventually(lambda: "茶饮 Tea shop" in text_of(browser), "the claim page")
    page = text_of(browser)
    assert "茶饮 Tea shop" in page and "免费停车2小时（节假日3小时）" in page
    assert "每车每次停车限领该商户一张" in page
    browser.find_element(By.ID, "plate").send_keys(PLATE)
    browser.find_element(By.ID, "claim-button").click()
    eventually(lambda: "领取成功" in text_of(browser), "the claimed coupon")
    assert browser.find_element(By.ID, "claimed-plate").text == PLATE

    browser.get(str(links[1]))  # a second code for the same car, same visit
    assert browser.find_element(By.ID, "plate").get_attribute("value") == PLATE  # prefilled
    browser.find_element(By.ID, "claim-button").click()
    eventually(lambda: "每车每次限领一张" in text_of(browser), "the refusal")
    assert "one per car per visit" in browser.find_element(By.ID, "claim-error").text

    browser.get(f"{web.url}/pay?plate={PLATE}")
    assert browser.find_element(By.ID, "nothing-due").is_displayed()  # 2 h parked, 2 h free
    bill = site.gateway.service.bill_for(PLATE)
    assert bill is not None and bill.quote is not None
    assert [(d.code, d.fen) for d in bill.quote.discounts] == [("spend_88", 900)]
