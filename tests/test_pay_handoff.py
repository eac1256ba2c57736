"""The pay page's hand-off to a real provider (WeChat Pay Native, Alipay precreate), on a
running site whose gateway talks to the local wire-protocol servers of tests/payments.

The site's Content-Security-Policy says ``form-action 'self'``, and Chromium applies it to
the redirect that answers a form POST: a 303 from ``POST /pay`` to ``weixin://…`` or
``https://qr.alipay.com/…`` is blocked in the driver's browser. So ``POST /pay`` renders a
page instead, with the provider's link to tap and the same link as a server-drawn QR code;
"I have paid" shows what the gateway knows, paid once the provider's signed notice came.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import cv2
import httpx
import numpy as np
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import PaymentSettings
from gateway.web import WebServer, WebSettings
from gateway.web.routers.pay import qr_svg
from gateway.web.tickets import TicketSigner
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.payments.alipay_server import AlipayServer
from tests.payments.conftest import alipay_settings, free_port, wechat_settings
from tests.payments.wechat_server import WeChatPayServer
from tests.payments.wire import KeyPair, Reply
from tests.test_web_auth import csrf_of
from tests.test_web_browser import browser as browser  # the shared Chromium
from tests.test_web_browser import eventually

pytestmark = pytest.mark.integration

PLATE = "粤B12345"
KEY = "a hand-off test key of at least thirty-two characters"
LANE = "out1"
Server = WeChatPayServer | AlipayServer


@dataclass
class Paying:
    """A started site whose gateway pays through ``server``, its pay pages on ``url``."""

    site: SimulatedSite
    server: Server
    provider: str
    url: str

    def ticket(self, plate: str = PLATE) -> str:
        bill = self.site.gateway.service.bill_for(plate)
        assert bill is not None
        return TicketSigner(KEY).issue(plate, bill.session_id, now=self.site.clock.now())

    def order(self) -> str:
        """The one order opened at the provider (its out_trade_no)."""
        (number,) = self.server.trades
        return number


def local_wechat(clock: ManualClock, kind: type[WeChatPayServer] = WeChatPayServer
                 ) -> WeChatPayServer:
    return kind(clock, merchant=KeyPair.make(), platform=KeyPair.make(),
                apiv3_key=secrets.token_hex(16), apiv2_key=secrets.token_hex(16))


def local_server(provider: str, clock: ManualClock) -> Server:
    """The local WeChat Pay or Alipay, not yet started, with keys made for it."""
    if provider == "wechat":
        return local_wechat(clock)
    return AlipayServer(clock, app=KeyPair.make(), alipay=KeyPair.make())


def payments_for(server: Server, tmp_path: Path, notify: str) -> PaymentSettings:
    keys = tmp_path / "provider-keys"
    keys.mkdir(exist_ok=True)
    if isinstance(server, WeChatPayServer):
        return PaymentSettings(provider="wechat",
                               wechat=wechat_settings(server, keys, notify))
    return PaymentSettings(provider="alipay", alipay=alipay_settings(server, keys, notify))


@contextmanager
def site_paying_through(server: Server, provider: str, broker: MosquittoBroker,
                        tmp_path: Path, test_site: ProvisionResult) -> Iterator[Paying]:
    """The ``site`` fixture's lanes, with a gateway configured for a real provider (the
    local ``server``, sharing its clock, its keys in files) and its web server on a port
    chosen first, so that the orders it opens carry a notify_url the server can reach."""
    clock = server.clock
    assert isinstance(clock, ManualClock)
    port = free_port()
    with server:
        unstarted = SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                                  clock=clock, entry_lanes=("in1",), exit_lanes=(LANE,),
                                  lane_keys=test_site.device("gateway").lane_keys,
                                  pay_at_exit=False)
        unstarted.gateway.store.close()  # the same gateway, paying through ``server``
        payments = payments_for(server, tmp_path,
                                f"http://127.0.0.1:{port}/api/payments/callback")
        config = unstarted.gateway_config.model_copy(update={"payments": payments})
        unstarted.gateway_config = config
        unstarted.gateway = GatewayApp(config, clock=clock)
        with unstarted as site, WebServer(site.gateway, "127.0.0.1", port, clock=clock,
                                          settings=WebSettings(secret_key=KEY)) as web:
            yield Paying(site, server, provider, web.url)


@pytest.fixture(params=["wechat", "alipay"])
def paying(request: pytest.FixtureRequest, broker: MosquittoBroker, tmp_path: Path,
           test_site: ProvisionResult) -> Iterator[Paying]:
    provider = str(request.param)
    server = local_server(provider, ManualClock(SITE_START))
    with site_paying_through(server, provider, broker, tmp_path, test_site) as running:
        yield running


def park(site: SimulatedSite, plate: str = PLATE) -> None:
    assert site.drive("in1", plate).opened
    site.settle()
    site.clock.advance(timedelta(hours=3, minutes=3))  # ¥15.00 on the example tariff


def same_origin(location: str) -> bool:
    """Whether a Location header stays on this site: a path, never a scheme or ``//host``."""
    parts = urlsplit(location)
    return not parts.scheme and not parts.netloc and location.startswith("/") \
        and not location.startswith("//")


