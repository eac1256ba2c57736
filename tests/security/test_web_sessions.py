"""The dashboard's sessions, logins and pay page as an outside attacker meets them: a real
uvicorn server (``gateway.web.server.WebServer``) spoken to over HTTP(S) with httpx.

* a cookie saved before logout (or before a password change) is refused after it;
* login guesses are limited per account, per address and site-wide, and a forged
  ``X-Forwarded-For`` is believed only from a proxy named in ``forwarded_allow_ips``;
* served with TLS, the cookie is ``Secure`` and every answer carries HSTS;
* the pay page tells a typed plate only what is due, never whether or since when the car
  is inside, unless the ticket token is shown, and probing it is throttled;
* CSV cells a spreadsheet would run as formulas are made inert;
* a merchant user needs a merchant that exists.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from cli.users import users as users_cli
from gateway.app import GatewayApp
from gateway.config import WebConfig
from gateway.patrols.desk import StoredTap
from gateway.patrols.reports import PatrolReport, taps_csv
from gateway.records.cells import csv_cell
from gateway.records.reports import sessions_csv
from gateway.web import WebServer, WebSettings
from gateway.web.tickets import TicketSigner
from gateway.web.users import UserStore
from simulator.site import SimulatedSite
from tests.test_web_auth import PASSWORD, add_people, csrf_of, unstarted_gateway

NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
PLATE = "粤B12345"
KEY = "a site key of at least thirty-two characters"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    with unstarted_gateway(tmp_path) as app:
        add_people(app)
        yield app


def serve(gateway: GatewayApp, **settings: object) -> WebServer:
    return WebServer(gateway, "127.0.0.1", 0, settings=WebSettings(**settings)).start()  # type: ignore[arg-type]


def log_in(client: httpx.Client, name: str, password: str = PASSWORD,
           headers: dict[str, str] | None = None) -> httpx.Response:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token}, headers=headers or {})


def session_cookie(client: httpx.Client) -> str:
    value = client.cookies.get("parkguard_session")
    assert value, "no session cookie"
    return value


# --- sessions that end ------------------------------------------------------------------------


def test_a_cookie_saved_before_logout_is_refused_after_it(gateway: GatewayApp) -> None:
    with serve(gateway) as web, httpx.Client(base_url=web.url) as browser:
        assert log_in(browser, "gina").status_code == 303
        saved = session_cookie(browser)
        assert browser.get("/api/me").status_code == 200
        page = browser.get("/lanes").text
        assert browser.post("/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
        with httpx.Client(base_url=web.url, cookies={"parkguard_session": saved}) as thief:
            assert thief.get("/api/me").status_code == 401
            assert thief.get("/lanes").status_code == 303


def test_a_password_change_ends_every_other_session(gateway: GatewayApp) -> None:
    with serve(gateway) as web, httpx.Client(base_url=web.url) as office, \
            httpx.Client(base_url=web.url) as phone:
        assert log_in(office, "gina").status_code == 303
        assert log_in(phone, "gina").status_code == 303
        saved = session_cookie(phone)
        gateway.service.call(lambda: UserStore(gateway.store.db).set_password(
            "gina", "a brand new password"))
        assert office.get("/api/me").status_code == 401
        with httpx.Client(base_url=web.url, cookies={"parkguard_session": saved}) as thief:
            assert thief.get("/api/me").status_code == 401
        assert log_in(office, "gina", "a brand new password").status_code == 303
        assert office.get("/api/me").json()["username"] == "gina"


def test_sessions_are_kept_as_hashes_and_expire(gateway: GatewayApp) -> None:
    with serve(gateway, session_hours=1) as web, httpx.Client(base_url=web.url) as browser:
        assert log_in(browser, "sam").status_code == 303
        rows = list(gateway.store.db.query("SELECT * FROM web_sessions"))
        assert len(rows) == 1 and rows[0]["username"] == "sam"
        # the row is only valid until expires_at: move it into the past
        gateway.store.db.execute("UPDATE web_sessions SET expires_at = ?",
                                 ["2000-01-01T00:00:00.000Z"])
        assert browser.get("/api/me").status_code == 401


# --- the login rate limit ---------------------------------------------------------------------


def spray(client: httpx.Client, attempts: int, *, forged: bool) -> list[int]:
    """``attempts`` wrong passwords, each for another user name, each (if ``forged``) from
    another address as X-Forwarded-For claims."""
    statuses = []
    for n in range(attempts):
        headers = {"X-Forwarded-For": f"203.0.113.{n + 1}"} if forged else {}
        statuses.append(log_in(client, f"user{n}", "not the password", headers).status_code)
    return statuses


def test_thirty_wrong_passwords_over_sprayed_names_and_forged_addresses_are_refused(
        gateway: GatewayApp) -> None:
    with serve(gateway) as web, httpx.Client(base_url=web.url) as attacker:
        statuses = spray(attacker, 30, forged=True)
        assert statuses[:10] == [401] * 10
        assert statuses[10:] == [429] * 20, statuses
        # the right password from that address waits too: the address is locked
        assert log_in(attacker, "gina", headers={"X-Forwarded-For": "198.51.100.7"}
                      ).status_code == 429


def test_one_account_is_locked_whichever_address_the_guesses_come_from(
        gateway: GatewayApp) -> None:
    with serve(gateway, forwarded_allow_ips=("127.0.0.1",)) as web, \
            httpx.Client(base_url=web.url) as proxy:
        for n in range(5):  # a trusted proxy: each guess from a real, different address
            answer = log_in(proxy, "gina", "not the password",
                            {"X-Forwarded-For": f"203.0.113.{n + 1}"})
            assert answer.status_code == 401
        answer = log_in(proxy, "gina", headers={"X-Forwarded-For": "198.51.100.7"})
        assert answer.status_code == 429
        assert log_in(proxy, "sam", headers={"X-Forwarded-For": "198.51.100.7"}
                      ).status_code == 303


def test_the_site_wide_limit_stops_a_spray_from_many_real_addresses(
        gateway: GatewayApp) -> None:
    with serve(gateway, forwarded_allow_ips=("127.0.0.1",), login_max_failures_total=20) as web, \
            httpx.Client(base_url=web.url) as proxy:
        statuses = spray(proxy, 30, forged=True)
        assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 10, statuses


# --- TLS: Secure cookie and HSTS --------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "parkguard.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.now(UTC) - timedelta(hours=1))
            .not_valid_after(datetime.now(UTC) + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp_path / "web.crt", tmp_path / "web.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


def test_served_over_tls_the_cookie_is_secure_and_answers_carry_hsts(
        gateway: GatewayApp, tmp_path: Path) -> None:
    certfile, keyfile = self_signed(tmp_path)
    with serve(gateway, tls_certfile=certfile, tls_keyfile=keyfile) as web, \
            httpx.Client(base_url=web.url,
                         verify=ssl.create_default_context(cafile=str(certfile))) as browser:
        assert web.url.startswith("https://")
        page = browser.get("/login")
        assert page.headers["strict-transport-security"].startswith("max-age=")
        answer = log_in(browser, "gina")
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie
        assert "strict-transport-security" in answer.headers


def test_served_in_clear_there_is_no_hsts_and_a_forged_proto_changes_nothing(
        gateway: GatewayApp) -> None:
    with serve(gateway) as web, httpx.Client(base_url=web.url) as browser:
        page = browser.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" not in page.headers


def test_behind_a_trusted_tls_proxy_answers_carry_hsts(gateway: GatewayApp) -> None:
    with serve(gateway, forwarded_allow_ips=("127.0.0.1",), https_only=True) as web, \
            httpx.Client(base_url=web.url) as proxy:
        page = proxy.get("/login", headers={"X-Forwarded-Proto": "https"})
        assert "strict-transport-security" in page.headers
        assert "; secure" in page.headers["set-cookie"].lower()


def test_a_certificate_without_its_key_is_a_config_error_that_names_both() -> None:
    with pytest.raises(ValidationError) as caught:
        WebConfig(tls_certfile=Path("/etc/parkguard/web.crt"))
    assert "tls_certfile and tls_keyfile go together" in str(caught.value)
    assert WebConfig(forwarded_allow_ips=["127.0.0.1"]).forwarded_allow_ips == ["127.0.0.1"]
    assert WebConfig().forwarded_allow_ips == []  # no proxy is believed unless named


def test_listening_on_the_network_in_clear_is_warned_about(
        gateway: GatewayApp, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.web.server"):
        WebServer(gateway, "0.0.0.0", 0).stop()  # noqa: S104 - the case under test
        WebServer(gateway, "127.0.0.1", 0).stop()
    warned = [r.getMessage() for r in caplog.records if "without TLS" in r.getMessage()]
    assert len(warned) == 1 and "0.0.0.0" in warned[0]  # noqa: S104


# --- CSV cells ------------------------------------------------------------------------------


FORMULAS = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tTAB1", "\rCR12"]


def test_csv_cells_a_spreadsheet_would_run_are_made_inert(gateway: GatewayApp) -> None:
    db = gateway.store.db
    for n, plate in enumerate(FORMULAS):  # as lanes reported them
        db.table("sessions").insert({
            "session_id": f"s{n}", "plate": plate, "entry_lane": "in1",
            "entry_at": "2026-05-06T02:00:00.000Z", "state": "open", "fee_fen": -5})
    zone = ZoneInfo(gateway.config.timezone)
    revealed = list(csv.reader(io.StringIO(sessions_csv(db, NOW.date(), zone,
                                                        reveal_plates=True))))[1:]
    assert [row[1] for row in revealed] == ["'" + plate for plate in FORMULAS]
    assert all(row[9] == "-5" for row in revealed)  # numbers stay numbers
    assert csv_cell("-3") == "-3" and csv_cell("-3.5") == "-3.5" and csv_cell(-3) == -3
    with serve(gateway) as web, httpx.Client(base_url=web.url) as manager:
        assert log_in(manager, "max").status_code == 303
        download = manager.get("/reports/2026-05-06/sessions.csv")
        assert download.status_code == 200
        rows = list(csv.reader(io.StringIO(download.text.lstrip("\ufeff"))))[1:]
    assert len(rows) == len(FORMULAS)
    assert all(row[1].startswith("'") for row in rows)  # masked, and still inert


def test_patrol_csv_cells_from_readers_are_made_inert_too() -> None:
    tapped = NOW
    tap = StoredTap(reader="=r1", seq=1, tapped_at=tapped, received_at=tapped,
                    tag_id="=cmd|' /c calc'!A1", checkpoint=None, badge="@SUM(1)",
                    person=None, status="refused", reason="+unknown tag", counter=None,
                    flags=(), answers={})
    report = PatrolReport(title="t", start=tapped, end=tapped, generated_at=tapped,
                          zone="Asia/Shanghai", obligations=(), taps=(tap,), seq_gaps={})
    row = next(csv.DictReader(io.StringIO(taps_csv(report))))
    assert row["读卡器 reader"] == "'=r1"
    assert row["标签 tag"] == "'=cmd|' /c calc'!A1"
    assert row["工牌 badge"] == "'@SUM(1)" and row["原因 reason"] == "'+unknown tag"
    assert row["延迟分钟 delay min"] == "0"  # a number stays a number (also "-3")


# --- merchant users ------------------------------------------------------------------------


def test_a_merchant_user_needs_a_merchant_that_exists(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'site = "test"\ndatabase = "{tmp_path / "gw.db"}"\n', encoding="utf-8")
    answer = CliRunner().invoke(users_cli, [
        "add", "--config", str(config), "ghost", "--role", "merchant", "--merchant", "m-none",
        "--password-stdin"], input="a long secret word\n")
    assert answer.exit_code == 1
    assert "no merchant 'm-none'" in answer.output
    assert "a long secret word" not in answer.output


# --- the ticket token -------------------------------------------------------------------------


def test_a_ticket_token_proves_one_plate_one_session_until_it_expires() -> None:
    signer = TicketSigner("k" * 40)
    token = signer.issue("粤B12345", "sess-1", now=NOW, valid=timedelta(hours=1))
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)
    assert signer.proves(token, "粤B12345", "sess-1", now=NOW)
    assert not signer.proves(token, "粤B12346", "sess-1", now=NOW)
    assert not signer.proves(token, "粤B12345", "sess-2", now=NOW)
    assert not signer.proves(token, "粤B12345", "sess-1", now=NOW + timedelta(hours=2))
    assert not TicketSigner("j" * 40).proves(token, "粤B12345", "sess-1", now=NOW)
    assert not signer.proves(token[:-2] + "xx", "粤B12345", "sess-1", now=NOW)


# --- the pay page ---------------------------------------------------------------------------


def stay_shown(html: str) -> bool:
    """Whether a pay page tells when the car came or how long it stayed."""
    return "Entered" in html or "入场" in html or "分钟" in html or "10:00" in html


@pytest.mark.integration
def test_the_pay_page_shows_the_stay_only_with_the_ticket_token_and_throttles_probing(
        site: SimulatedSite) -> None:
    assert site.drive("in1", PLATE).opened  # 10:00 site time
    site.settle()
    site.clock.advance(timedelta(hours=2))
    bill = site.gateway.service.bill_for(PLATE)
    assert bill is not None and bill.stay_due_fen > 0
    token = TicketSigner(KEY).issue(PLATE, bill.session_id, now=site.clock.now())
    with WebServer(site.gateway, "127.0.0.1", 0, clock=site.clock,
                   settings=WebSettings(secret_key=KEY)) as web, \
            httpx.Client(base_url=web.url) as driver:
        typed = driver.get("/pay", params={"plate": PLATE})
        assert typed.status_code == 200 and 'id="bill-due"' in typed.text
        assert not stay_shown(typed.text)  # what is due, not since when
        ticket = driver.get("/pay", params={"plate": PLATE, "t": token})
        assert ticket.status_code == 200 and stay_shown(ticket.text)
        forged = driver.get("/pay", params={"plate": PLATE, "t": token[:-3] + "abc"})
        assert not stay_shown(forged.text)
        other = TicketSigner(KEY).issue("粤B99999", bill.session_id, now=site.clock.now())
        assert not stay_shown(driver.get("/pay", params={"plate": PLATE, "t": other}).text)

        answers = [driver.get("/pay", params={"plate": f"粤B{n:05d}"}) for n in range(200)]
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(200) == 20 - 4 and statuses.count(429) == 200 - 16, statuses
        assert all(not stay_shown(answer.text) for answer in answers)
        assert all("not-found" not in answer.text for answer in answers)
        assert answers[-1].headers["retry-after"] == "60"
        assert driver.get("/pay", params={"plate": PLATE, "t": token}).status_code == 429


def test_a_plate_not_inside_reads_like_one_that_owes_nothing(gateway: GatewayApp) -> None:
    with serve(gateway) as web, httpx.Client(base_url=web.url) as driver:
        page = driver.get("/pay", params={"plate": PLATE})
        assert page.status_code == 200
        assert 'id="nothing-due"' in page.text and "inside" not in page.text


def test_the_pay_page_has_a_site_wide_limit_too(gateway: GatewayApp) -> None:
    with serve(gateway, forwarded_allow_ips=("127.0.0.1",), pay_lookups_total=30) as web, \
            httpx.Client(base_url=web.url) as proxy:
        statuses = [proxy.get("/pay", params={"plate": f"粤B{n:05d}"},
                              headers={"X-Forwarded-For": f"203.0.113.{n + 1}"}).status_code
                    for n in range(40)]
        assert statuses == [200] * 30 + [429] * 10, statuses
