"""Least-privilege ACLs: what each device of a site may publish and receive.

Once Mosquitto has an ``acl_file`` it denies everything not granted, so the rules below are
the whole of what the bus allows. They are written once, as data, and rendered two ways:
as the ACL file (one ``user`` block per device, explicit topics for its own node, no
``pattern`` lines) and as the summary table in the docs, so the two cannot drift apart.

Identity comes from the topic, enforced here: a lane can only write under its own
``lane/{id}/``, a staff member can only acknowledge under ``ack/{their id}``. The gateway can
therefore trust *who* sent a message from *where* it arrived, without any payload field
that a compromised device could fake.

>>> from broker.provision.inventory import SiteInventory
>>> inv = SiteInventory.model_validate({"site": "s1", "broker": {"address": "gw"},
...                                     "lanes": [{"id": "in1", "direction": "entry"}]})
>>> block = render_acl(inv).split("user lane-in1")[1]
>>> [line for line in block.splitlines() if line.startswith("topic")][:2]
['topic write parkguard/v1/s1/lane/in1/event', 'topic write parkguard/v1/s1/lane/in1/state']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from broker.provision.inventory import DeviceKind, DeviceSpec, SiteInventory
from wire.contract.topics import ALARM_KINDS, discovery_node, site_root

Access = Literal["read", "write"]
#: Home Assistant discovery, outside the site tree (gateway/runtime/discovery.py).
DISCOVERY = "{prefix}/+/{node}/#"


@dataclass(frozen=True, slots=True)
class Rule:
    """One grant, as a template below ``parkguard/v1/{site}/``.

    ``{self}`` is the device's own node id; ``{lane}`` expands to every lane of the site
    (only the gateway has such rules). ``only`` limits a rule to one sensor kind.
    """

    access: Access
    template: str
    why: str
    only: Literal["fire_panel", "flood"] | None = None
    outside: bool = False
    """A topic outside the site tree (Home Assistant discovery): ``{prefix}`` is the
    inventory's discovery prefix, ``{node}`` the site's discovery node id."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A concrete ACL line for one device."""

    access: Access
    topic: str
    why: str

    def line(self) -> str:
        return f"topic {self.access} {self.topic}"


#: Every rule of the site, by device kind. Order is the order of the rendered file.
RULES: dict[DeviceKind, tuple[Rule, ...]] = {
    "gateway": (
        Rule("read", "#", "ingests events, decide requests, readings, taps and acks; "
             "watches every state"),
        Rule("write", "lane/{lane}/cmd", "signed barrier and display commands, to each lane"),
        Rule("write", "lane/{lane}/decide/reply", "answers each lane's decide requests"),
        Rule("write", "lane/{lane}/otp/reply", "answers each lane's one-time code requests"),
        Rule("write", "lane/{lane}/replica/#", "keeps each lane's offline replica current"),
        Rule("write", "lane/{lane}/evidence/get", "asks each lane for the images of a read"),
        *(Rule("write", f"alarm/{kind}", f"sets and clears the {kind} alarm")
          for kind in ALARM_KINDS),
        Rule("write", "alert/+", "raises, escalates and resolves alerts"),
        Rule("write", "gateway/availability", "its retained online/offline and Last Will"),
        Rule("write", DISCOVERY, "Home Assistant discovery configs of this site, retained",
             outside=True),
        Rule("write", "audit/head", "its audit chain's head, retained, for the fleet to keep"),
        Rule("write", "fleet/ack", "answers each signed fleet command: applied or refused"),
    ),
    "lane": (
        Rule("write", "lane/{self}/event", "its own events"),
        Rule("write", "lane/{self}/state", "its own retained state and Last Will"),
        Rule("write", "lane/{self}/decide", "asks the gateway to decide on a read"),
        Rule("read", "lane/{self}/cmd", "commands for this lane only"),
        Rule("read", "lane/{self}/decide/reply", "the gateway's answers to its requests"),
        Rule("write", "lane/{self}/otp", "asks the gateway to text or check a one-time code"),
        Rule("read", "lane/{self}/otp/reply", "the gateway's answers about one-time codes"),
        Rule("read", "lane/{self}/replica/#", "its offline replica"),
        Rule("read", "lane/{self}/evidence/get", "the gateway's requests for its images"),
        Rule("write", "lane/{self}/evidence/reply", "the images it kept of a read, to the "
             "gateway"),
        Rule("read", "alarm/+", "site alarms: a fire opens the barrier even without the gateway"),
        Rule("read", "gateway/availability", "whether to ask the gateway or decide alone at once"),
    ),
    "sensor": (
        Rule("write", "sensor/{self}/reading", "its own readings"),
        Rule("write", "sensor/{self}/state", "its own retained state and Last Will"),
        Rule("write", "alarm/fire", "the fire panel sets the fire alarm directly, so lanes "
             "open even with the gateway down", only="fire_panel"),
    ),
    "patrol": (
        Rule("write", "patrol/{self}/tap", "its own checkpoint taps"),
    ),
    "staff": (
        Rule("read", "alert/+", "alerts"),
        Rule("write", "alert/+/ack/{self}", "acknowledges an alert as itself"),
    ),
    "monitor": (
        Rule("read", "#", "watches the whole site, read-only (control-room screen, "
             "commissioning, tests)"),
        Rule("read", DISCOVERY, "Home Assistant's discovery configs of this site (Home "
             "Assistant logs in as a monitor)", outside=True),
    ),
}

