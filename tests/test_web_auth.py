"""Dashboard login: hashed passwords, signed sessions, CSRF, the login rate limit, the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.users import users as users_cli
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.web import WebSettings, create_web_app
from gateway.web.users import UserStore
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings

START = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
#: Cheap argon2id parameters so the tests do not spend seconds hashing (production uses
#: argon2-cffi's defaults; verification reads the parameters from each hash).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
#: user name → (role, merchant id)
PEOPLE = {"gina": ("guard", None), "sam": ("supervisor", None), "max": ("manager", None),
          "mia": ("merchant", "m-tea")}


def add_people(gateway: GatewayApp) -> None:
    """One user per role, all with :data:`PASSWORD`; the merchant's account opened."""
    def add() -> None:  # on the gateway's worker: it owns the connection
        db = gateway.store.db
        UserStore.migrate(db)
        store = UserStore(db, hasher=FAST_HASHER)
        for name, (role, merchant) in PEOPLE.items():
            store.add(name, role, PASSWORD, merchant_id=merchant)

    # the merchant's account first: a merchant user is only for a merchant that exists
    gateway.service.call(lambda: gateway.billing.merchants.open_account(
        "m-tea", name="茶饮 Tea shop", actor="test", reason="test merchant"))
    gateway.service.call(add)
    gateway.service.call(lambda: gateway.billing.merchants.top_up(
        "m-tea", 10_000, actor="test", reason="test money"))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> int:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": name, "password": password,
                                         "csrf_token": token}, follow_redirects=False)
    return int(answer.status_code)


@contextmanager
def unstarted_gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    """A gateway that is built but not started (no broker needed): office actions run on
    the caller's thread."""
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1))
    app = GatewayApp(config, clock=ManualClock(START))
    try:
        yield app
    finally:
        app.store.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    with unstarted_gateway(tmp_path) as app:
        yield app


@pytest.fixture
def client(gateway: GatewayApp) -> Iterator[TestClient]:
    web = create_web_app(gateway, settings=WebSettings(login_max_failures=5))
    add_people(gateway)
    with TestClient(web) as test_client:
        yield test_client


def test_passwords_are_stored_as_argon2_hashes(gateway: GatewayApp, client: TestClient) -> None:
    rows = list(gateway.store.db.query("SELECT username, password_hash FROM users"))
    assert len(rows) == 4
    for row in rows:
        assert row["password_hash"].startswith("$argon2id$")
        assert PASSWORD not in row["password_hash"]


def test_login_sets_an_httponly_lax_session_cookie_and_logout_ends_it(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "gina", "password": PASSWORD,
                                         "csrf_token": token}, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/lanes"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/lanes").status_code == 200
    page = client.get("/lanes").text
    client.post("/logout", data={"csrf_token": csrf_of(page)})
    assert client.get("/lanes", follow_redirects=False).status_code == 303
    assert client.get("/api/lanes").status_code == 401


def test_wrong_password_and_unknown_user_are_refused_alike(client: TestClient) -> None:
    assert login(client, "gina", "wrong password!") == 401
    assert login(client, "nobody", PASSWORD) == 401
    assert client.get("/lanes", follow_redirects=False).headers["location"].startswith("/login")


def test_a_form_without_its_csrf_token_is_refused(client: TestClient) -> None:
    answer = client.post("/login", data={"username": "gina", "password": PASSWORD})
    assert answer.status_code == 403
    assert login(client, "sam") == 303
    assert client.post("/lanes/in1/open", data={"reason": "no token here"}).status_code == 403
    assert client.post("/lanes/in1/open", data={"reason": "forged", "csrf_token": "x" * 40}
                       ).status_code == 403
    answer = client.post("/api/lanes/in1/open", json={"reason": "no header"})
    assert answer.status_code == 403


def test_five_failures_lock_that_user_from_that_address(client: TestClient) -> None:
    for _ in range(5):
        assert login(client, "gina", "not the password") == 401
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "gina", "password": PASSWORD,
                                         "csrf_token": token})
    assert answer.status_code == 429
    assert "Too many failed logins" in answer.text and "15" in answer.text
    assert login(client, "sam") == 303  # other users are not locked out


def test_a_disabled_user_loses_the_session_at_once(gateway: GatewayApp,
                                                   client: TestClient) -> None:
    assert login(client, "gina") == 303
    UserStore(gateway.store.db).set_disabled("gina")
    assert client.get("/lanes", follow_redirects=False).status_code == 303
    assert login(client, "gina") == 401


def test_a_password_change_ends_open_sessions(gateway: GatewayApp, client: TestClient) -> None:
    assert login(client, "gina") == 303
    UserStore(gateway.store.db).set_password("gina", "another long password")
    assert client.get("/lanes", follow_redirects=False).status_code == 303
    assert login(client, "gina", "another long password") == 303


def test_cli_adds_lists_changes_and_disables_users(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'site = "test"\ndatabase = "{tmp_path / "gw.db"}"\n', encoding="utf-8")
    runner = CliRunner()
    base = ["--config", str(config)]
    done = runner.invoke(users_cli, ["add", *base, "gina", "--role", "guard",
                                     "--password-stdin"], input="a long secret word\n")
    assert done.exit_code == 0, done.output
    assert "a long secret word" not in done.output
    short = runner.invoke(users_cli, ["add", *base, "bob", "--role", "guard",
                                      "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 10" in short.output
    lonely = runner.invoke(users_cli, ["add", *base, "mia", "--role", "merchant",
                                       "--password-stdin"], input="a long secret word\n")
    assert lonely.exit_code == 1 and "--merchant" in lonely.output
    prompted = runner.invoke(users_cli, ["add", *base, "max", "--role", "manager"],
                             input="a long secret word\na long secret word\n")
    assert prompted.exit_code == 0, prompted.output
    assert runner.invoke(users_cli, ["passwd", *base, "gina", "--password-stdin"],
                         input="an even longer secret\n").exit_code == 0
    assert runner.invoke(users_cli, ["disable", *base, "gina"]).exit_code == 0
    listed = runner.invoke(users_cli, ["list", *base])
    assert listed.exit_code == 0
    assert "gina\tguard\t-\tdisabled" in listed.output
    assert "max\tmanager\t-\tenabled" in listed.output
    missing = runner.invoke(users_cli, ["disable", *base, "nobody"])
    assert missing.exit_code == 1 and "no user" in missing.output
