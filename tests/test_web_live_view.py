"""The guard's live view in real Chromium, on a simulated site of eight lanes (real
Mosquitto, gateway and lane nodes on mock pins): eight cards fit a 1366×768 screen, the
"lost contact" banner appears when the gateway stops, a lane not heard from turns grey with
how long ago, plates are coloured by their series, refusals and help calls are on the card,
the manual open offers preset reasons (and is audited), and the dark theme is remembered.
Plus the same view through the JSON API and the reason rules without a browser."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.web import WebServer, WebSettings, create_web_app
from gateway.web.forms import BadForm
from gateway.web.lanes import plate_look, seen_words
from gateway.web.routers.lanes import OPEN_REASONS, open_reason
from parkguard.clock import ManualClock
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedSite
from tests.conftest import SITE_START
from tests.test_lane_heartbeat import silence
from tests.test_web_auth import add_people, login
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, eventually, log_in, log_out
from tests.test_web_pages import commander_for

pytestmark = pytest.mark.integration

SITE = "eight"
ENTRIES = ("in1", "in2", "in3", "in4")
EXITS = ("out1", "out2", "out3", "out4")
GREEN = "粤BD12345"  # small new-energy: gradient green
BLUE = "粤B12345"


@pytest.fixture(scope="module")
def eight_lanes(tmp_path_factory: pytest.TempPathFactory) -> ProvisionResult:
    return provision_simulated_site(tmp_path_factory.mktemp("eight-lanes"), SITE,
                                    entry_lanes=ENTRIES, exit_lanes=EXITS,
                                    monitors=("watch1",))


@pytest.fixture
def eight_broker(tmp_path: Path, eight_lanes: ProvisionResult) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "mosquitto", site=eight_lanes) as running:
        yield running


@pytest.fixture
def site8(eight_broker: MosquittoBroker, tmp_path: Path,
          eight_lanes: ProvisionResult) -> Iterator[SimulatedSite]:
    with SimulatedSite(site=SITE, broker=eight_broker.address, workdir=tmp_path,
                       clock=ManualClock(SITE_START), entry_lanes=ENTRIES, exit_lanes=EXITS,
                       lane_keys=eight_lanes.device("gateway").lane_keys) as running:
        commander_for(running, eight_lanes)
        add_people(running.gateway)
        yield running


@pytest.fixture(scope="module")
def chromium() -> Iterator[WebDriver]:
    """Headless Chromium at a control room's 1366×768."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run `make test`, which installs "
                    "chromium and chromium-driver", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1366,768", "--lang=zh-CN", "--hide-scrollbars"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except WebDriverException as error:
        pytest.fail(f"headless chromium did not start ({error.msg})", pytrace=False)
    yield driver
    driver.quit()


def _serve(site: SimulatedSite, chromium: WebDriver) -> WebServer:
    """The dashboard on the site's clock, with the default ``lane_stale_s`` (35 s: the lanes
    beat every 10 s, so live lanes stay fresh however the test moves the clock)."""
    server = WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings(live_poll_ms=200))
    chromium.delete_all_cookies()
    chromium.set_window_size(1366, 768)
    return server.start()


def _viewport(chromium: WebDriver, width: int, height: int) -> None:
    """Make the page's own viewport (not the window) width × height."""
    chromium.set_window_size(width, height)
    inner = chromium.execute_script("return [window.innerWidth, window.innerHeight]")
    chromium.set_window_size(2 * width - inner[0], 2 * height - inner[1])


