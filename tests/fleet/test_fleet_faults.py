"""Faults, all at once, with three sites driving traffic: one NATS node killed (and back), the
fleet service SIGKILLed and restarted, one site's uplink cut while its cars keep coming.

Afterwards every site event is in PostgreSQL exactly once, the fleet's order of each site
(time, then lane seq) is the order the site published in, each lane's seq runs 1…55 with no
gap, and the fleet's revenue per site equals the site's own book (issue 26)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.fleet.conftest import Fleet, start_service
from tests.fleet.test_fleet_service import wait_for
from tests.fleet.traffic import SiteTraffic

pytestmark = pytest.mark.integration
SITES = ("north", "south", "east")


def _brokers(running: Fleet) -> str:
    """Which site brokers still run, and the end of the log of any that died."""
    said = []
    for site, broker in running.brokers.items():
        said.append(f"{site} broker running={broker.running}")
        if not broker.running:
            said.append(broker.log_path.read_text(errors="replace")[-1500:])
    return "; ".join(said)


@pytest.mark.skipif(
    os.environ.get("CI") == "true",
    reason="quarantined from CI on 2026-12-07: fails about 2 runs in 10 here (after the last "
           "phase the fleet stops catching up, or east's site broker stops acknowledging; "
           "docs/fleet.md, failure model). Run it by hand until that is found.")
@pytest.mark.timeout(300)  # the phases above take 20-40 s here, minutes on a loaded machine
def test_every_event_lands_once_in_order_and_the_money_adds_up(
        fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path) -> None:
    running = fleet(*SITES)
    # Unacknowledged messages come back after 2 s, so the restarted service catches up fast.
    config = running.write_config(fleet_dsn, ack_wait_s=2.0, batch=64)
    traffic = {site: SiteTraffic(site, running.brokers[site]) for site in SITES}
    log = tmp_path / "service.log"
    service = start_service(config, log)

    def cars(count: int) -> None:
        for _ in range(count):
            for site in SITES:
                traffic[site].car()

    try:
        cars(10)
        running.cluster.kill(0)  # the node every uplink dials first: bridges move on
        cars(10)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        cars(10)  # nobody consuming: the stream keeps it
        service = start_service(config, log)
        running.uplinks["east"].cut()
        cars(20)  # east's broker queues for its bridge
        running.cluster.restart(0)
        running.uplinks["east"].restore()
        cars(5)
        expected = {event_id for site in SITES for event_id in traffic[site].event_ids}
        try:
            wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'",
                     len(expected), timeout=120)
        except AssertionError as missing:
            raise AssertionError(f"{missing}; {_brokers(running)}") from None
        with psycopg.connect(fleet_dsn) as conn:
            stored = [row[0] for row in conn.execute(
                "SELECT event_id FROM events WHERE kind = 'lane_event'")]
            # The site's order is its own: time, then the lane's seq. Arrival order (the stream
            # sequence) can differ after a reconnect: Mosquitto resends an unacknowledged QoS 1
            # message behind later ones of its in-flight window (docs/fleet.md).
            order = conn.execute(
                "SELECT site, node, seq, event_id FROM events WHERE kind = 'lane_event' "
                "ORDER BY site, ts, seq").fetchall()
            revenue: dict[str, int] = dict(conn.execute(
                "SELECT site, sum(fee_fen) FROM payments GROUP BY site").fetchall())
            closed = conn.execute(
                "SELECT count(*) FROM sessions WHERE exited_at IS NOT NULL").fetchone()
    finally:
        for site in SITES:
            traffic[site].close()
        service.send_signal(signal.SIGTERM)
        service.wait(15)
    # The faults really happened: every bridge dialled again after node 1 died, east after
    # its cut as well.
    assert all(running.uplinks[site].connections >= 2 for site in SITES)
    assert len(stored) == len(set(stored)) == len(expected)
    assert set(stored) == expected
    for site in SITES:
        rows = [row for row in order if row[0] == site]
        assert [row[3] for row in rows] == traffic[site].event_ids, f"{site} out of order"
        for lane in ("in1", "out1"):  # every lane seq once, no gap
            assert [row[2] for row in rows if row[1] == lane] == list(range(1, 56))
        assert revenue[site] == traffic[site].book_fen
    assert sum(revenue.values()) == sum(t.book_fen for t in traffic.values())
    assert closed == (55 * len(SITES),)
