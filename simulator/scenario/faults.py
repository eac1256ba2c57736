"""One small function per fault a scenario injects, and the one that ends it.

Each acts on the running pieces only through what a real fault touches: a connection that
dies without a goodbye (the broker then publishes the Last Will), a process that is gone, a
broker that stops, a clock that jumps. What the site does about it is the code under test.

``gateway_kill`` is a real SIGKILL when the scenario runs its gateway as a process of its own
(``[site] gateway = "process"``); with the gateway in the runner's process (where the pay
page and the guards' desk are plain calls) it is played there: its MQTT connection vanishes
with nothing said, the object is abandoned, and a new gateway opens the same SQLite file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta

from gpiozero.pins.mock import MockFactory

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from parkguard.clock import ManualClock
from simulator.scenario.gateway_process import GatewayProcess
from simulator.scenario.links import Link
from simulator.site import SimulatedSite, build_lane
from wire.mqtt import BrokerAddress


def gateway_crash(site: SimulatedSite) -> None:
    """The gateway dies: its connection drops with no goodbye (lanes hear its Last Will and
    decide alone), then whatever it held in memory is gone."""
    site.gateway.bus.drop()  # type: ignore[attr-defined]  # an MqttBus on a real broker
    site.gateway.stop()  # on a dead link: nothing more reaches the broker


def gateway_sigkill(process: GatewayProcess) -> None:
    """The gateway process is SIGKILLed: whatever it had not committed is gone, the broker
    keeps its persistent session's messages and publishes its Last Will."""
    process.kill()


def gateway_back(site: SimulatedSite) -> None:
    """A new gateway process on the same database (what systemd's restart does)."""
    site.gateway = GatewayApp(site.gateway_config, clock=site.clock, allow_simulated=True)
    site.gateway.start()


def broker_stop(broker: MosquittoBroker) -> None:
    """Mosquitto goes down (persistence on): every device loses its connection."""
    broker.stop()


def broker_back(broker: MosquittoBroker) -> None:
    broker.start()


def lane_power_cut(site: SimulatedSite, lane: str) -> None:
    """The lane's power goes: its link dies without a goodbye and the node is gone; only its
    journal (SQLite, synchronous) survives."""
    node = site.lanes[lane].node
    node.bus.drop()  # type: ignore[attr-defined]  # an MqttBus on a real broker
    node.stop()


def lane_power_back(site: SimulatedSite, lane: str, *,
                    address_of: Callable[[str], BrokerAddress], keys: Mapping[str, bytes]) -> None:
    """Power back: a fresh lane node boots on its old journal (new board, same files) and
    replays what it had not sent."""
    old = site.lanes[lane]
    config = old.node.config
    fresh = build_lane(site=config.site, lane=lane, direction=config.direction,
                       address=address_of(f"lane-{lane}"),
                       clock=site.clock, factory=MockFactory(), command_key=keys.get(lane),
                       journal=config.journal_path())
    fresh.driver.payer = old.driver.payer
    site.lanes[lane] = fresh
    fresh.node.start()


def lane_partition(link: Link) -> None:
    """The lane's network is cut (its relay severs every connection and takes no new one):
    the lane works alone from its replica and journal, and keeps trying to reconnect."""
    link.sever()


def lane_partition_heals(link: Link) -> None:
    link.mend()


def disk_full(site: SimulatedSite, lane: str) -> None:
    """The lane's journal can grow no more: SQLite answers every write that needs a new page
    with SQLITE_FULL, as on a card with no space left (``max_page_count`` pinned to the
    file's size, on the journal's own connection)."""
    journal = site.lanes[lane].node.journal
    with journal._lock:
        pages = journal._db.execute("PRAGMA page_count").fetchone()[0]
        journal._db.execute(f"PRAGMA max_page_count={int(pages)}")


def disk_freed(site: SimulatedSite, lane: str) -> None:
    """Space again on the lane's card (the largest page count SQLite takes)."""
    journal = site.lanes[lane].node.journal
    with journal._lock:
        journal._db.execute("PRAGMA max_page_count=4294967294")


def clock_jump(clock: ManualClock, minutes: float) -> None:
    """The site's time leaps forward (an NTP correction after a dead RTC battery)."""
    clock.advance(timedelta(minutes=minutes))
