"""The drivers' pay page for Chinese drivers, on a running simulated site: the lot's name, the
province keypad and the new-energy toggle (a plain form: no JavaScript needed), the
itemised bill whose lines add up (a new-energy car's class adjustment included), the stay
as "3 小时 3 分", "did you mean" from the fuzzy matcher without telling more than the
page already does, no Pay button while a fire alarm suspends billing; and on the
dashboard, the cars inside with their fee so far and the session's itemised bill."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.web import WebSettings, create_web_app
from gateway.web.tickets import TicketSigner
from parkguard.clock import ManualClock
from simulator.site import SimulatedSite
from tests.conftest import SITE_START, TEST_SITE
from tests.test_web_alerts import SAFETY, panel
from tests.test_web_auth import add_people, csrf_of, login

pytestmark = pytest.mark.integration

PLATE = "粤B12345"
GREEN = "沪AD12345"  # a small new-energy plate: the mall's new_energy class, half price
LOT = "万象城B2停车场"
KEY = "a pay-page key of at least thirty-two characters"


@pytest.fixture
def fire_site(broker: MosquittoBroker, tmp_path: Path,
              test_site: ProvisionResult) -> Iterator[SimulatedSite]:
    """The ``site`` fixture's lanes and gateway, with a safety file (fire alarms) and the
    lot's name in the gateway's config."""
    safety = tmp_path / "safety.toml"
    safety.write_text(SAFETY, encoding="utf-8")
    unstarted = SimulatedSite(site=TEST_SITE, broker=broker.address, workdir=tmp_path,
                              clock=ManualClock(SITE_START), entry_lanes=("in1",),
                              exit_lanes=("out1",), safety_file=safety,
                              lane_keys=test_site.device("gateway").lane_keys)
    # the same gateway, told the lot's name and the site inventory's fire panel
    unstarted.gateway.store.close()
    config = unstarted.gateway_config.model_copy(update={
        "site_name": LOT, "sensors": dict(test_site.device("gateway").sensors)})
    unstarted.gateway_config = config
    unstarted.gateway = GatewayApp(config, clock=unstarted.clock, allow_simulated=True)
    with unstarted as running:
        yield running


@pytest.fixture
def web(fire_site: SimulatedSite) -> Iterator[TestClient]:
    app = create_web_app(fire_site.gateway, settings=WebSettings(secret_key=KEY),
                         clock=fire_site.clock)
    add_people(fire_site.gateway)
    with TestClient(app) as client:
        yield client


def park(site: SimulatedSite, plate: str, minutes: int) -> None:
    assert site.drive("in1", plate).opened  # 10:00 site time
    site.settle()
    site.clock.advance(timedelta(minutes=minutes))


def ticket(site: SimulatedSite, plate: str) -> str:
    bill = site.gateway.service.bill_for(plate)
    assert bill is not None
    return TicketSigner(KEY).issue(plate, bill.session_id, now=site.clock.now())


def rows(html: str) -> list[tuple[str, str, int]]:
    """The bill's lines as (kind, words, fen) and its totals as ("total", words, fen)."""
    found = []
    for kind, body in re.findall(r'<tr class="(?:line )?([a-z_ ]+)">(.*?)</tr>', html, re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", body, re.S)
        money = re.sub(r"<[^>]+>", "", cells[-1]).strip()
        sign = -1 if money.startswith("-") else 1
        fen = sign * int(money.lstrip("-¥").replace(".", ""))
        found.append((kind.split()[0], re.sub(r"<[^>]+>", "", cells[0]).strip(), fen))
    return found


def test_a_new_energy_bill_adds_up_line_by_line_with_the_stay_in_hours(
        fire_site: SimulatedSite, web: TestClient) -> None:
    park(fire_site, GREEN, 3 * 60 + 3)
    page = web.get("/pay", params={"plate": GREEN, "t": ticket(fire_site, GREEN),
                                   "lane": "out1"}).text
    assert f'<span class="brand" id="lot">{LOT}</span>' in page
    assert "停车 3 小时 3 分" in page and "Stay 3h 3m" in page
    lines = rows(page)
    kinds = [kind for kind, _words, _fen in lines]
    assert "class" in kinds  # the adjustment the old page left out (10 + 5 - 7.50 = 0)
    charged = [fen for kind, _w, fen in lines if kind in ("period", "free", "class")]
    assert sum(charged) == 750  # ¥15 for 3 h 3 min at the new-energy half price
    [(_k, _w, due)] = [row for row in lines if row[0] == "total"]
    assert due == sum(charged) == 750
    assert 'id="pay-button"' in page and "支付 ¥7.50 Pay" in page
    assert '<input type="hidden" name="lane" value="out1">' in page


def test_a_typed_plate_sees_the_same_amount_without_its_stay(
        fire_site: SimulatedSite, web: TestClient) -> None:
    park(fire_site, GREEN, 3 * 60 + 3)
    page = web.get("/pay", params={"plate": GREEN}).text
    lines = rows(page)
    assert [kind for kind, _w, _f in lines] == ["period", "total"]
    assert lines[0][2] == lines[1][2] == 750  # one folded fee line: no times, no class
    assert "小时" not in page and "分钟" not in page and "Entered" not in page


def test_the_keypad_and_new_energy_toggle_work_as_a_plain_form(
        fire_site: SimulatedSite, web: TestClient) -> None:
    park(fire_site, GREEN, 60)
    keypad = web.get("/pay").text
    provinces = re.findall(r'name="province" value="(.)"', keypad)
    assert len(provinces) == 32 and provinces[-1] == "使" and "粤" in provinces
    assert 'name="ne" value="1"' in keypad and 'src="/static/pay.js"' in keypad

    by_keypad = web.get("/pay", params={"province": "沪", "plate": "ad12345", "ne": "1"})
    assert by_keypad.status_code == 200 and 'id="pay-button"' in by_keypad.text
    assert '<h2 id="bill-plate">沪AD12345</h2>' in by_keypad.text
    assert 'value="沪" checked' in by_keypad.text and 'id="new-energy" checked' in by_keypad.text
    typed_whole = web.get("/pay", params={"province": "粤", "plate": "沪AD12345"})
    assert '<h2 id="bill-plate">沪AD12345</h2>' in typed_whole.text  # its own province wins

    short = web.get("/pay", params={"province": "粤", "plate": "B12345", "ne": "1"})
    assert short.status_code == 422
    assert "新能源车牌为8位" in short.text and "8 characters" in short.text
    broken = web.get("/pay", params={"province": "粤", "plate": "B1234"})
    assert broken.status_code == 422
    assert "车牌号有误" in broken.text and "position 7" in broken.text
    assert 'id="pay-button"' not in broken.text


def test_did_you_mean_offers_only_a_car_that_owes_money(
        fire_site: SimulatedSite, web: TestClient) -> None:
    park(fire_site, PLATE, 5)  # inside the 15 free minutes: owes nothing yet
    quiet = web.get("/pay", params={"plate": "粤B1234S"}).text
    assert 'id="nothing-due"' in quiet and "suggestion" not in quiet  # no more than exact
    fire_site.clock.advance(timedelta(hours=2))
    page = web.get("/pay", params={"plate": "粤B1234S"}).text  # S read for 5
    assert 'id="nothing-due"' in page
    found = re.search(r'id="suggestion">(.*?)</p>', page, re.S)
    assert found and "您是不是要找" in found.group(1) and f"Did you mean {PLATE}?" in found.group(1)
    assert f'href="/pay?plate={PLATE.replace("粤", "%E7%B2%A4")}' in found.group(1)
    far = web.get("/pay", params={"plate": "粤B99999"}).text
    assert "suggestion" not in far
    exact = web.get("/pay", params={"plate": PLATE}).text
    assert "suggestion" not in exact and 'id="pay-button"' in exact


def test_no_pay_button_while_a_fire_suspends_billing(fire_site: SimulatedSite,
                                                      web: TestClient) -> None:
    park(fire_site, PLATE, 3 * 60)
    token = ticket(fire_site, PLATE)
    before = web.get("/pay", params={"plate": PLATE, "t": token}).text
    assert 'id="pay-button"' in before
    panel(fire_site.gateway, fire=True)
    during = web.get("/pay", params={"plate": PLATE, "t": token}).text
    assert 'id="pay-button"' not in during
    assert "消防警报" in during and "billing is suspended" in during
    lines = rows(during)
    assert [kind for kind, _w, _f in lines][-2:] == ["suspended", "total"]
    assert lines[-1][2] == 0 == sum(fen for kind, _w, fen in lines[:-1]
                                    if kind not in ("subtotal", "total"))
    typed = web.get("/pay", params={"plate": PLATE}).text
    assert 'id="pay-button"' not in typed and 'id="suspended"' in typed
    refused = web.post("/pay", data={"plate": PLATE, "csrf_token": csrf_of(before)},
                       follow_redirects=False)
    assert refused.status_code == 303 and "/sim-pay/" not in refused.headers["location"]
    panel(fire_site.gateway, fire=False)


def test_cars_inside_show_the_fee_so_far_and_the_session_its_itemised_bill(
        fire_site: SimulatedSite, web: TestClient) -> None:
    park(fire_site, GREEN, 3 * 60)
    assert login(web, "gina") == 303
    inside = web.get("/sessions").text
    section = inside.split("场内车辆", 1)[1]
    assert "¥6.50" in section and "至今 so far · 3 小时" in section  # ¥13 at half price
    api = web.get("/api/sessions").json()
    [car] = api["inside"]
    assert car["so_far"]["fee_fen"] == 650 and car["so_far"]["stay_en"] == "3h"
    page = web.get(f"/sessions/{car['session_id']}").text
    kinds = [kind for kind, _w, _f in rows(page)]
    assert "class" in kinds and kinds[-1] == "total"
    assert "停车 3 小时" in page
