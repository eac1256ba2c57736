"""The dashboard's role matrix and CSRF checks, kept as a probe suite.

Every GET route × every role (nobody logged in, guard, supervisor, manager, merchant,
cleaner) answers what the matrix says, and the matrix must name every GET route the app has, so a
new page cannot ship without a line here. Every POST route is refused without a CSRF token
and with a wrong one, for every role, and writes nothing; for a role that may use the route
the refusal is the CSRF check's own (so the check, not the role, is what is proved).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.app import GatewayApp
from gateway.web import WebSettings, create_web_app
from gateway.web.app import ROUTERS
from gateway.web.users import UserStore
from tests.test_web_auth import (
    FAST_HASHER,
    PASSWORD,
    PEOPLE,
    add_people,
    login,
    unstarted_gateway,
)

ANON = "nobody"
ROLES = (ANON, "guard", "supervisor", "manager", "merchant", "cleaner")
NAME_OF = {role: name for name, (role, _merchant) in PEOPLE.items()} | {"cleaner": "cleo"}
STAFF = {"guard", "supervisor", "manager"}
SENIOR = {"supervisor", "manager"}
MANAGER = {"manager"}
MERCHANT = {"merchant"}
CLEANING = {"cleaner", "supervisor", "manager"}
LOGGED_IN = STAFF | MERCHANT | {"cleaner"}
EVERYONE = set(ROLES)

#: GET route template → (a URL of it, the roles that may open it, what they get). The
#: simulated wallet (/sim-pay/...) is not here: it exists only in the demo and tests
#: (gateway.web.routers.sim_pay), never on a gateway like this one.
GETS: dict[str, tuple[str, set[str], int]] = {
    "/": ("/", EVERYONE, 303),
    "/login": ("/login", EVERYONE, 200),
    "/healthz": ("/healthz", EVERYONE, 200),
    "/metrics": ("/metrics", EVERYONE, 404),  # off unless [web] allows a scraper
    "/api/openapi.json": ("/api/openapi.json", STAFF, 200),
    "/api/me": ("/api/me", LOGGED_IN, 200),
    "/lanes": ("/lanes", STAFF, 200),
    "/api/lanes": ("/api/lanes", STAFF, 200),
    "/lanes/live": ("/lanes/live", STAFF, 200),
    "/lanes/reads/{event_id}.svg": ("/lanes/reads/no-such.svg", STAFF, 404),
    "/evidence/{event_id}/{image}.jpg": ("/evidence/no-such-read/plate.jpg", STAFF, 404),
    "/alerts": ("/alerts", STAFF, 200),
    "/incidents/report": ("/incidents/report", STAFF, 200),
    "/holds": ("/holds", STAFF, 200),  # no safety file: the page says holds are off
    "/handover": ("/handover", STAFF, 200),
    "/plans": ("/plans", STAFF, 200),  # no safety file: the page says so
    "/contacts": ("/contacts", STAFF, 200),
    "/api/alerts": ("/api/alerts", STAFF, 200),
    "/sessions": ("/sessions", STAFF, 200),
    "/api/sessions": ("/api/sessions?q=B123", STAFF, 200),
    "/api/bill": ("/api/bill?plate=粤B12345", STAFF, 404),
    "/sessions/{session_id}": ("/sessions/no-such", STAFF, 404),
    "/audit": ("/audit", SENIOR, 200),
    "/api/audit": ("/api/audit", SENIOR, 200),
    "/incidents": ("/incidents", SENIOR, 200),
    "/incidents/{incident_id}/photos/{file_name}": (
        "/incidents/inc-0000000000000000/photos/ph-0000000000000000.jpg", SENIOR, 404),
    "/patrols": ("/patrols", SENIOR, 200),
    "/api/patrols": ("/api/patrols", SENIOR, 404),  # no patrol file here: not configured
    "/cleaning": ("/cleaning", CLEANING, 200),  # no patrol file here: the page says so
    "/reports": ("/reports", MANAGER, 200),
    "/reports/{day}/summary.csv": ("/reports/2026-05-06/summary.csv", MANAGER, 200),
    "/reports/{day}/sessions.csv": ("/reports/2026-05-06/sessions.csv", MANAGER, 200),
    "/admin/merchants": ("/admin/merchants", MANAGER, 200),
    "/admin/passes": ("/admin/passes", MANAGER, 200),
    "/admin/refunds": ("/admin/refunds", MANAGER, 200),
    "/merchant": ("/merchant", MERCHANT, 200),
    "/merchant/statement": ("/merchant/statement?month=2026-05", MERCHANT, 200),
    "/api/merchant": ("/api/merchant", MERCHANT, 200),
    # the drivers' side and signed links: no account needed
    "/pay": ("/pay?plate=粤B12345", EVERYONE, 200),
    "/pay/done": ("/pay/done?plate=粤B12345", EVERYONE, 200),
    "/claim": ("/claim", EVERYONE, 200),
    "/pay/contact": ("/pay/contact?plate=粤B12345", EVERYONE, 404),  # no [contacts] here
    "/alerts/ack": ("/alerts/ack?t=forged", EVERYONE, 404),  # no safety file: disabled
}

#: POST route template → (a URL of it, the roles that get past the role check).
POSTS: dict[str, tuple[str, set[str]]] = {
    "/login": ("/login", EVERYONE),
    "/logout": ("/logout", EVERYONE),
    "/pay": ("/pay", EVERYONE),
    "/claim": ("/claim", EVERYONE),
    "/alerts/ack": ("/alerts/ack", EVERYONE),
    "/lanes/{lane}/open": ("/lanes/in1/open", STAFF),
    "/api/lanes/{lane}/open": ("/api/lanes/in1/open", STAFF),
    "/lanes/{lane}/cash": ("/lanes/out1/cash", STAFF),
    "/api/lanes/{lane}/cash": ("/api/lanes/out1/cash", STAFF),
    "/lanes/{lane}/waive": ("/lanes/out1/waive", SENIOR),
    "/api/lanes/{lane}/waive": ("/api/lanes/out1/waive", SENIOR),
    "/alerts/{alert_id}/ack": ("/alerts/a-1/ack", STAFF),
    "/alerts/fire/reset": ("/alerts/fire/reset", SENIOR),
    "/sessions/{session_id}/override": ("/sessions/s-1/override", SENIOR),
    "/incidents": ("/incidents", SENIOR),
    "/incidents/{incident_id}/photos": ("/incidents/i-1/photos", SENIOR),
    "/incidents/{incident_id}/contact": ("/incidents/i-1/contact", SENIOR),
    "/incidents/{incident_id}/{action}": ("/incidents/i-1/close", SENIOR),
    "/admin/merchants": ("/admin/merchants", MANAGER),
    "/admin/merchants/{merchant_id}/top-up": ("/admin/merchants/m-tea/top-up", MANAGER),
    "/admin/merchants/{merchant_id}/daily-cap": ("/admin/merchants/m-tea/daily-cap", MANAGER),
    "/admin/passes": ("/admin/passes", MANAGER),
    "/admin/passes/{pass_id}/revoke": ("/admin/passes/p-1/revoke", MANAGER),
    "/admin/lists": ("/admin/lists", MANAGER),
    "/admin/refunds": ("/admin/refunds", MANAGER),
    "/cleaning/tick": ("/cleaning/tick", CLEANING),
    "/incidents/report": ("/incidents/report", STAFF),
    "/holds": ("/holds", STAFF),
    "/holds/lift": ("/holds/lift", STAFF),
    "/handover": ("/handover", STAFF),
    "/handover/{handover_id}/accept": ("/handover/h-1/accept", STAFF),
    "/complaints/{incident_id}/callback": ("/complaints/i-1/callback", SENIOR),
    "/plans/equipment/{item}": ("/plans/equipment/ext-001", STAFF),
    "/plans/checklist/{item}": ("/plans/checklist/pumps", STAFF),
    "/plans/heavy-rain": ("/plans/heavy-rain", SENIOR),
    "/plans/drills": ("/plans/drills", SENIOR),
    "/plans/drills/{drill_id}/end": ("/plans/drills/d-1/end", SENIOR),
    "/contacts/tell": ("/contacts/tell", STAFF),
    "/contacts/{contact_id}/reveal": ("/contacts/c-1/reveal", SENIOR),
    "/contacts/{contact_id}/delete": ("/contacts/c-1/delete", SENIOR),
    "/contacts/delete-phone": ("/contacts/delete-phone", SENIOR),
    "/pay/contact": ("/pay/contact", EVERYONE),
    "/merchant/coupons": ("/merchant/coupons", MERCHANT),
    "/merchant/spend": ("/merchant/spend", MERCHANT),
    "/merchant/claim-codes": ("/merchant/claim-codes", MERCHANT),
}
#: Not cookie-authenticated, so not CSRF's business: the provider's notice is signed.
SIGNED_NOT_CSRF = {"/api/payments/callback"}
#: Plausible fields, so a refusal is not for a missing field.
FIELDS = {"username": "max", "password": "correct horse battery", "reason": "a good reason",
          "fee": "1", "plate": "粤B12345", "amount": "5", "kind": "amount_off",
          "merchant_id": "m-new", "name": "New shop", "t": "forged", "title": "a title"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayApp]:
    with unstarted_gateway(tmp_path_factory.mktemp("roles")) as app:
        add_people(app)
        app.service.call(lambda: UserStore(app.store.db, hasher=FAST_HASHER).add(
            "cleo", "cleaner", PASSWORD))
        yield app


@pytest.fixture(scope="module")
def clients(gateway: GatewayApp) -> Iterator[dict[str, TestClient]]:
    web = create_web_app(gateway, settings=WebSettings())
    opened: dict[str, TestClient] = {}
    for role in ROLES:
        client = TestClient(web)
        client.__enter__()
        if role != ANON:
            assert login(client, NAME_OF[role]) == 303
        opened[role] = client
    yield opened
    for client in opened.values():
        client.__exit__(None, None, None)


def routes(method: str) -> set[str]:
    """Every path the app's routers serve for ``method``."""
    return {route.path for area in ROUTERS for route in area.router.routes
            if isinstance(route, APIRoute) and method in (route.methods or set())}