#: What a site sends a NATS fleet (under its root): no commands (they would echo back), no
#: decide requests or replicas (site-local traffic the fleet has no use for). bridge.py says why.
NATS_OUTGOING = ("lane/+/event", "lane/+/state", "sensor/#", "patrol/#", "alarm/#", "alert/#",
                 "gateway/#", "audit/#", "fleet/ack")
#: Signed fleet commands (wire/fleet_command.py) come in on their own prefix, bridged ``in``
#: only: never sent out, so NATS has nothing of ours to echo back. On the site broker only
#: the uplink may write them and the gateway reads them.
FLEET_INCOMING = "fleet/command/+"
#: The uplink broker's login on the site broker (broker/provision/uplink.py); not a device id
#: (those are ``gateway`` or ``{kind}-{node}``), so it cannot clash with one.
UPLINK_USER = "uplink"


def uplink_outgoing(fleet_kind: str) -> tuple[str, ...]:
    """What goes to the fleet, below the site root: the uplink reads exactly this on the
    site broker and sends exactly this on (a NATS fleet gets less: bridge.py)."""
    return NATS_OUTGOING if fleet_kind == "nats" else ("#",)


#: The uplink broker's grants on the site broker, besides reading :func:`uplink_outgoing`.
UPLINK_RULES: tuple[Rule, ...] = (
    Rule("read", "{outgoing}", "what it sends on to the fleet: with a NATS fleet only "
         "`lane/+/event`, `lane/+/state`, `sensor/#`, `patrol/#`, `alarm/#`, `alert/#`, "
         "`gateway/#`, `audit/#`, `fleet/ack`; with a Mosquitto fleet `#`"),
    Rule("write", "lane/+/cmd", "lane commands from the fleet (a lane obeys only those signed "
         "with its own key)"),
    Rule("write", FLEET_INCOMING, "the fleet's signed commands, for the gateway"),
)


def uplink_grants(site: str, fleet_kind: str) -> Iterator[Grant]:
    """The site-broker grants of the ``uplink`` user: read what it sends the fleet, write
    what the fleet sends the site, nothing else."""
    root = site_root(site)
    for rule in UPLINK_RULES:
        topics = (uplink_outgoing(fleet_kind) if rule.template == "{outgoing}"
                  else (rule.template,))
        for topic in topics:
            yield Grant(rule.access, f"{root}/{topic}", rule.why)


#: What the site's bridge may do on the fleet broker (rendered by :mod:`bridge`).
BRIDGE_RULES: tuple[Rule, ...] = (
    Rule("write", "#", "forwards the whole site tree to the fleet"),
    Rule("read", "lane/+/cmd", "brings fleet commands for this site's lanes back"),
    Rule("read", "fleet/command/+", "brings the fleet's signed commands to this site's gateway"),
)


