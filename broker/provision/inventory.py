"""The site inventory: every device that may connect to a site's broker, loaded from TOML.

The inventory is the single source of truth for who is on the bus. The broker's users,
ACLs, certificates and each device's bundle are all generated from it, so adding a lane
means adding four lines here and re-running ``parkguard broker init``.

>>> inv = SiteInventory.model_validate({
...     "site": "mall-b2",
...     "broker": {"address": "gw.mall-b2.lan"},
...     "lanes": [{"id": "in1", "direction": "entry"}],
... })
>>> [d.device_id for d in inv.devices()]
['gateway', 'lane-in1']
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pydantic import Field, field_validator, model_validator

from broker.mosquitto_conf import MAX_PACKET_SIZE, MAX_QUEUED_MESSAGES
from parkguard.configfile import StrictModel, load_config
from wire.contract.topics import check_segment

DeviceKind = Literal["gateway", "lane", "sensor", "patrol", "staff", "monitor"]

#: Host names a certificate may name: RFC 1123 labels, no trailing dot, no wildcard.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)

#: Always in the broker's certificate, so tools on the broker host itself can verify it.
LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def _segment(value: str, what: str) -> str:
    """Ids become topic segments and user names: same grammar as the wire contract."""
    return check_segment(value, what=what)


def _host(value: str) -> str:
    """A host must be an IP address or a DNS name, or TLS hostname checks can never pass."""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise ValueError(f"{value!r} is neither an IP address nor a valid host name")
    return value.lower()


class BrokerSpec(StrictModel):
    """Where the site broker listens and the limits it enforces."""

    address: str = Field(
        description="host name or IP address the devices use to reach the broker; "
        "it goes into every device bundle and into the broker's certificate",
    )
    port: int = Field(default=8883, ge=1, le=65535, description="TLS listener port")
    extra_names: tuple[str, ...] = Field(
        default=(),
        description="other host names or IPs the broker is reached by (all go into the "
        "certificate); localhost, 127.0.0.1 and ::1 are always added",
    )
    local_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="optional plain (no TLS) listener bound to 127.0.0.1 for tools on the "
        "broker host; passwords and ACLs still apply. Off unless set",
    )
    max_packet_size: int = Field(
        default=MAX_PACKET_SIZE,
        ge=1024,
        le=16 * 1024 * 1024,
        description="largest MQTT packet in bytes; a client sending a bigger one is disconnected",
    )
    max_queued_messages: int = Field(
        default=MAX_QUEUED_MESSAGES,
        ge=100,
        le=10_000_000,
        description="QoS 1 messages kept per offline persistent client before dropping",
    )

    @field_validator("address")
    @classmethod
    def _address_is_a_host(cls, value: str) -> str:
        return _host(value)

    @field_validator("extra_names")
    @classmethod
    def _names_are_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_host(name) for name in value)

    @model_validator(mode="after")
    def _ports_differ(self) -> BrokerSpec:
        if self.local_port is not None and self.local_port == self.port:
            raise ValueError(f"broker.local_port {self.local_port} is also broker.port")
        return self

    def certificate_names(self) -> tuple[str, ...]:
        """Every name and address the server certificate must carry, without repeats."""
        names = (self.address, *self.extra_names, *LOOPBACK_NAMES)
        return tuple(dict.fromkeys(names))


class GatewaySpec(StrictModel):
    """The site gateway: reads the whole site tree, commands lanes, raises alarms and alerts."""

    location: str = Field(default="", max_length=200, description="where it is installed")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Home Assistant's MQTT discovery prefix: the gateway may publish its "
        "configs under {prefix}/+/parkguard_{site}/ and monitors may read them "
        "(docs/integrations.md); the gateway's [homeassistant] says the same")


class LaneSpec(StrictModel):
    """One lane node (a Raspberry Pi at a gate)."""

    id: str = Field(description="lane id, a topic segment, e.g. in1")
    direction: Literal["entry", "exit"] = Field(description="entry or exit lane")
    location: str = Field(default="", max_length=200, description="where the lane is")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _segment(value, "lane id")


class SensorSpec(StrictModel):
    """One sensor node; its kind decides which alarm, if any, it may raise itself."""

    id: str = Field(description="sensor node id, a topic segment, e.g. fire1")
    kind: Literal["fire_panel", "flood"] = Field(
        description="fire_panel: interface to the fire alarm panel, may set the fire alarm "
        "itself; flood: water level / pump node, reports readings only",
    )
    location: str = Field(default="", max_length=200, description="where the node is")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _segment(value, "sensor node id")


class PatrolReaderSpec(StrictModel):
    """One handheld NFC patrol reader carried by a guard."""

    id: str = Field(description="reader id, a topic segment, e.g. reader1")
    location: str = Field(default="", max_length=200, description="guard post it belongs to")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _segment(value, "patrol reader id")


class StaffSpec(StrictModel):
    """One staff app user (a phone): reads alerts, acknowledges them."""

    id: str = Field(description="user id, a topic segment, e.g. zhang-wei")
    name: str = Field(min_length=1, max_length=100, description="display name")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _segment(value, "staff id")


class MonitorSpec(StrictModel):
    """A read-only watcher of the whole site tree: a control-room screen, an installer's
    laptop during commissioning, a test's observer. It can publish nothing."""

    id: str = Field(description="monitor id, a topic segment, e.g. control-room")
    name: str = Field(default="", max_length=100, description="what or who it is")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _segment(value, "monitor id")