def _text(chromium: WebDriver) -> str:
    """The page's text; "" while the browser is between pages (no body, or a stale one)."""
    try:
        return str(chromium.find_element(By.TAG_NAME, "body").text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _cards(chromium: WebDriver) -> list[dict[str, float]]:
    return list(chromium.execute_script(
        "return Array.from(document.querySelectorAll('section.lane')).map(function (c) {"
        "var r = c.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,"
        "bottom: r.bottom}; })"))


def test_eight_lanes_fit_a_1366_screen_and_four_a_row_on_1024(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    for number, lane in enumerate(ENTRIES):  # full cards: reads, a help call, a refusal
        for car in range(3):
            site8.drive(lane, f"粤B{number}{car}345")
    site8.lanes["in3"].wiring.press_help()
    site8.drive("out2", "粤A99999")  # no entry record: refused
    site8.settle()
    with _serve(site8, chromium) as web:
        log_in(chromium, web, "gina")
        _viewport(chromium, 1366, 768)
        chromium.get(f"{web.url}/lanes")
        cards = _cards(chromium)
        assert len(cards) == 8
        assert "拒绝 refused" in chromium.find_element(By.ID, "lane-out2").text
        scroll = chromium.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll[0] <= scroll[1], "the lanes page scrolls sideways at 1366"
        assert max(card["right"] for card in cards) <= 1366
        assert max(card["bottom"] for card in cards) <= 768, "8 lanes need a scroll at 1366×768"
        _viewport(chromium, 1024, 768)
        cards = _cards(chromium)
        assert len({round(card["top"]) for card in cards[:4]}) == 1, "4 a row at 1024"
        assert chromium.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")


def test_the_banner_shows_when_the_dashboard_loses_the_gateway(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    web = _serve(site8, chromium)
    try:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")
        banner = chromium.find_element(By.ID, "gateway-lost")
        assert not banner.is_displayed()
    finally:
        web.stop()
    eventually(lambda: chromium.find_element(By.ID, "gateway-lost").is_displayed(),
               "the lost-contact banner", timeout=30)
    assert "与网关失去联系" in chromium.find_element(By.ID, "gateway-lost").text
    assert "Lost contact with the gateway" in chromium.find_element(By.ID, "gateway-lost").text
    assert "gateway-lost" in str(chromium.find_element(By.TAG_NAME, "body")
                                 .get_attribute("class"))  # every card greyed
    assert not chromium.find_element(By.ID, "alerts-lost").is_displayed()  # one banner here


def test_every_staff_page_says_when_it_loses_the_gateway(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    web = _serve(site8, chromium)
    try:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/sessions")
        assert not chromium.find_element(By.ID, "alerts-lost").is_displayed()
    finally:
        web.stop()
    eventually(lambda: chromium.find_element(By.ID, "alerts-lost").is_displayed(),
               "the alert banner's lost-contact line", timeout=30)
    assert "Lost contact with the gateway" in chromium.find_element(By.ID, "alerts-lost").text


def test_a_lane_not_heard_from_turns_grey_with_how_long_ago(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    with _serve(site8, chromium) as web:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")
        card = chromium.find_element(By.ID, "lane-in1")
        assert "stale" not in str(card.get_attribute("class"))
        silence(site8, "in1")  # its heartbeats stop; the other seven keep beating
        site8.clock.advance(timedelta(seconds=41))  # the page shows the server's clock
        eventually(lambda: "stale" in str(chromium.find_element(By.ID, "lane-in1")
                                          .get_attribute("class")), "in1 to turn grey")
        seen = chromium.find_element(By.CSS_SELECTOR, "#lane-in1 .seen").text
        found = re.search(r"(\d+) 秒前 last seen (\d+) s ago", seen)
        assert found and found[1] == found[2] and int(found[1]) >= 41, seen
        eventually(lambda: "stale" not in str(chromium.find_element(By.ID, "lane-in2")
                                              .get_attribute("class")), "in2 to stay fresh")
        grey = chromium.execute_script(
            "return getComputedStyle(document.getElementById('lane-in1')).filter")
        assert "grayscale(1)" in grey


def test_reads_are_coloured_by_series_and_help_calls_and_faults_are_on_the_card(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    with _serve(site8, chromium) as web:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")
        site8.drive("in1", GREEN)
        site8.drive("in2", BLUE)
        site8.lanes["in3"].wiring.press_help()
        site8.lanes["in4"].node.controller.events.fault("read_failed", "camera: timeout")
        site8.settle()
        eventually(lambda: GREEN in chromium.find_element(By.ID, "lane-in1").text, "the read")
        latest = chromium.find_element(By.CSS_SELECTOR, "#lane-in1 .read.latest .plate")
        assert "plate-green" in str(latest.get_attribute("class"))
        assert "小型新能源" in chromium.find_element(By.ID, "lane-in1").text
        eventually(lambda: BLUE in chromium.find_element(By.ID, "lane-in2").text, "the read")
        blue = chromium.find_element(By.CSS_SELECTOR, "#lane-in2 .read.latest .plate")
        assert "plate-blue" in str(blue.get_attribute("class"))
        eventually(lambda: "求助 help pressed" in chromium.find_element(By.ID, "lane-in3").text,
                   "the help call on the card")
        eventually(lambda: "故障 fault · 识别失败 read failed" in
                   chromium.find_element(By.ID, "lane-in4").text, "the fault on the card")
        when = chromium.find_element(By.CSS_SELECTOR, "#lane-in1 time.when")
        size = chromium.execute_script("return parseFloat(getComputedStyle(arguments[0])"
                                       ".fontSize)", when)
        assert size >= 12, f"timestamps at {size}px"
        state = chromium.find_element(By.CSS_SELECTOR, "#lane-in1 .barrier").text
        assert re.search(r"[\u4e00-\u9fff]", state), state  # translated, not "closed"


def test_the_manual_open_offers_preset_reasons_and_is_audited(
        chromium: WebDriver, site8: SimulatedSite) -> None:
    with _serve(site8, chromium) as web:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")
        form = chromium.find_element(By.CSS_SELECTOR, "#lane-out1 form.open-form")
        preset = Select(form.find_element(By.CSS_SELECTOR, "select.preset"))
        assert [o.text for o in preset.options][1:] == list(OPEN_REASONS)
        reason = form.find_element(By.CSS_SELECTOR, "input.reason")
        preset.select_by_value("其他 other")
        assert reason.get_attribute("required") is not None  # "other" needs typed words
        preset.select_by_value("设备故障 device fault")
        assert reason.get_attribute("required") is None  # a named preset is enough
        form.find_element(By.CSS_SELECTOR, "button.open-button").click()
        eventually(lambda: "已发送开闸指令" in _text(chromium), "the open to be confirmed")
        log_out(chromium)
        log_in(chromium, web, "sam")
        chromium.get(f"{web.url}/audit")
        rows = chromium.find_elements(By.CSS_SELECTOR,
                                      "#audit tr.entry[data-action='lane.open']")
        assert len(rows) == 1 and "设备故障 device fault" in rows[0].text


def test_the_dark_theme_toggle_is_remembered(chromium: WebDriver,
                                            site8: SimulatedSite) -> None:
    with _serve(site8, chromium) as web:
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")
        chromium.execute_script("localStorage.removeItem('parkguard-theme')")
        chromium.refresh()
        before = chromium.execute_script("return document.documentElement.dataset.theme")
        chromium.find_element(By.ID, "theme-toggle").click()
        after = chromium.execute_script("return document.documentElement.dataset.theme")
        assert {before, after} == {"light", "dark"}
        chromium.get(f"{web.url}/sessions")
        assert chromium.execute_script("return document.documentElement.dataset.theme") == after
        background = chromium.execute_script(
            "return getComputedStyle(document.body).backgroundColor")
        assert background == ("rgb(18, 22, 27)" if after == "dark" else "rgb(244, 246, 248)")


# --- without a browser ------------------------------------------------------------------------


def test_the_api_says_every_lane_is_stale_when_the_gateway_loses_the_broker(
        site8: SimulatedSite, eight_broker: MosquittoBroker) -> None:
    web = create_web_app(site8.gateway, settings=WebSettings(), clock=site8.clock)
    with TestClient(web) as client:
        login(client, "gina")
        lanes = client.get("/api/lanes").json()
        assert lanes["bus_connected"] and len(lanes["lanes"]) == 8
        assert not any(lane["liveness"]["stale"] for lane in lanes["lanes"])
        assert lanes["lanes"][0]["words"]["barrier"] == "已落杆 closed"
        eight_broker.stop()
        eventually(lambda: not client.get("/api/lanes").json()["bus_connected"],
                   "the gateway to notice the broker went", timeout=60)
        lanes = client.get("/api/lanes").json()["lanes"]
        assert all(lane["liveness"]["stale"] for lane in lanes)
        assert "gateway lost the broker" in lanes[0]["liveness"]["why"]
        live = client.get("/lanes/live").json()
        assert "The gateway lost the broker" in live["bus_lost"]


def test_an_open_reason_is_a_preset_typed_words_or_both() -> None:
    assert open_reason("访客登记 visitor registered", "") == "访客登记 visitor registered"
    assert open_reason("设备故障 device fault", "in2 camera") == \
        "设备故障 device fault: in2 camera"
    assert open_reason("", "票机卡纸 ticket jam") == "票机卡纸 ticket jam"
    assert open_reason("其他 other", "保安队长指示") == "其他 other: 保安队长指示"
    for preset, text in (("其他 other", ""), ("", "ok"), ("随便 whatever", "a reason")):
        with pytest.raises(BadForm):
            open_reason(preset, text)


def test_plate_colours_and_last_seen_words() -> None:
    assert plate_look(GREEN)["colour"] == "green"
    assert plate_look("粤B1234警")["colour"] == "white"
    assert plate_look("粤Z1234港")["colour"] == "black"
    assert plate_look(None)["colour"] == "unread"
    assert plate_look("XYZ")["colour"] == "unknown"
    assert seen_words(40) == "40 秒前 last seen 40 s ago"
    assert seen_words(600) == "10 分钟前 last seen 10 min ago"
    with pytest.raises(ValueError, match="lane_stale_s"):
        WebSettings(lane_stale_s=-1)


def test_session_detail_has_headers_translated_values_and_the_bill_at_exit(
        site8: SimulatedSite) -> None:
    site8.drive("in1", BLUE)
    site8.settle()
    site8.clock.advance(timedelta(minutes=10))  # inside the free time
    passage = site8.drive("out1", BLUE)
    site8.settle()
    assert passage.opened
    web = create_web_app(site8.gateway, settings=WebSettings(), clock=site8.clock)
    with TestClient(web) as client:
        login(client, "gina")
        found = client.get("/api/sessions", params={"plate": BLUE}).json()
        session_id = found["history"][0]["session_id"]
        page = client.get(f"/sessions/{session_id}").text
    assert "已离场 left" in page
    decisions = page.split('id="decisions"')[1].split("</table>")[0]
    assert "<th>原因 Reason</th>" in decisions and "放行 open" in decisions
    assert "离场账单" in page and "<th>项目 <small>Item</small></th>" in page
