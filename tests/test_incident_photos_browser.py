"""The accident form with photos on a phone's screen: Debian's headless Chromium at 412 px
wide against a live WebServer on a simulated site with a roster (real Mosquitto, the gateway
and lanes on mock pins, real SQLite)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.web import WebServer
from simulator.site import SimulatedSite
from tests.ops_roster import rostered_site
from tests.test_web_browser import browser, eventually, log_in, text_of, web

pytestmark = pytest.mark.integration

__all__ = ["browser", "web"]  # the browser and live server fixtures, shared
PHONE = (412, 915)


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path,
         test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """The shared fixtures' site, with the roster an accident alerts."""
    with rostered_site(broker, tmp_path, test_site) as running:
        yield running


@pytest.fixture
def phone(browser: WebDriver) -> Iterator[WebDriver]:
    size = browser.get_window_size()
    browser.set_window_size(*PHONE)
    yield browser
    browser.set_window_size(size["width"], size["height"])


def wide(browser: WebDriver) -> int:
    return int(browser.execute_script("return document.documentElement.scrollWidth"))


def test_an_accident_with_a_photo_is_opened_from_a_phone(
        phone: WebDriver, web: WebServer, site: SimulatedSite, tmp_path: Path) -> None:
    picture = tmp_path / "scene.jpg"
    out = io.BytesIO()
    Image.new("RGB", (1200, 800), "orange").save(out, "JPEG")
    picture.write_bytes(out.getvalue())
    log_in(phone, web, "sam")
    phone.get(f"{web.url}/incidents")
    width = int(phone.execute_script("return window.innerWidth"))
    assert width <= PHONE[0]
    assert wide(phone) <= width, "the incidents page scrolls sideways on a phone"
    form = phone.find_element(By.CSS_SELECTOR, "form.open-incident")
    form.find_element(By.CSS_SELECTOR, "select[name=kind] option[value=accident]").click()
    form.find_element(By.NAME, "description").send_keys("剐蹭 scraped the ramp wall")
    form.find_element(By.NAME, "plates").send_keys("粤B12345")
    upload = form.find_element(By.CSS_SELECTOR, "input[type=file][name=photo]")
    assert upload.get_attribute("accept") == "image/jpeg,image/png"
    upload.send_keys(str(picture))
    form.find_element(By.CSS_SELECTOR, "button").click()
    eventually(lambda: "已保存照片 1" in text_of(phone), "the photo to be kept")

    card = phone.find_element(By.CSS_SELECTOR, "section.incident")
    assert "粤B12345" in card.find_element(By.CSS_SELECTOR, ".plates").text
    shot = card.find_element(By.CSS_SELECTOR, ".photos img.photo")
    eventually(lambda: bool(phone.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", shot)),
        "the photo to load")
    assert shot.rect["width"] <= width
    assert wide(phone) <= width, "the page with a photo scrolls sideways on a phone"
    alerts = site.gateway.alerts
    assert alerts is not None
    assert [a.kind for a in site.gateway.service.call(alerts.active)] == ["accident"]
