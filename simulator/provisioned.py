"""A locked-down site for the simulator and the tests: the same provisioning an installer runs.

The demo and the test fixtures never use an open broker: they provision a site
inventory (CA, TLS, one user per device, least-privilege ACLs) and start
Mosquitto with it, so every test exercises the ACLs a real site has.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from broker.provision.generate import ProvisionResult, provision_site
from broker.provision.inventory import (
    BrokerSpec,
    LaneSpec,
    MonitorSpec,
    PatrolReaderSpec,
    SensorSpec,
    SiteInventory,
)


def simulated_inventory(
    site: str,
    *,
    entry_lanes: Iterable[str],
    exit_lanes: Iterable[str],
    monitors: Iterable[str] = ("control-room",),
) -> SiteInventory:
    """The inventory of a simulated site: its lanes, a gateway, a fire and a flood node, a
    guards' patrol reader."""
    lanes = [LaneSpec(id=lane, direction="entry") for lane in entry_lanes]
    lanes += [LaneSpec(id=lane, direction="exit") for lane in exit_lanes]
    return SiteInventory(
        site=site,
        broker=BrokerSpec(address="localhost"),
        lanes=tuple(lanes),
        sensors=(SensorSpec(id="fire1", kind="fire_panel"), SensorSpec(id="flood1", kind="flood")),
        patrol_readers=(PatrolReaderSpec(id="patrol1", location="B1 guard booth"),),
        monitors=tuple(MonitorSpec(id=m, name="simulator watcher") for m in monitors),
    )


def provision_simulated_site(
    out_dir: Path,
    site: str,
    *,
    entry_lanes: Iterable[str],
    exit_lanes: Iterable[str],
    monitors: Iterable[str] = ("control-room",),
) -> ProvisionResult:
    """Provision (or reuse: re-running keeps every secret) a simulated site in ``out_dir``."""
    inventory = simulated_inventory(
        site, entry_lanes=entry_lanes, exit_lanes=exit_lanes, monitors=monitors
    )
    return provision_site(inventory, out_dir)