class FleetSpec(StrictModel):
    """The fleet broker this site bridges its topic tree to (optional)."""

    address: str = Field(description="fleet broker host name or IP; must match its certificate")
    port: int = Field(default=8883, ge=1, le=65535, description="fleet broker TLS port")
    ca_file: Path = Field(
        description="the fleet broker's CA certificate (PEM); relative paths are relative to "
        "the inventory file",
    )
    kind: Literal["mosquitto", "nats"] = Field(
        default="mosquitto",
        description="a Mosquitto, or the MQTT listener of the fleet's NATS cluster "
        "(docs/fleet.md)")
    other_nodes: tuple[str, ...] = Field(
        default=(), max_length=8,
        description="the cluster's other nodes as host:port, tried in turn when the one "
        "before is down (same certificate names apply)")
    uplink_port: int = Field(
        default=1885, ge=1, le=65535,
        description="the uplink broker's own listener on 127.0.0.1 (it carries the bridge; "
        "nobody logs in, a probe sees it answer). The uplink dials the site broker on "
        "broker.local_port, 1884 when that is not set")

    @field_validator("address")
    @classmethod
    def _address_is_a_host(cls, value: str) -> str:
        return _host(value)

    @field_validator("other_nodes")
    @classmethod
    def _nodes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        nodes = []
        for node in value:
            host, sep, port = node.rpartition(":")
            if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{node!r} is not host:port")
            nodes.append(f"{_host(host)}:{int(port)}")
        return tuple(nodes)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


