"""Home Assistant MQTT discovery: the gateway describes the site's lanes, sensors, alarms and
occupancy as Home Assistant entities, in retained ``{prefix}/{component}/parkguard_{site}/
{object}/config`` messages (docs/integrations.md, "Home Assistant").

Why the gateway and not each device: it alone knows the whole site (every lane from its
keys, every sensor node and its kind from the inventory), and a lane or a Pico should not
carry Home Assistant's vocabulary. The entities read the topics our devices already publish
(a lane's retained ``state``, its ``event`` stream, a sensor's ``reading`` and ``state``, the
retained site alarms, the retained capacity), with a ``value_template`` that turns our JSON
into Home Assistant's state; nothing new is published for them. All are read-only: nothing
in Home Assistant can open a barrier.

The configs are made by :func:`discovery_configs` (pure, no IO) and published retained on
every connect by :class:`Discovery`, so a broker that lost its retained store (persistence
off, a new broker) has them again as soon as the gateway is back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import Field

from parkguard import __version__
from parkguard.configfile import StrictModel
from wire.bus import Bus
from wire.contract import topics

SensorKind = Literal["fire_panel", "flood"]

#: ``{{ value_json.online }}`` as Home Assistant's availability words.
ONLINE_TEMPLATE: Final = "{{ 'online' if value_json.online else 'offline' }}"


class HomeAssistantSettings(StrictModel):
    """``[homeassistant]`` in the gateway's config: Home Assistant MQTT discovery."""

    enabled: bool = Field(default=False, description="publish discovery configs on connect")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Home Assistant's discovery prefix (its MQTT integration's setting); the "
                    "site inventory's [gateway] discovery_prefix must say the same, or the "
                    "broker's ACL drops the configs")


def node_id(site: str) -> str:
    """The discovery ``node_id`` of every config of a site: what the broker ACL grants on."""
    return topics.discovery_node(site)


@dataclass(frozen=True, slots=True)
class Entity:
    """One discovery config: where it goes and what it says."""

    component: Literal["binary_sensor", "sensor"]
    object_id: str
    config: dict[str, Any]

    def topic(self, prefix: str, site: str) -> str:
        return f"{prefix}/{self.component}/{node_id(site)}/{self.object_id}/config"

    def payload(self) -> bytes:
        return json.dumps(self.config, ensure_ascii=False, sort_keys=True).encode()


def _device(site: str, ident: str, name: str, model: str, *, via: bool = True
            ) -> dict[str, Any]:
    device: dict[str, Any] = {"identifiers": [f"{node_id(site)}_{ident}"], "name": name,
                              "manufacturer": "ParkGuard", "model": model}
    if via:
        device["via_device"] = f"{node_id(site)}_gateway"
    else:
        device["sw_version"] = __version__
    return device


def _entity(component: Literal["binary_sensor", "sensor"], site: str, object_id: str,
            name: str, device: dict[str, Any], state_topic: str, template: str,
            availability: list[dict[str, str]] | None = None, **extra: Any) -> Entity:
    config: dict[str, Any] = {
        "name": name, "unique_id": f"{node_id(site)}_{object_id}", "device": device,
        "state_topic": state_topic, "value_template": template, **extra}
    if availability:
        config["availability"] = availability
        config["availability_mode"] = "all"
    return Entity(component, object_id, config)