def test_the_matrices_name_every_route() -> None:
    assert routes("GET") == set(GETS)
    assert routes("POST") == set(POSTS) | SIGNED_NOT_CSRF


@pytest.mark.parametrize("role", ROLES)
def test_every_page_answers_each_role_as_the_matrix_says(clients: dict[str, TestClient],
                                                         role: str) -> None:
    client = clients[role]
    wrong = []
    for url, allowed, ok in GETS.values():
        status = client.get(url, follow_redirects=False).status_code
        if role in allowed:
            expected = ok
        elif role == ANON:
            expected = 401 if url.startswith("/api/") else 303
        else:
            expected = 403
        if status != expected:
            wrong.append((url, status, expected))
    assert not wrong, f"{role}: (url, got, expected) {wrong}"


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("token", [None, "x" * 43], ids=["no-token", "bad-token"])
def test_every_post_without_a_good_csrf_token_is_refused_and_writes_nothing(
        gateway: GatewayApp, clients: dict[str, TestClient], role: str,
        token: str | None) -> None:
    client = clients[role]
    before = len(list(gateway.audit.entries()))
    wrong = []
    for url, allowed in POSTS.values():
        if url.startswith("/api/"):
            headers = {} if token is None else {"X-CSRF-Token": token}
            answer = client.post(url, json={"reason": "a good reason"}, headers=headers,
                                 follow_redirects=False)
        else:
            data = dict(FIELDS) if token is None else {**FIELDS, "csrf_token": token}
            answer = client.post(url, data=data, follow_redirects=False)
        if role in allowed:
            refused = answer.status_code == 403 and "CSRF" in answer.text
        elif role == ANON:
            refused = answer.status_code in (303, 401, 403) and answer.headers.get(
                "location", "/login").startswith("/login")
        else:
            refused = answer.status_code == 403
        if not refused:
            wrong.append((url, answer.status_code, answer.text[:80]))
    assert not wrong, f"{role}: {wrong}"
    assert len(list(gateway.audit.entries())) == before
    if role != ANON:
        assert client.get("/api/me").status_code == 200  # still logged in: nothing else moved


def test_the_payment_callback_is_refused_without_the_providers_signature(
        clients: dict[str, TestClient]) -> None:
    answer = clients[ANON].post("/api/payments/callback", content=b'{"order_id": "x"}',
                                headers={"X-Signature": "0" * 64})
    assert answer.status_code == 400


def test_a_session_cookie_from_another_key_is_nobody(gateway: GatewayApp,
                                                     tmp_path: Path) -> None:
    stolen = create_web_app(gateway, settings=WebSettings(secret_key="k" * 40))
    with TestClient(stolen) as forger:
        assert login(forger, "max") == 303
        cookie = forger.cookies.get("parkguard_session")
    victim = create_web_app(gateway, settings=WebSettings(secret_key="j" * 40))
    with TestClient(victim, cookies={"parkguard_session": cookie or ""}) as client:
        assert client.get("/api/me").status_code == 401