def _unique(items: Sequence[_HasId], section: str) -> None:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.id in seen:
            raise ValueError(
                f"{section}[{index}].id {item.id!r} is already used by {section}[{seen[item.id]}]"
            )
        seen[item.id] = index


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One broker user derived from the inventory: its id is its user name and client id."""

    device_id: str
    kind: DeviceKind
    node: str | None
    """Lane, sensor, reader or staff id; ``None`` for the gateway."""
    sensor_kind: Literal["fire_panel", "flood"] | None = None


def device_id(kind: DeviceKind, node: str | None) -> str:
    """``lane-in1``, ``sensor-fire1``, ``patrol-reader1``, ``staff-zhang-wei``,
    ``monitor-control-room``, ``gateway``.

    The kind prefix keeps user names unique even when a lane and a sensor share an id.
    """
    if kind == "gateway":
        return "gateway"
    if node is None:
        raise ValueError(f"a {kind} device needs a node id")
    return f"{kind}-{node}"


class SiteInventory(StrictModel):
    """Everything that may connect to one site's broker."""

    site: str = Field(description="site slug; the topic root is parkguard/v1/{site}")
    broker: BrokerSpec = Field(description="the site broker")
    gateway: GatewaySpec = Field(default=GatewaySpec(), description="the site gateway")
    lanes: tuple[LaneSpec, ...] = Field(min_length=1, description="lane nodes, at least one")
    sensors: tuple[SensorSpec, ...] = Field(default=(), description="sensor nodes")
    patrol_readers: tuple[PatrolReaderSpec, ...] = Field(default=(), description="NFC readers")
    staff: tuple[StaffSpec, ...] = Field(default=(), description="staff app users")
    monitors: tuple[MonitorSpec, ...] = Field(default=(), description="read-only watchers")
    fleet: FleetSpec | None = Field(default=None, description="bridge to a fleet broker")

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return _segment(value, "site")

    @model_validator(mode="after")
    def _uplink_ports_are_free(self) -> SiteInventory:
        if self.fleet is None:
            return self
        if self.site_local_port() == self.broker.port:
            raise ValueError(f"broker.port {self.broker.port} is the loopback listener the "
                             "uplink broker needs: set broker.local_port to another port")
        if self.fleet.uplink_port in (self.broker.port, self.site_local_port()):
            raise ValueError(f"fleet.uplink_port {self.fleet.uplink_port} is also a port of "
                             "the site broker")
        return self

    def site_local_port(self) -> int | None:
        """The site broker's plain loopback listener: the inventory's, or 1884 with a fleet
        (the uplink broker dials it; passwords and ACLs apply)."""
        if self.broker.local_port is not None or self.fleet is None:
            return self.broker.local_port
        return 1884

    @field_validator("lanes")
    @classmethod
    def _lanes_unique(cls, value: tuple[LaneSpec, ...]) -> tuple[LaneSpec, ...]:
        _unique(value, "lanes")
        return value

    @field_validator("sensors")
    @classmethod
    def _sensors_unique(cls, value: tuple[SensorSpec, ...]) -> tuple[SensorSpec, ...]:
        _unique(value, "sensors")
        return value

    @field_validator("patrol_readers")
    @classmethod
    def _readers_unique(cls, value: tuple[PatrolReaderSpec, ...]) -> tuple[PatrolReaderSpec, ...]:
        _unique(value, "patrol_readers")
        return value

    @field_validator("staff")
    @classmethod
    def _staff_unique(cls, value: tuple[StaffSpec, ...]) -> tuple[StaffSpec, ...]:
        _unique(value, "staff")
        return value

    @field_validator("monitors")
    @classmethod
    def _monitors_unique(cls, value: tuple[MonitorSpec, ...]) -> tuple[MonitorSpec, ...]:
        _unique(value, "monitors")
        return value

    def devices(self) -> Iterator[DeviceSpec]:
        """Every broker user of the site, gateway first, in inventory order."""
        yield DeviceSpec(device_id("gateway", None), "gateway", None)
        for lane in self.lanes:
            yield DeviceSpec(device_id("lane", lane.id), "lane", lane.id)
        for sensor in self.sensors:
            yield DeviceSpec(device_id("sensor", sensor.id), "sensor", sensor.id, sensor.kind)
        for reader in self.patrol_readers:
            yield DeviceSpec(device_id("patrol", reader.id), "patrol", reader.id)
        for person in self.staff:
            yield DeviceSpec(device_id("staff", person.id), "staff", person.id)
        for monitor in self.monitors:
            yield DeviceSpec(device_id("monitor", monitor.id), "monitor", monitor.id)

    def bridge_username(self) -> str:
        """The user the site's bridge logs in as on the fleet broker: unique per site."""
        return f"bridge-{self.site}"


def load_inventory(path: Path) -> SiteInventory:
    """Read a site inventory TOML file; errors name the file, the field and the reason.

    A relative ``fleet.ca_file`` is resolved against the inventory's directory, so the
    inventory and the fleet CA can travel together.
    """
    inventory = load_config(SiteInventory, path)
    if inventory.fleet is not None and not inventory.fleet.ca_file.is_absolute():
        fleet = inventory.fleet.model_copy(
            update={"ca_file": (path.parent / inventory.fleet.ca_file).resolve()}
        )
        inventory = inventory.model_copy(update={"fleet": fleet})
    return inventory