def decoded(png: bytes) -> str:
    """The text of the one QR code in a screenshot, read by OpenCV's detector."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image is not None, "the screenshot is not a PNG"
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


def path_of(svg: str) -> str:
    """The dark modules of a QR code in SVG: the ``d`` of its stroked path."""
    found = re.search(r'<path[^>]*stroke="#000"[^>]*\sd="([^"]+)"', svg) \
        or re.search(r'<path[^>]*\sd="([^"]+)"[^>]*stroke="#000"', svg)
    assert found, f"no QR path in {svg[:200]}"
    return found.group(1)


def post_pay(client: httpx.Client, plate: str, token: str, csrf: str = "") -> httpx.Response:
    """Press Pay for ``plate``: on its freshly loaded page, or with the form's ``csrf`` from
    an earlier one (a page left open while the plate was paid)."""
    if not csrf:
        page = client.get("/pay", params={"plate": plate, "t": token, "lane": LANE})
        csrf = csrf_of(page.text)
    return client.post("/pay", data={"plate": plate, "t": token, "lane": LANE,
                                     "csrf_token": csrf})


# --- in the driver's browser --------------------------------------------------------------


def test_the_driver_pays_through_the_hand_off_page(browser: WebDriver,
                                                   paying: Paying) -> None:
    park(paying.site)
    token = paying.ticket()
    browser.set_window_size(390, 844)
    try:
        query = urlencode({"plate": PLATE, "lane": LANE, "t": token})
        browser.get(f"{paying.url}/pay?{query}")
        eventually(lambda: bool(browser.find_elements(By.ID, "pay-button")), "the bill")
        browser.find_element(By.ID, "pay-button").click()
        # the POST's answer is our own page, so form-action has nothing to block
        eventually(lambda: bool(browser.find_elements(By.ID, "pay-go")), "the hand-off page")
        assert browser.current_url == f"{paying.url}/pay"
        assert browser.find_element(By.ID, "go-plate").text == PLATE
        assert browser.find_element(By.ID, "go-amount").text == "¥15.00"
        shown = browser.find_element(By.ID, "go-provider").text
        assert shown == {"wechat": "微信支付 WeChat Pay", "alipay": "支付宝 Alipay"}[
            paying.provider]
        number = paying.order()
        link = str(browser.find_element(By.ID, "pay-link").get_attribute("href"))
        if paying.provider == "wechat":
            assert link == f"weixin://wxpay/bizpayurl?pr={number[:10]}"
            assert "长按识别" in browser.find_element(By.ID, "pay-qr").text
        else:
            assert link == f"https://qr.alipay.com/bax0{number[:8]}"
        # the QR code reads as exactly the provider's link, and is segno's drawing of it
        svg = browser.find_element(By.CSS_SELECTOR, "#pay-qr svg.qr")
        assert svg.size["width"] >= 200
        assert decoded(svg.screenshot_as_png) == link
        assert path_of(str(svg.get_attribute("outerHTML"))) == path_of(str(qr_svg(link)))
        # "I have paid" before the provider's notice: not yet
        browser.find_element(By.ID, "i-have-paid").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "unpaid")), "not paid yet")
        assert f"t={token}" in browser.current_url
        # Back (as from the provider's page): the hand-off page again, not a resubmission
        browser.back()
        eventually(lambda: bool(browser.find_elements(By.ID, "i-have-paid")), "hand-off")
        assert paying.order() == number  # no second order was opened
        answer = paying.server.pay(number)  # the driver pays; the provider notifies
        assert answer.status_code == 200
        browser.find_element(By.ID, "i-have-paid").click()
        eventually(lambda: bool(browser.find_elements(By.ID, "paid")), "paid")
        assert "已支付" in browser.find_element(By.ID, "paid").text
    finally:
        browser.set_window_size(1280, 900)


# --- what POST /pay answers -----------------------------------------------------------------


def test_post_pay_never_redirects_to_another_origin(paying: Paying) -> None:
    park(paying.site)
    park(paying.site, "粤B99999")
    token = paying.ticket()
    with httpx.Client(base_url=paying.url, follow_redirects=False, timeout=10) as client:
        csrf = csrf_of(client.get("/pay", params={"plate": PLATE, "t": token}).text)
        handed = post_pay(client, PLATE, token, csrf)
        assert handed.status_code == 200 and "location" not in handed.headers
        assert handed.headers["cache-control"] == "private, no-cache"
        assert "form-action 'self'" in handed.headers["content-security-policy"]
        number = paying.order()
        pay_url = {"wechat": f"weixin://wxpay/bizpayurl?pr={number[:10]}",
                   "alipay": f"https://qr.alipay.com/bax0{number[:8]}"}[paying.provider]
        assert f'href="{escape(pay_url)}"' in handed.text
        assert path_of(handed.text) == path_of(str(qr_svg(pay_url)))
        done = f"/pay/done?{urlencode({'plate': PLATE, 't': token})}"
        assert f'href="{escape(done)}"' in handed.text
        assert "<script" not in handed.text  # the QR is markup: the CSP needs no change
        # nothing due, a plate nobody inside has, and the provider away: back to /pay
        paying.server.pay(number)
        answers = [post_pay(client, PLATE, token, csrf),
                   post_pay(client, "京A00001", "", csrf)]
        paying.server.http.stop()
        answers.append(post_pay(client, "粤B99999", "", csrf))
        for answer in answers:
            assert answer.status_code == 303 and same_origin(answer.headers["location"])
            assert answer.headers["location"].startswith("/pay?")
        unavailable = client.get(answers[-1].headers["location"]).text
        assert "Online payment is not available now" in unavailable


class ScriptLink(WeChatPayServer):
    """A WeChat Pay that answers a Native order with a ``javascript:`` code_url."""

    def _native(self, order: dict[str, object]) -> Reply:
        super()._native(order)
        return self._signed(200, {"code_url": "javascript:alert(document.cookie)"})


def test_a_pay_link_that_is_not_a_provider_link_is_never_shown(
        broker: MosquittoBroker, tmp_path: Path, test_site: ProvisionResult) -> None:
    server = local_wechat(ManualClock(SITE_START), ScriptLink)
    with site_paying_through(server, "wechat", broker, tmp_path, test_site) as paying, \
            httpx.Client(base_url=paying.url, follow_redirects=False, timeout=10) as client:
        park(paying.site)
        answer = post_pay(client, PLATE, "")
        assert answer.status_code == 303 and same_origin(answer.headers["location"])
        page = client.get(answer.headers["location"]).text
        assert "javascript:" not in page and "not available now" in page
