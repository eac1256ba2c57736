"""Faults, all at once, with three sites driving traffic: one NATS node killed (and back), the
fleet service SIGKILLed and restarted, one site's uplink cut while its cars keep coming.

Afterwards every site event is in PostgreSQL exactly once, the fleet's order of each site
(time, then lane seq) is the order the site published in, each lane's seq runs 1…55 with no
gap, and the fleet's revenue per site equals the site's own book (issue 26)."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from tests.fleet.conftest import Fleet, run, start_service
from tests.fleet.test_fleet_service import wait_for
from tests.fleet.traffic import SiteTraffic

pytestmark = pytest.mark.integration
SITES = ("north", "south", "east")


def _brokers(running: Fleet) -> str:
    """Which site and uplink brokers still run, and the end of the log of any that died."""
    said = []
    for kind, brokers in (("site", running.brokers), ("uplink", running.uplink_brokers)):
        for site, broker in brokers.items():
            said.append(f"{site} {kind} broker running={broker.running}")
            if not broker.running:
                said.append(broker.log_path.read_text(errors="replace")[-1500:])
    return "; ".join(said)


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
        # The fleet has run before its first fault: NATS made its MQTT streams and each
        # bridge's session (a raft group killed in its first second can stay behind for good
        # in NATS 2.9.10, conftest.py), and the first cars are in PostgreSQL.
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'",
                 20 * len(SITES), timeout=120)
        running.cluster.kill(0)  # the node every uplink dials first: bridges move on
        cars(10)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        cars(10)  # nobody consuming: the stream keeps it
        service = start_service(config, log)
        running.uplinks["east"].cut()
        cars(20)  # east's uplink broker queues for the fleet
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


def _bridge_node(running: Fleet, user: str) -> int:
    """Which node carries ``user``'s MQTT connection (its monitoring /connz)."""
    for index, node in enumerate(running.cluster.nodes):
        url = f"http://127.0.0.1:{node.http}/connz?auth=true&limit=1024"
        with urllib.request.urlopen(url, timeout=5) as answer:
            connections = json.load(answer).get("connections") or []
        if any(c.get("authorized_user") == user for c in connections):
            return index
    raise AssertionError(f"{user} is connected to no node")


async def _lead_elsewhere(running: Fleet, avoid: int) -> int:
    """Move PARKGUARD's leader off node ``avoid``; the index of the node that leads it."""
    nc = await running.admin()
    try:
        js = nc.jetstream()
        for _ in range(20):
            leader = (await js.stream_info("PARKGUARD")).cluster
            name = leader.leader if leader is not None else None
            if name is not None:
                index = int(name.rsplit("-", 1)[1]) - 1
                if index != avoid:
                    return index
                await nc.request("$JS.API.STREAM.LEADER.STEPDOWN.PARKGUARD", b"", timeout=5)
            await asyncio.sleep(0.5)
    finally:
        await nc.close()
    raise AssertionError("PARKGUARD's leader would not move")


@pytest.mark.timeout(240)
def test_what_a_site_sends_while_the_stream_elects_a_leader_still_lands(
        fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path) -> None:
    """NATS 2.9 acknowledges a bridge's QoS 1 publish once its own ``$MQTT_msgs`` holds it,
    whether or not PARKGUARD (leaderless for seconds after its leader's node dies) stored the
    plain publish. The service reads ``$MQTT_msgs``: when it read PARKGUARD, the cars that
    crossed the bridge during the election never reached PostgreSQL (docs/fleet.md)."""
    running = fleet("north")
    traffic = SiteTraffic("north", running.brokers["north"])
    service = start_service(running.write_config(fleet_dsn), tmp_path / "service.log")
    try:
        traffic.car()
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 2,
                 timeout=120)
        bridge = _bridge_node(running, running.sites["north"].bridge.username)  # type: ignore[union-attr]
        leader = run(_lead_elsewhere(running, bridge))
        running.cluster.kill(leader)  # the bridge's node stays up and keeps taking its cars
        for _ in range(10):
            traffic.car()
        running.cluster.restart(leader)
        try:
            wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 22,
                     timeout=120)
        except AssertionError as missing:
            raise AssertionError(f"{missing}; {_brokers(running)}") from None
    finally:
        traffic.close()
        service.send_signal(signal.SIGTERM)
        service.wait(15)
    with psycopg.connect(fleet_dsn) as conn:
        seqs = [row[0] for row in conn.execute(
            "SELECT seq FROM events WHERE node = 'in1' ORDER BY seq")]
    assert seqs == list(range(1, 12))
