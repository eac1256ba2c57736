"""The exit finds the right car from a dirty read, refuses to guess, and survives a restart."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from gateway.app import GatewayApp
from parkguard.clock import ManualClock
from parkguard.core.plates import ocr_read
from simulator.site import SimulatedSite
from tests.conftest import SITE_START

pytestmark = pytest.mark.integration

START = SITE_START



def sessions(site: SimulatedSite) -> dict[str, dict[str, object]]:
    with site.gateway.store.reader() as db:
        return {str(row["plate"]): row for row in db.query("SELECT * FROM sessions")}


def enter(site: SimulatedSite, *plates: str) -> None:
    for plate in plates:
        assert site.drive("in1", plate).opened
        site.settle()


def test_a_dirty_exit_read_still_bills_and_closes_the_right_session(site: SimulatedSite) -> None:
    enter(site, "粤B12345", "湘A88888")
    site.clock.advance(timedelta(hours=1, minutes=30))
    passage = site.drive("out1", "粤B1234S")  # mud turned the 5 into an S
    site.settle()

    assert passage.opened and passage.fee_fen == 700
    closed = sessions(site)["粤B12345"]
    assert closed["state"] == "closed" and closed["fee_fen"] == 700
    assert closed["entry_read"] == "粤B12345" and closed["exit_read"] == "粤B1234S"
    evidence = json.loads(str(closed["exit_match"]))
    assert evidence["outcome"] == "match" and evidence["plate"] == "粤B12345"
    assert 0 < evidence["score"] <= 1.0
    assert sessions(site)["湘A88888"]["state"] == "open"


def test_two_equally_close_cars_are_never_guessed_between(site: SimulatedSite) -> None:
    enter(site, "粤B12345", "粤B12346")
    site.clock.advance(timedelta(hours=2))
    passage = site.drive("out1", "粤B1234?")  # last character unreadable
    site.settle()

    assert not passage.opened
    assert passage.reason == "plate_ambiguous"
    assert {row["state"] for row in sessions(site).values()} == {"open"}
    with site.gateway.store.reader() as db:
        decision = next(iter(db.query("SELECT * FROM decisions WHERE direction = 'exit'")))
    evidence = json.loads(decision["match"])
    assert evidence["outcome"] == "ambiguous"
    assert {c["plate"] for c in evidence["candidates"]} >= {"粤B12345", "粤B12346"}


def test_a_car_that_never_came_in_is_refused_even_if_a_similar_one_did(
    site: SimulatedSite,
) -> None:
    enter(site, "粤B12345")
    passage = site.drive("out1", "京Q77770")
    assert not passage.opened and passage.reason == "no_entry_record"


def test_a_restarted_gateway_still_knows_every_car_inside(site: SimulatedSite) -> None:
    enter(site, "粤B12345", "沪AD12345")
    site.stop()
    restarted = GatewayApp(site.gateway_config, clock=ManualClock(START), allow_simulated=True)
    try:
        inside = restarted.service.inside
        assert len(inside) == 2
        assert inside.session_of("粤B·12345") == sessions(site)["粤B12345"]["session_id"]
        result, session = inside.match(ocr_read("沪AD1234S"))
        assert result.outcome == "match" and session == sessions(site)["沪AD12345"]["session_id"]
    finally:
        restarted.store.close()


@pytest.mark.parametrize("read", ["#P12", "???"])
def test_a_garbled_entry_read_still_records_the_car_for_a_guard(
    site: SimulatedSite, read: str
) -> None:
    enter(site, read)
    with site.gateway.store.reader() as db:
        rows = list(db.query("SELECT * FROM sessions"))
        letters = list(db.query("SELECT * FROM dead_letters"))
    assert letters == []
    assert len(rows) == 1 and rows[0]["state"] == "open" and rows[0]["entry_read"] == read
    if read == "#P12":
        assert "the exit can match (read '#P12')" in rows[0]["review"]
    passage = site.drive("out1", read)
    assert passage.reason in {"payment_due", "no_entry_record"}
