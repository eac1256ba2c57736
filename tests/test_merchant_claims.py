"""The merchant's till and the drivers' claim page, on the real web app over a real SQLite file:
a spend becomes the tariff's rule coupon, QR codes are printed once and claimed by plate under
the rules (one per car per visit, expiry, the shop's daily cap), refusals in both languages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.app import GatewayApp
from gateway.money.merchants import CouponGrant, rule_for_spend
from gateway.web import WebSettings, create_web_app
from parkguard.clock import ManualClock, utc_iso
from simulator.site import SimulatedSite
from tests.helpers import eventually
from tests.test_web_auth import add_people, csrf_of, login, unstarted_gateway

PLATE, OTHER = "粤B12345", "粤A54321"
MERCHANT = "m-tea"  # mia's shop (tests.test_web_auth.PEOPLE)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    with unstarted_gateway(tmp_path) as app:
        yield app


@pytest.fixture
def web(gateway: GatewayApp) -> Iterator[TestClient]:
    app = create_web_app(gateway, settings=WebSettings(), clock=gateway.clock)
    add_people(gateway)  # m-tea has ¥100: one ¥60-cap coupon at a time
    gateway.service.call(lambda: gateway.billing.merchants.top_up(
        MERCHANT, 100_000, actor="test", reason="enough for every coupon here"))
    with TestClient(app) as client:
        yield client


def clock_of(gateway: GatewayApp) -> ManualClock:
    assert isinstance(gateway.clock, ManualClock)
    return gateway.clock


def coupons(gateway: GatewayApp) -> list[dict[str, Any]]:
    return gateway.service.call(lambda: list(gateway.store.db.query(
        "SELECT * FROM merchant_coupons ORDER BY issued_at, coupon_id")))


def print_codes(web: TestClient, count: int = 3, **fields: str) -> list[str]:
    """Mia prints claim codes on her page; the codes as the page shows them, once."""
    page = web.get("/merchant").text
    shown = web.post("/merchant/claim-codes", data={
        "kind": "rule:spend_88", "count": str(count), "hours": "24",
        "csrf_token": csrf_of(page), **fields})
    assert shown.status_code == 200, shown.text
    links = re.findall(r'class="claim-link">([^<]+)<', shown.text)
    codes = re.findall(r"/claim\?c=([A-Z2-7]{16})", "".join(links))
    assert len(codes) == count
    return codes


def claim(web: TestClient, code: str, plate: str) -> Any:
    page = web.get("/claim", params={"c": code})
    return web.post("/claim", data={"c": code, "plate": plate, "csrf_token": csrf_of(page.text)})


def refusal(answer: Any) -> str:
    found = re.search(r'id="claim-error"[^>]*>(.*?)</p>', answer.text, re.S)
    assert found is not None, answer.text
    return found.group(1)


def test_the_till_types_what_was_spent_and_the_tariff_rule_becomes_the_coupon(
        gateway: GatewayApp, web: TestClient) -> None:
    assert login(web, "mia") == 303
    page = web.get("/merchant").text
    assert "消费满¥88.00：免费停车2小时（节假日3小时）" in page
    assert "Spend ¥88.00: 2 h free (3 h on holidays)" in page
    token = csrf_of(page)
    low = web.post("/merchant/spend", data={"plate": PLATE, "spent": "87.99",
                                            "csrf_token": token}).text  # redirected, flashed
    assert "消费¥87.99未满¥88.00" in low and "a spend of ¥88.00 or more" in low
    junk = web.post("/merchant/spend", data={"plate": PLATE, "spent": "abc", "csrf_token": token})
    assert "spent / 消费金额" in junk.text and coupons(gateway) == []

    page = web.post("/merchant/spend", data={"plate": PLATE, "spent": "128.50",
                                             "csrf_token": token}).text
    assert "已发券给 粤B1***5：免费停车2小时（节假日3小时）" in page and PLATE not in page
    [row] = coupons(gateway)
    assert (row["kind"], row["rule"], row["plate"], row["cap_fen"]) == (
        "rule", "spend_88", PLATE, WebSettings().coupon_cap_fen)
    [issued] = [e for e in gateway.audit.entries() if e.action == "coupon.issue"]
    assert issued.actor == "merchant:mia" and issued.reason == "spent ¥128.50: spend_88"
    offered = gateway.service.call(lambda: gateway.billing.merchants.coupons_for(PLATE))
    assert [str(c.as_tariff_coupon()) for c in offered] == ["rule:spend_88"]


def test_a_driver_claims_a_printed_code_for_the_plate_once(gateway: GatewayApp,
                                                             web: TestClient) -> None:
    assert login(web, "mia") == 303
    first, second, third = print_codes(web)
    stored = {row["code_hash"] for row in gateway.store.db.table("claim_codes").rows}
    assert not {first, second, third} & stored  # only their hashes are kept
    assert first not in web.get("/merchant").text  # shown once, on the page that made them
    web.post("/logout", data={"csrf_token": csrf_of(web.get("/merchant").text)})

    page = web.get("/claim", params={"c": first})
    assert page.status_code == 200
    assert "茶饮 Tea shop" in page.text and "免费停车2小时（节假日3小时）" in page.text
    assert "每车每次停车限领该商户一张" in page.text and "One coupon from this shop per car" \
        in page.text
    done = claim(web, first, "粤b·12345")
    assert done.status_code == 200 and 'id="claimed"' in done.text
    assert re.search(r'id="claimed-plate">粤B12345<', done.text)
    assert "出场时自动抵扣" in done.text
    # the next claim page of this browser has the plate filled in
    assert 'value="粤B12345"' in web.get("/claim", params={"c": second}).text

    again = claim(web, first, OTHER)
    assert again.status_code == 409 and "该券码已被领取" in refusal(again) \
        and "already been claimed" in refusal(again)
    twice = claim(web, second, PLATE)
    assert twice.status_code == 409
    assert "每车每次限领一张" in refusal(twice) and "one per car per visit" in refusal(twice)
    assert claim(web, second, OTHER).status_code == 200  # another car may
    rows = coupons(gateway)
    assert sorted((row["plate"], row["rule"]) for row in rows) == [
        (OTHER, "spend_88"), (PLATE, "spend_88")]
    actors = [e.actor for e in gateway.audit.entries() if e.action == "coupon.issue"]
    assert len(actors) == 2 and all(actor.startswith("claim:") for actor in actors)


def test_claim_refusals_name_the_rule_in_both_languages(gateway: GatewayApp,
                                                        web: TestClient) -> None:
    assert login(web, "mia") == 303
    codes = print_codes(web, count=4)
    unknown = web.get("/claim", params={"c": "A" * 16})
    assert unknown.status_code == 404 and "券码无效" in refusal(unknown) \
        and "not valid" in refusal(unknown)
    bad = claim(web, codes[0], "12345")
    assert bad.status_code == 400 and "车牌号无效" in refusal(bad) \
        and "not a valid plate" in refusal(bad)
    assert coupons(gateway) == []
    clock_of(gateway).advance(timedelta(hours=24))
    late = web.get("/claim", params={"c": codes[0]})
    assert "券码已过期" in refusal(late) and "has expired" in refusal(late)
    expired = claim(web, codes[0], PLATE)
    assert expired.status_code == 409 and "券码已过期" in refusal(expired)
    assert coupons(gateway) == []


def test_the_shops_daily_cap_holds_for_claims_and_the_till_and_resets_at_local_midnight(
        gateway: GatewayApp, web: TestClient) -> None:
    assert login(web, "max") == 303
    page = web.get("/admin/merchants").text
    web.post(f"/admin/merchants/{MERCHANT}/daily-cap", data={
        "daily_cap": "2", "reason": "promotion budget", "csrf_token": csrf_of(page)})
    assert 'name="daily_cap" value="2"' in web.get("/admin/merchants").text
    [terms] = [e for e in gateway.audit.entries() if e.action == "merchant.terms"]
    assert (terms.after, terms.reason) == ({"daily_cap": 2}, "promotion budget")
    web.post("/logout", data={"csrf_token": csrf_of(web.get("/admin/merchants").text)})

    assert login(web, "mia") == 303
    token = csrf_of(web.get("/merchant").text)
    web.post("/merchant/spend", data={"plate": PLATE, "spent": "88", "csrf_token": token})
    codes = print_codes(web, count=3)
    assert "今日已发 Given today</dt><dd id=\"issued-today\">1 / 2" in web.get("/merchant").text
    assert claim(web, codes[0], OTHER).status_code == 200
    capped = claim(web, codes[1], "粤C11111")
    assert capped.status_code == 409
    assert "今日停车券已发完" in refusal(capped) and "all of today" in refusal(capped)
    page = web.get("/claim", params={"c": codes[1]}).text
    assert "该商户每日限发 2 张" in page and "at most 2 a day" in page
    over = web.post("/merchant/spend", data={"plate": "粤C22222", "spent": "100",
                                             "csrf_token": token}).text
    assert "已达每日上限" in over and len(coupons(gateway)) == 2
    # 16:00 UTC is midnight in Shanghai: a new day, a new allowance
    clock = clock_of(gateway)
    clock.advance(timedelta(hours=13, minutes=59))
    assert claim(web, codes[1], "粤C11111").status_code == 409
    clock.advance(timedelta(minutes=1))
    assert utc_iso(clock.now()).endswith("T16:00:00.000Z")
    assert claim(web, codes[1], "粤C11111").status_code == 200


def test_claim_look_ups_count_against_the_pay_pages_limits(tmp_path: Path) -> None:
    with unstarted_gateway(tmp_path) as gateway:
        app = create_web_app(gateway, settings=WebSettings(pay_lookups_per_client=3),
                             clock=gateway.clock)
        with TestClient(app) as client:
            answers = [client.get("/claim", params={"c": f"{n:016d}"}).status_code
                       for n in range(4)]
    assert answers == [404, 404, 404, 429]


# --- end to end: the real broker, gateway and lanes -------------------------------------------


@pytest.mark.integration
def test_a_till_coupon_lets_the_shopper_out_free_and_charges_the_merchant_at_the_exit(
        site: SimulatedSite) -> None:
    """Spent ¥100 at the tea shop on a workday, parked 2 h: the rule's 2 h make it free, the
    barrier opens, and the shop pays the 2 h fee (¥9) when the car has left; the lanes drop
    the used coupon from their replicas."""
    gateway = site.gateway
    desk = gateway.billing.merchants
    assert site.drive("in1", PLATE).opened
    site.settle()
    gateway.service.call(lambda: desk.open_account("M001", name="茶饮", actor="manager",
                                                   reason="new tenant"))
    gateway.service.call(lambda: desk.top_up("M001", 10_000, actor="cashier",
                                             reason="deposit"))
    tariff = gateway.pricing.document.book.in_force(site.clock.now().date())
    assert tariff is not None
    coupon = gateway.service.call(lambda: desk.issue_coupon(
        "M001", PLATE, CouponGrant.for_rule(rule_for_spend(tariff, 10_000).code, cap_fen=6_000),
        expires_at=site.clock.now() + timedelta(hours=24), actor="merchant:M001",
        reason="spent ¥100.00"))
    out1 = site.lanes["out1"].node.replica
    eventually(lambda: [str(c) for c in out1._coupons.offered(PLATE, site.clock.now())]
               == ["rule:spend_88"], what="the coupon in lane out1's replica")
    site.clock.advance(timedelta(hours=2))
    leaving = site.drive("out1", PLATE)
    site.settle()
    assert (leaving.opened, leaving.fee_fen) == (True, 0)
    balance = gateway.service.call(lambda: desk.balance("M001"))
    assert (balance.prepaid_fen, balance.held_fen) == (10_000 - 900, 0)
    [row] = gateway.service.call(lambda: list(gateway.store.db.query(
        "SELECT state, applied_fen, charged_fen FROM merchant_coupons WHERE coupon_id = ?",
        [coupon.coupon_id])))
    assert row == {"state": "redeemed", "applied_fen": 900, "charged_fen": 900}
    eventually(lambda: out1._coupons.offered(PLATE, site.clock.now()) == [],
               what="the used coupon gone from lane out1's replica")
