"""Site → fleet: a site's Mosquitto bridges its tree to the NATS cluster's MQTT listener, the
stream keeps it, and a site whose uplink is cut queues and catches up."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.provision.bridge import BridgeConf, render_bridge
from fleet.natsconf import topic_to_subject
from fleet.stream import SUBJECTS
from tests.fleet.conftest import Fleet, run
from tests.fleet.traffic import SiteTraffic
from wire.contract.topics import lane_cmd, lane_event
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration


async def _stream_subjects(fleet: Fleet, want: int, timeout: float = 30.0) -> list[str]:
    """Every subject in the stream once it holds ``want`` messages of lane events."""
    nc = await fleet.admin()
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    try:
        while True:
            info = await js.stream_info("PARKGUARD")
            sub = await js.subscribe(SUBJECTS, ordered_consumer=True)
            seen: list[str] = []
            try:
                for _ in range(info.state.messages):
                    message = await sub.next_msg(timeout=5)
                    if message.subject.endswith(".event"):
                        seen.append(message.data.decode())
            finally:
                await sub.unsubscribe()
            if len(set(seen)) >= want or time.monotonic() > deadline:
                return seen
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


def _wait_bridged(fleet: Fleet, site: str) -> None:
    """The site's bridge is connected (its uplink relay has carried a connection)."""
    deadline = time.monotonic() + 20
    while fleet.uplinks[site].connections == 0:
        assert time.monotonic() < deadline, f"{site}: the bridge never dialled the fleet"
        time.sleep(0.05)


def test_the_topic_maps_to_the_subject_nats_uses() -> None:
    assert topic_to_subject(lane_event("mall-b2", "in1")) == "parkguard.v1.mall-b2.lane.in1.event"


def test_a_nats_bridge_sends_no_commands_out_and_knows_every_node() -> None:
    conf = render_bridge(BridgeConf(site="north", address="10.0.0.1", port=8883,
                                    cafile=Path("/b/fleet-ca.crt"), username="bridge-north",
                                    password="pw", fleet_kind="nats",
                                    other_nodes=("10.0.0.2:8883", "10.0.0.3:8883")))
    assert "address 10.0.0.1:8883 10.0.0.2:8883 10.0.0.3:8883\n" in conf
    assert "try_private false\n" in conf
    assert "topic parkguard/v1/north/lane/+/event out 1\n" in conf
    assert "topic parkguard/v1/north/# out" not in conf  # commands would echo back
    assert "topic parkguard/v1/north/lane/+/cmd in 1\n" in conf


def test_site_events_reach_the_stream_and_a_cut_uplink_catches_up(
        fleet: Callable[..., Fleet]) -> None:
    running = fleet("north")
    _wait_bridged(running, "north")
    traffic = SiteTraffic("north", running.brokers["north"])
    try:
        for _ in range(5):
            traffic.car()
        running.uplinks["north"].cut()
        for _ in range(20):  # the site goes on while cut off; its broker queues for the bridge
            traffic.car()
        running.uplinks["north"].restore()
        payloads = run(_stream_subjects(running, len(traffic.event_ids)))
    finally:
        traffic.close()
    ids = {p.split('"event_id":"')[1].split('"')[0] for p in payloads}
    assert ids == set(traffic.event_ids)


def test_a_bridge_user_may_write_only_its_own_site(fleet: Callable[..., Fleet]) -> None:
    running = fleet("north", "south")
    conf = running.cluster.workdir / "node1.conf"
    text = conf.read_text()
    assert 'publish: { allow: ["parkguard.v1.north.>"] }' in text
    assert 'allowed_connection_types: ["MQTT"]' in text
    assert oct(conf.stat().st_mode & 0o777) == "0o600"


def test_a_message_on_a_lanes_command_subject_reaches_the_lane(
        fleet: Callable[..., Fleet]) -> None:
    """The way back exists (transport only: signed fleet commands are not built yet)."""
    running = fleet("north")
    _wait_bridged(running, "north")
    got = threading.Event()
    lane = MqttBus(running.brokers["north"].address("lane-in1"), client_id="north-in1-cmd")
    lane.subscribe(lane_cmd("north", "in1"), lambda _topic, _payload: got.set())
    lane.start()

    async def send_until_delivered() -> None:
        nc = await running.admin()
        try:
            # The bridge subscribes once it is connected; until then NATS has no taker.
            while not got.is_set():
                await nc.publish(topic_to_subject(lane_cmd("north", "in1")), b"{}")
                await nc.flush()
                await asyncio.sleep(0.2)
        finally:
            await nc.close()

    try:
        run(asyncio.wait_for(send_until_delivered(), timeout=30))
    finally:
        lane.stop()
    assert got.is_set()
    log = "".join(path.read_text(errors="replace")
                  for path in running.cluster.workdir.glob("node*.log"))
    assert "Subscription Violation" not in log
