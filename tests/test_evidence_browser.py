"""The live view's evidence thumbnail in real Chromium (docs/evidence.md, docs/dashboard.md):
lanes read rendered frames with their real TFLite reader on a real Mosquitto; the card of
a lane shows the plate crop its lane kept, with the plate text coloured by its series, and
the card of a lane gone offline says 图像不可用 image unavailable instead of a broken image."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.runner import MosquittoBroker
from gateway.web import WebServer, WebSettings
from gateway.web.lanes import plate_look
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import TEST_SITE
from tests.test_web_auth import add_people
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, eventually, log_in

pytestmark = pytest.mark.integration

NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
GREEN = "粤BD12345"  # small new-energy: gradient green
BLUE = "粤B67890"  # ordinary: blue


@pytest.fixture
def chromium() -> Iterator[WebDriver]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: run `make test`, which installs "
                    "chromium and chromium-driver", pytrace=False)
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1366,768", "--lang=zh-CN"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except WebDriverException as error:
        pytest.fail(f"headless chromium did not start ({error.msg})", pytrace=False)
    yield driver
    driver.quit()


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path) -> Iterator[SimulatedSite]:
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                       clock=ManualClock(NOW), entry_lanes=("in1", "in2"), exit_lanes=(),
                       reader="tflite") as running:
        add_people(running.gateway)
        yield running


def _last_read(site: SimulatedSite, lane: str) -> str | None:
    with site.gateway.store.reader() as db:
        row = db.execute("SELECT json_extract(payload, '$.plate') FROM events WHERE lane = ? "
                         "AND type = 'plate_read' ORDER BY seq DESC LIMIT 1", [lane]).fetchone()
    return None if row is None else row[0]


def test_the_live_view_shows_the_plate_crop_and_the_plate_coloured_by_series(
        chromium: WebDriver, site: SimulatedSite) -> None:
    site.drive("in1", GREEN)
    site.drive("in2", BLUE)
    site.settle()
    assert (_last_read(site, "in1"), _last_read(site, "in2")) == (GREEN, BLUE)
    for lane in site.lanes.values():
        keeper = lane.node.controller.evidence
        assert keeper is not None and keeper[0].wait_written()
    site.lanes["in2"].node.stop()  # its images were never fetched: now nobody can give them
    server = WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                       settings=WebSettings(live_poll_ms=500))
    with server.start() as web:
        board = web.app.state.evidence
        eventually(lambda: board._lane_online("in2") is False, "in2 offline", timeout=30)
        log_in(chromium, web, "gina")
        chromium.get(f"{web.url}/lanes")

        eventually(lambda: bool(chromium.execute_script(
            "var i = document.querySelector('#lane-in1 img.evidence');"
            "return i !== null && i.complete && i.naturalWidth > 0")),
            "in1's plate crop to load", timeout=30)
        size = chromium.execute_script(
            "var i = document.querySelector('#lane-in1 img.evidence');"
            "return [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width]")
        assert size[0] > 2 * size[1] and size[2] > 40, size  # a plate-shaped picture, shown
        # The live part is redrawn every 200 ms: read each plate in one go, again if the
        # element was replaced while being read.
        green = plate_of(chromium, "in1")
        assert green["text"] == GREEN
        assert f"plate-{plate_look(GREEN)['colour']}" in green["class"]
        assert "gradient" in green["background_image"]

        eventually(lambda: "图像不可用 image unavailable" in chromium.find_element(
            By.ID, "lane-in2").text, "in2's words instead of a picture", timeout=30)
        assert not chromium.find_elements(By.CSS_SELECTOR, "#lane-in2 img.evidence")
        blue = plate_of(chromium, "in2")
        assert blue["text"] == BLUE
        assert blue["background_color"] == "rgb(11, 78, 162)"


def plate_of(chromium: WebDriver, lane: str) -> dict[str, str]:
    """The latest read's plate on ``lane``'s card: text, classes and colours, read in one
    script so a redraw cannot come between them."""
    found: dict[str, str] = {}

    def read() -> bool:
        got = chromium.execute_script(
            "var a = document.querySelector(arguments[0]); if (!a) return null;"
            "var s = getComputedStyle(a); return {text: a.textContent.trim(),"
            " class: a.className, background_image: s.backgroundImage,"
            " background_color: s.backgroundColor};", f"#lane-{lane} li.latest a.plate")
        if got:
            found.update(got)
        return bool(got)

    eventually(read, f"{lane}'s latest plate")
    return found