def discovery_configs(site: str, *, lanes: Iterable[str], sensors: Mapping[str, SensorKind],
                      capacity_lane: str | None = None) -> list[Entity]:
    """Every entity of the site: the gateway's connectivity and the site's fire and flood
    alarms; each lane's barrier, connectivity and last plate read; each fire panel's fire
    and trouble inputs and each flood node's water level; the occupancy and free spaces when
    the gateway keeps capacity (read from ``capacity_lane``'s retained capacity)."""
    gateway_topic = topics.gateway_availability(site)
    gateway_up = [{"topic": gateway_topic, "value_template": "{{ value_json.state }}"}]
    hub = _device(site, "gateway", f"ParkGuard {site} 网关 gateway", "site gateway", via=False)
    entities = [
        _entity("binary_sensor", site, "gateway", "网关 Gateway", hub, gateway_topic,
                "{{ 'ON' if value_json.state == 'online' else 'OFF' }}",
                device_class="connectivity", entity_category="diagnostic"),
        _entity("binary_sensor", site, "fire_alarm", "火警 Fire alarm", hub,
                topics.alarm(site, "fire"), "{{ 'ON' if value_json.active else 'OFF' }}",
                device_class="safety"),
        _entity("binary_sensor", site, "flood_alarm", "水浸 Flood alarm", hub,
                topics.alarm(site, "flood"), "{{ 'ON' if value_json.active else 'OFF' }}",
                device_class="moisture"),
    ]
    if capacity_lane is not None:
        occupancy = topics.lane_replica(site, capacity_lane, "capacity")
        entities += [
            _entity("sensor", site, "occupied", "场内车辆 Cars inside", hub, occupancy,
                    "{{ value_json.occupied }}", gateway_up, unit_of_measurement="cars",
                    state_class="measurement", icon="mdi:car-multiple"),
            _entity("sensor", site, "free", "空余车位 Free spaces", hub, occupancy,
                    "{{ value_json.free }}", gateway_up, unit_of_measurement="spaces",
                    state_class="measurement", icon="mdi:parking"),
        ]
    for lane in sorted(lanes):
        state = topics.lane_state(site, lane)
        lane_up = [{"topic": state, "value_template": ONLINE_TEMPLATE}]
        device = _device(site, f"lane_{lane}", f"ParkGuard {site} 车道 lane {lane}",
                         "lane node")
        entities += [
            _entity("binary_sensor", site, f"lane_{lane}_barrier", f"道闸 Barrier {lane}",
                    device, state,
                    "{% if value_json.barrier == 'closed' %}OFF{% elif value_json.barrier "
                    "== 'unknown' %}None{% else %}ON{% endif %}", lane_up,
                    device_class="opening"),
            _entity("binary_sensor", site, f"lane_{lane}_online", f"在线 Online {lane}",
                    device, state, "{{ 'ON' if value_json.online else 'OFF' }}",
                    device_class="connectivity", entity_category="diagnostic"),
            _entity("sensor", site, f"lane_{lane}_plate", f"最近车牌 Last plate {lane}",
                    device, topics.lane_event(site, lane),
                    "{% if value_json.type == 'plate_read' %}{{ value_json.plate or '' }}"
                    "{% else %}{{ this.state }}{% endif %}", lane_up, icon="mdi:card-text"),
        ]
    for node, kind in sorted(sensors.items()):
        reading, node_up = topics.sensor_reading(site, node), [
            {"topic": topics.sensor_state(site, node), "value_template": ONLINE_TEMPLATE}]
        if kind == "fire_panel":
            device = _device(site, f"sensor_{node}", f"ParkGuard {site} 消防 fire panel "
                             f"{node}", "fire-panel node")
            entities += [
                _entity("binary_sensor", site, f"sensor_{node}_fire", f"火警输入 Fire {node}",
                        device, reading, _flag("fire"), node_up, device_class="smoke"),
                _entity("binary_sensor", site, f"sensor_{node}_trouble",
                        f"故障 Trouble {node}", device, reading, _flag("trouble"), node_up,
                        device_class="problem", entity_category="diagnostic"),
            ]
        else:
            device = _device(site, f"sensor_{node}", f"ParkGuard {site} 水位 flood {node}",
                             "flood node")
            entities.append(_entity(
                "sensor", site, f"sensor_{node}_water", f"水位 Water level {node}", device,
                reading, "{{ value_json.water_level_mm }}", node_up,
                unit_of_measurement="mm", device_class="distance", state_class="measurement"))
    return entities


def _flag(field: str) -> str:
    """A fire-panel input (every reading of a panel carries all of them)."""
    return f"{{{{ 'ON' if value_json.{field} else 'OFF' }}}}"


class Discovery:
    """Publishes the site's discovery configs, retained, on every connect of ``bus``."""

    def __init__(self, bus: Bus, site: str, prefix: str, entities: list[Entity]) -> None:
        self._bus = bus
        self._messages = [(entity.topic(prefix, site), entity.payload())
                          for entity in entities]

    def start(self) -> None:
        """Before or after the bus starts: now if connected, and on each connect."""
        self._bus.when_connected(self.publish)
        if self._bus.connected.is_set():
            self.publish()

    def publish(self) -> None:
        for topic, payload in self._messages:
            self._bus.publish(topic, payload, qos=1, retain=True)

    @property
    def topics(self) -> list[str]:
        return [topic for topic, _ in self._messages]
