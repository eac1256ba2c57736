"""The fleet dashboard over a real PostgreSQL filled by the ingest path: a fleet_admin sees
every site, an operator only theirs (HTTP), and the overview in headless Chromium."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from fleet.natsconf import topic_to_subject
from fleet.rows import Delivered
from fleet.store import write_batch
from fleet.web.app import create_fleet_app
from fleet.web.users import add_user
from tests.test_web_browser import (
    browser,  # noqa: F401  (the module's Chromium fixture)
    eventually,
)
from wire.contract.messages import AlarmState, LaneState, Passed, PatrolTap, WireMessage
from wire.contract.topics import alarm, lane_event, lane_state, patrol_tap

pytestmark = pytest.mark.integration
NOW = datetime(2026, 5, 6, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
PASSWORD = "correct horse battery"


def _delivered(topic: str, message: WireMessage, seq: int) -> Delivered:
    return Delivered(topic_to_subject(topic), message.model_dump_json().encode(), seq)


def seed(dsn: str) -> None:
    """North: 2 cars in, 1 out paying ¥12.00 in cash; south: a fire alarm, lane in1 offline;
    east: a patrol tap. Written through the ingest path, as the service would."""
    seq = iter(range(1, 1000))
    out: list[Delivered] = []
    for car, leaves in ((1, True), (2, False)):
        out.append(_delivered(lane_event("north", "in1"), Passed.model_validate({
            "event_id": f"north-in1-{car}", "seq": car, "ts": NOW - timedelta(hours=2),
            "lane": "in1", "direction": "entry", "plate": f"粤B0000{car}",
            "correlation_id": f"cin{car:08d}", "session_id": f"s{car}", "fee_fen": 0,
            "settled": "decision"}), next(seq)))
        if leaves:
            out.append(_delivered(lane_event("north", "out1"), Passed.model_validate({
                "event_id": f"north-out1-{car}", "seq": car, "ts": NOW - timedelta(hours=1),
                "lane": "out1", "direction": "exit", "plate": f"粤B0000{car}",
                "correlation_id": f"cout{car:08d}", "session_id": f"s{car}", "fee_fen": 1200,
                "settled": "cash"}), next(seq)))
    out.append(_delivered(alarm("south", "fire"), AlarmState(
        kind="fire", active=True, source="panel", ts=NOW), next(seq)))
    out.append(_delivered(lane_state("south", "in1"), LaneState(
        lane="in1", online=False, direction="entry", ts=NOW), next(seq)))
    out.append(_delivered(patrol_tap("east", "p1"), PatrolTap.model_validate({
        "reader": "p1", "seq": 1, "tag_id": "04A1B2C3", "badge": "g7",
        "reader_time": "2026-05-06T11:00:00"}), next(seq)))
    with psycopg.connect(dsn) as conn:
        write_batch(conn, out)
        add_user(conn, "boss", PASSWORD, "fleet_admin")
        add_user(conn, "li", PASSWORD, "operator", ["north", "east"])


@pytest.fixture
def client(fleet_dsn: str) -> TestClient:
    seed(fleet_dsn)
    return TestClient(create_fleet_app(fleet_dsn, secret_key="k" * 48, now=lambda: NOW))


def login(client: TestClient, name: str) -> None:
    answer = client.post("/login", data={"username": name, "password": PASSWORD},
                         follow_redirects=False)
    assert answer.status_code == 303


def test_a_fleet_admin_sees_every_site_with_its_figures(client: TestClient) -> None:
    login(client, "boss")
    rows = {row["site"]: row for row in client.get("/api/sites").json()}
    assert set(rows) == {"north", "south", "east"}
    assert (rows["north"]["occupancy"], rows["north"]["revenue_fen"]) == (1, 1200)
    assert (rows["south"]["open_alarms"], rows["south"]["lanes_offline"]) == (1, 1)
    assert rows["east"]["patrol_taps"] == 1
    page = client.get("/sites/south")
    assert page.status_code == 200 and "火警 fire" in page.text and "离线" in page.text


def test_an_operator_sees_only_the_sites_assigned_to_them(client: TestClient) -> None:
    login(client, "li")
    assert {row["site"] for row in client.get("/api/sites").json()} == {"north", "east"}
    overview = client.get("/")
    assert 'data-site="north"' in overview.text and 'data-site="south"' not in overview.text
    assert client.get("/sites/south").status_code == 403
    assert client.get("/sites/north").status_code == 200


def test_no_page_without_logging_in_and_a_wrong_password_is_refused(
        client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/sites", follow_redirects=False).status_code == 303
    wrong = client.post("/login", data={"username": "boss", "password": "not it at all"})
    assert wrong.status_code == 401 and "wrong name or password" in wrong.text


@pytest.fixture
def served(fleet_dsn: str) -> Iterator[str]:
    seed(fleet_dsn)
    app = create_fleet_app(fleet_dsn, secret_key="k" * 48, now=lambda: NOW)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the fleet dashboard did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=30)


def test_the_overview_in_a_browser_shows_each_site_and_drills_down(
        served: str, browser: WebDriver) -> None:  # noqa: F811
    browser.delete_all_cookies()
    browser.get(f"{served}/login")
    browser.find_element(By.NAME, "username").send_keys("boss")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    # click() returns before the browser has left the login page (a loaded CI once read
    # the login page's empty table): wait for the overview, then read it
    eventually(lambda: "/login" not in browser.current_url
               and bool(browser.find_elements(By.CSS_SELECTOR, "#sites tbody tr")),
               "the overview after logging in")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sites tbody tr")
    assert [row.get_attribute("data-site") for row in rows] == ["east", "north", "south"]
    north = browser.find_element(By.CSS_SELECTOR, 'tr[data-site="north"]').text
    assert "¥12.00" in north
    totals = browser.find_element(By.ID, "totals").text
    assert "今日收入" in totals and "revenue today" in totals
    browser.find_element(By.LINK_TEXT, "south").click()
    eventually(lambda: "车场 site south" in browser.find_element(By.TAG_NAME, "h1").text,
               "the south site's page")
    assert "离线" in browser.find_element(By.ID, "devices").text
