"""Bridge a site to the fleet broker, so many sites are run from one place.

The bridge is carried by the site's **uplink broker** (:mod:`broker.provision.uplink`), a
second Mosquitto on the site host, never by the site broker itself: Mosquitto before 2.0.15
can hang for good on a TLS bridge fault (below), and the site broker carries the lanes, the
fire alarms and the gateway. The uplink broker takes the site's traffic from the site broker
over plain loopback MQTT (user ``uplink``, its own ACL) and dials out (a car park's network
lets connections out, rarely in):

- forwards the site tree ``parkguard/v1/{site}/#`` to the fleet, QoS 1 (a NATS fleet: less,
  below);
- brings back commands for its lanes, ``parkguard/v1/{site}/lane/+/cmd``, QoS 1.
- brings in the fleet's signed commands for its gateway, ``parkguard/v1/{site}/fleet/command/+``
  (``in`` only; the gateway answers on ``fleet/ack``, which goes out: docs/fleet.md).

Topics cross the bridge **unchanged**, without ``local-prefix``/``remote-prefix`` remapping.
The topic root already contains the site slug, so a topic means the same on both brokers:
fleet tools build topics with the same :mod:`wire.contract.topics` functions, logs and
dashboards can be compared line by line, and the fleet ACL can confine each site's bridge to
its own subtree. Prefix remapping would only help if sites shared one local tree, which the
contract rules out.

Commands from the fleet still carry the lane's HMAC signature, and only the site's gateway
and the lane hold that key: a compromised fleet broker can replay nothing a lane accepts and
cannot forge a barrier command. Loops are prevented by ``try_private`` (Mosquitto marks the
connection as a bridge and the fleet does not echo the bridge's own messages back; the
uplink's loopback bridge to the site broker sets it too).

On the fleet side the site needs one user (``bridge-{site}``) and one ACL block; both are
written by ``parkguard broker init`` into ``fleet/`` for the fleet operator to append.

When the fleet is a NATS cluster (``[fleet] kind = "nats"``, docs/fleet.md) its MQTT listener
refuses Mosquitto's private bridge flag, so ``try_private`` is off, and nothing would stop
NATS echoing our own commands back: the site then forwards only what the fleet keeps (lane
events and states, sensors, patrols, alarms, alerts, gateway availability, audit heads), never
``lane/+/cmd``, the decide traffic or the replicas. ``other_nodes`` are the cluster's other
MQTT listeners: Mosquitto tries them in turn when the one it had goes away.

Mosquitto before 2.0.15 (Debian 12 has 2.0.11) spins for good in its main loop, answering
nobody, when the far end closes a bridge's TLS connection before the handshake is done (a
balancer with no healthy node does; fixed upstream in 2.0.15, eclipse-mosquitto #2594). With
this bridge in the uplink broker only the uplink hangs: the site broker drops it for silence
and queues for it, and the restarted uplink catches up (docs/fleet.md, failure model;
tests/fleet/test_uplink_isolation.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from broker.provision.acl import FLEET_INCOMING, NATS_OUTGOING, bridge_grants, user_block
from wire.contract.topics import bridge_state, site_root

#: Seconds between keepalives on the bridge link: notice a dead uplink within a minute.
KEEPALIVE_S = 30
#: Reconnect back-off (Mosquitto's ``restart_timeout base cap``): first retry after 5 s,
#: then growing, never more than 60 s apart, with jitter so sites do not reconnect in step.
RESTART_BASE_S = 5
RESTART_CAP_S = 60


def connection_name(site: str) -> str:
    """The bridge's name on the uplink broker; unique per fleet, so it names the site."""
    return f"parkguard-{site}"


def notification_topic(site: str) -> str:
    """Where the bridge says ``1`` (up) or ``0`` (down), retained, on both brokers.

    Under the site tree so the fleet ACL already allows it and the fleet can tell which
    sites are cut off. (Mosquitto's default, ``$SYS/broker/connection/...``, would be a
    denied Last Will on the fleet broker, which refuses the whole connection.)
    """
    return bridge_state(site)


