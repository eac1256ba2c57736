"""The demo's printed logins work whatever the hour (issue 24).

The demo plays its day on a simulated clock that ends hours ahead of the wall clock, then
adds its dashboard users and serves the dashboard. Its users were stamped with that
simulated evening while logins are stamped with the wall clock, so a password looked newer
than every session. Here the site's clock is 12 h ahead of the wall, the users are added
exactly as ``parkguard demo`` adds them (``add_demo_users``), the dashboard is served as the
demo serves it (a real uvicorn, the gateway's own clock), and a real Chromium and httpx
log in. A session the server ends (a new password, a disabled account) sends the browser to
the login page with the reason, not silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.web import WebServer
from gateway.web.users import UserStore
from parkguard.clock import ManualClock
from simulator.office import DEMO_USERS, add_demo_users, open_the_office
from simulator.site import SimulatedSite
from tests.conftest import TEST_SITE
from tests.test_web_auth import csrf_of
from tests.test_web_browser import browser, eventually, text_of  # noqa: F401 - a fixture

pytestmark = pytest.mark.integration

AHEAD = timedelta(hours=12)
HOMES = {"guard": "/lanes", "supervisor": "/lanes", "manager": "/lanes",
         "merchant": "/merchant"}


@pytest.fixture
def evening_site(broker: MosquittoBroker, tmp_path: Path,
                 test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """A site whose simulated day has run to hours past the wall clock, as the demo's has
    when it serves the dashboard."""
    clock = ManualClock(datetime.now(UTC) + AHEAD)
    with SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path, clock=clock,
                       entry_lanes=("in1",), exit_lanes=("out1",),
                       lane_keys=test_site.device("gateway").lane_keys) as running:
        yield running


@pytest.fixture
def demo_web(evening_site: SimulatedSite) -> Iterator[tuple[WebServer, str]]:
    """The dashboard as ``parkguard demo`` serves it, and the password it prints (the
    office opened first, as in the demo: the merchant user needs its merchant)."""
    open_the_office(evening_site, [], seed=7)
    password = add_demo_users(evening_site)
    with WebServer(evening_site.gateway, "127.0.0.1", 0) as web:
        yield web, password


def log_in(client: httpx.Client, name: str, password: str) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token})


def test_the_demo_stamps_its_users_on_the_wall_clock(
        evening_site: SimulatedSite, demo_web: tuple[WebServer, str]) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    users = evening_site.gateway.service.call(
        lambda: UserStore(evening_site.gateway.store.db).all())
    assert {u.username for u in users} == {name for name, _, _ in DEMO_USERS}
    for user in users:
        changed = datetime.fromisoformat(user.password_changed_at)
        assert before <= changed <= datetime.now(UTC), (user.username, changed)
    assert evening_site.clock.now() - datetime.now(UTC) > AHEAD - timedelta(minutes=5)


def test_every_printed_login_opens_its_home_page(demo_web: tuple[WebServer, str]) -> None:
    web, password = demo_web
    for name, role, _merchant in DEMO_USERS:
        with httpx.Client(base_url=web.url) as client:
            answer = log_in(client, name, password)
            assert answer.status_code == 303, (name, answer.text[:200])
            assert answer.headers["location"] == HOMES[role]
            home = client.get(HOMES[role])
            assert home.status_code == 200, (name, home.headers.get("location"))
            assert client.get("/api/me").json()["username"] == name


def test_a_new_password_sends_the_open_session_to_the_login_page_saying_why(
        evening_site: SimulatedSite, demo_web: tuple[WebServer, str]) -> None:
    web, password = demo_web
    with httpx.Client(base_url=web.url) as client:
        assert log_in(client, "guard", password).status_code == 303
        new_password = add_demo_users(evening_site)  # the demo served again: new password
        page = client.get("/lanes", follow_redirects=True)
        assert page.url.path == "/login"
        assert "Your password was changed" in page.text and "密码已更改" in page.text
        again = client.get("/login")  # said once, not on every later visit
        assert "Your password was changed" not in again.text
        assert log_in(client, "guard", new_password).status_code == 303
        assert client.get("/lanes").status_code == 200


def test_a_disabled_account_is_told_so(evening_site: SimulatedSite,
                                       demo_web: tuple[WebServer, str]) -> None:
    web, password = demo_web
    with httpx.Client(base_url=web.url) as client:
        assert log_in(client, "supervisor", password).status_code == 303
        evening_site.gateway.service.call(
            lambda: UserStore(evening_site.gateway.store.db).set_disabled("supervisor"))
        page = client.get("/sessions", follow_redirects=True)
        assert page.url.path == "/login"
        assert "This account has been disabled" in page.text


def test_chromium_logs_in_with_the_printed_password_and_is_told_of_a_new_one(
        browser: WebDriver, evening_site: SimulatedSite,  # noqa: F811 - the fixture
        demo_web: tuple[WebServer, str]) -> None:
    web, password = demo_web
    browser.delete_all_cookies()
    browser.get(f"{web.url}/login")
    browser.find_element(By.ID, "username").send_keys("manager")
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-submit").click()
    eventually(lambda: browser.current_url.endswith("/lanes"), "the manager's lanes page")
    browser.get(f"{web.url}/reports")
    assert browser.current_url.endswith("/reports")
    assert browser.find_elements(By.ID, "login-notice") == []
    add_demo_users(evening_site)
    browser.get(f"{web.url}/reports")
    eventually(lambda: "/login" in browser.current_url, "the login page")
    notice = browser.find_element(By.ID, "login-notice")
    assert "Your password was changed" in notice.text, text_of(browser)