def grants(device: DeviceSpec, inventory: SiteInventory) -> Iterator[Grant]:
    """The concrete grants of one device, in rule order."""
    root = site_root(inventory.site)
    for rule in RULES[device.kind]:
        if rule.only is not None and rule.only != device.sensor_kind:
            continue
        if rule.outside:
            yield Grant(rule.access, rule.template.format(
                prefix=inventory.gateway.discovery_prefix,
                node=discovery_node(inventory.site)), rule.why)
        elif "{lane}" in rule.template:
            for lane in inventory.lanes:
                yield Grant(rule.access, f"{root}/{rule.template.format(lane=lane.id)}", rule.why)
        else:
            node = device.node or ""
            yield Grant(rule.access, f"{root}/{rule.template.format(self=node)}", rule.why)


def bridge_grants(site: str) -> Iterator[Grant]:
    """The fleet-side grants of one site's bridge user."""
    root = site_root(site)
    for rule in BRIDGE_RULES:
        yield Grant(rule.access, f"{root}/{rule.template}", rule.why)


def user_block(username: str, lines: Iterator[Grant]) -> str:
    """One ``user`` block of an ACL file; ``#`` lines say why each grant exists."""
    out = [f"user {username}"]
    why = None
    for grant in lines:
        if grant.why != why:  # a rule expanded per lane is explained once
            out.append(f"# {grant.why}")
            why = grant.why
        out.append(grant.line())
    return "\n".join(out) + "\n"


def render_acl(inventory: SiteInventory) -> str:
    """The site broker's ACL file: one block per device, deny by default."""
    parts = [
        f"# ParkGuard ACL for site {inventory.site}. Generated by `parkguard broker init`",
        "# from the site inventory; edits are overwritten on the next run.",
        "# Mosquitto denies every topic not granted below. No `pattern` lines: each device's",
        "# own topics are spelled out, so what a user may do is readable right here.",
        "",
    ]
    parts.extend(user_block(d.device_id, grants(d, inventory)) for d in inventory.devices())
    if inventory.fleet is not None:
        parts.append("# The uplink broker on this host, which carries the bridge to the fleet.")
        parts.append(user_block(UPLINK_USER, uplink_grants(inventory.site, inventory.fleet.kind)))
    return "\n".join(parts)


_PLACEHOLDER: dict[DeviceKind, str] = {
    "gateway": "", "lane": "{lane}", "sensor": "{node}", "patrol": "{reader}", "staff": "{staff}",
    "monitor": "{monitor}",
}
_WHO: dict[DeviceKind, str] = {
    "gateway": "gateway",
    "lane": "lane `lane-{lane}`",
    "sensor": "sensor `sensor-{node}`",
    "patrol": "patrol reader `patrol-{reader}`",
    "staff": "staff app `staff-{staff}`",
    "monitor": "monitor `monitor-{monitor}`",
}


def summary_table() -> str:
    """The ACL rules as a Markdown table, topics relative to ``parkguard/v1/{site}/``.

    ``docs/broker-provisioning.md`` embeds this text and a test keeps it current.
    """
    rows = [
        "| device | may | topic (under `parkguard/v1/{site}/`) | why |",
        "|---|---|---|---|",
    ]
    for kind, rules in RULES.items():
        for rule in rules:
            topic = rule.template.replace("{self}", _PLACEHOLDER[kind])
            who = _WHO[kind] + (f" (kind `{rule.only}` only)" if rule.only else "")
            verb = "publish" if rule.access == "write" else "receive"
            if rule.outside:  # spelled from the root, not under the site tree
                topic = "`{}` (outside the tree)".format(
                    rule.template.replace("{node}", "parkguard_{site}"))
            else:
                topic = f"`{topic}`"
            rows.append(f"| {who} | {verb} | {topic} | {rule.why} |")
    for rule in UPLINK_RULES:
        verb = "publish" if rule.access == "write" else "receive"
        topic = "what the fleet keeps" if rule.template == "{outgoing}" else f"`{rule.template}`"
        rows.append(f"| uplink broker `{UPLINK_USER}` (with `[fleet]`) | {verb} | {topic} "
                    f"| {rule.why} |")
    for rule in BRIDGE_RULES:
        verb = "publish" if rule.access == "write" else "receive"
        rows.append(
            f"| bridge `bridge-{{site}}` (on the fleet broker) | {verb} | `{rule.template}` "
            f"| {rule.why} |"
        )
    return "\n".join(rows) + "\n"