def outgoing_pattern(site: str) -> str:
    return f"{site_root(site)}/#"


def incoming_pattern(site: str) -> str:
    return f"{site_root(site)}/lane/+/cmd"


@dataclass(frozen=True, slots=True)
class BridgeConf:
    """One site-to-fleet bridge, as values (address and CA as the uplink broker sees them)."""

    site: str
    address: str
    port: int
    cafile: Path
    username: str
    password: str
    fleet_kind: str = "mosquitto"
    other_nodes: tuple[str, ...] = ()
    restart_base_s: int = RESTART_BASE_S
    restart_cap_s: int = RESTART_CAP_S


def _one_line(value: str, what: str, *, secret: bool = False) -> str:
    if "\n" in value or "\r" in value:
        shown = "" if secret else f": {value!r}"
        raise ValueError(f"{what} must not contain a line break{shown}")
    return value


def render_bridge(conf: BridgeConf) -> str:
    """The fleet bridge section of the uplink broker's ``mosquitto.conf`` (uplink.py)."""
    name = connection_name(conf.site)
    lines = [
        "# Bridge to the fleet broker: the site tree goes out, lane commands come back,",
        "# topics unchanged (they already carry the site). See broker/provision/bridge.py.",
        f"connection {name}",
        "address " + " ".join([f"{_one_line(conf.address, 'address')}:{conf.port}",
                               *(_one_line(node, "other node") for node in conf.other_nodes)]),
        "# TLS to the fleet, verified against the fleet's CA and its host name.",
        f"bridge_cafile {_one_line(str(conf.cafile), 'cafile')}",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        "bridge_protocol_version mqttv311",
        *_private(conf),
        f"remote_username {_one_line(conf.username, 'username')}",
        f"remote_password {_one_line(conf.password, 'password', secret=True)}",
        "# Client ids unique across the fleet; on the fleet use_username_as_clientid makes the",
        "# remote one the user name anyway.",
        f"remote_clientid {conf.username}",
        f"local_clientid {name}-local",
        "# Persistent sessions on both sides: while the fleet is out of reach this broker",
        "# queues for it (up to max_queued_messages) and the fleet queues commands for us.",
        "cleansession false",
        "start_type automatic",
        f"keepalive_interval {KEEPALIVE_S}",
        f"restart_timeout {conf.restart_base_s} {conf.restart_cap_s}",
        "notifications true",
        f"notification_topic {notification_topic(conf.site)}",
        *_outgoing(conf),
        f"topic {incoming_pattern(conf.site)} in 1",
        f"topic {site_root(conf.site)}/{FLEET_INCOMING} in 1",
    ]
    return "\n".join(lines) + "\n"


def _private(conf: BridgeConf) -> list[str]:
    if conf.fleet_kind == "nats":
        return ["# NATS refuses the private bridge flag; no loop: commands are not sent out.",
                "try_private false"]
    return ["# Tell the fleet this is a bridge, so it never echoes our own messages back "
            "(no loops).", "try_private true"]


def _outgoing(conf: BridgeConf) -> list[str]:
    if conf.fleet_kind == "nats":
        root = site_root(conf.site)
        return [f"topic {root}/{leaf} out 1" for leaf in NATS_OUTGOING]
    return [f"topic {outgoing_pattern(conf.site)} out 1"]


def fleet_acl_grants(site: str) -> Iterator[tuple[str, str]]:
    """(access, topic) pairs the site's bridge user needs on the fleet broker."""
    for grant in bridge_grants(site):
        yield grant.access, grant.topic


def render_fleet_acl_block(site: str, username: str) -> str:
    """The ``user`` block the fleet broker's ACL file needs for this site's bridge.

    Write the whole site tree (that is what the bridge forwards, including its own
    ``bridge/state`` Last Will), read only this site's lane commands: a site can neither
    publish into another site's tree nor read anything but its own commands.
    """
    header = f"# Site {site}'s bridge. Generated by `parkguard broker init`.\n"
    return header + user_block(username, bridge_grants(site))
