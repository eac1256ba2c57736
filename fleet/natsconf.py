"""Render one NATS node's configuration from the project's template (``nats/node.conf.template``).

Pure text in, text out: the cluster runner, the demo and an operator's install all render the
same file, so what the tests exercise is what runs. Subjects a user may touch are derived
from the site slug here, once.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from wire.contract.topics import check_segment

#: The subject root every site topic maps to (MQTT ``/`` becomes NATS ``.``).
SUBJECT_ROOT = "parkguard.v1"


class _Template(string.Template):
    # NATS's own config language uses ``$VAR``; ``@name`` stays unambiguous.
    delimiter = "@"


@dataclass(frozen=True, slots=True)
class NodePorts:
    """The four loopback ports of one node."""

    client: int
    cluster: int
    mqtt: int
    http: int


@dataclass(frozen=True, slots=True)
class NatsUser:
    """A login on the cluster: a site's bridge (MQTT only) or a fleet process (NATS only)."""

    name: str
    password: str
    role: Literal["bridge", "service", "admin"]
    site: str = ""


def site_subjects(site: str) -> str:
    return f"{SUBJECT_ROOT}.{check_segment(site, what='site')}.>"


def topic_to_subject(topic: str) -> str:
    """What NATS calls an MQTT topic of ours: ``/`` → ``.`` (our segments hold no dots)."""
    if "." in topic or " " in topic:
        raise ValueError(f"topic {topic!r} has a character NATS would escape")
    return topic.replace("/", ".")


def subject_to_topic(subject: str) -> str:
    return subject.replace(".", "/")


def _quoted(value: str, what: str) -> str:
    if any(char in value for char in "\"\\\n\r"):
        raise ValueError(f"{what} must not contain quotes, backslashes or line breaks")
    return f'"{value}"'


def _permissions(user: NatsUser) -> str:
    if user.role == "bridge":
        # Its own subtree out, its own lanes' commands in; MQTT only, so a stolen bridge
        # password cannot read the stream or another site through the NATS port. NATS 2.9
        # delivers a QoS 1 subscription through a JetStream consumer on $MQTT.sub.<id>: without
        # that grant the command subscription fails and NATS drops the bridge (docs/fleet.md).
        own = site_subjects(user.site)
        cmds = f"{SUBJECT_ROOT}.{user.site}.lane.*.cmd"
        fleet_cmds = f"{SUBJECT_ROOT}.{user.site}.fleet.command.*"
        return (f'permissions: {{ publish: {{ allow: ["{own}"] }}, '
                f'subscribe: {{ allow: ["{cmds}", "{fleet_cmds}", "$MQTT.sub.>"] }} }}, '
                'allowed_connection_types: ["MQTT"]')
    if user.role == "service":
        # The JetStream API, acks and reply inboxes, and the signed fleet commands
        # (``parkguard.v1.*.fleet.command.*``): nothing else in any site's tree.
        return ('permissions: { publish: { allow: ["$JS.API.>", "$JS.ACK.>", "_INBOX.>", '
                f'"{SUBJECT_ROOT}.*.fleet.command.*"] }}, '
                'subscribe: { allow: ["_INBOX.>"] } }, '
                'allowed_connection_types: ["STANDARD"]')
    return 'allowed_connection_types: ["STANDARD"]'


def render_users(users: Sequence[NatsUser]) -> str:
    lines = []
    for user in users:
        name = _quoted(user.name, "user name")
        password = _quoted(user.password, "password")
        lines.append(f"    {{ user: {name}, password: {password}, {_permissions(user)} }}")
    return "\n".join(lines)


def render_node(
    index: int,
    nodes: Sequence[NodePorts],
    *,
    store_dir: Path,
    users: Sequence[NatsUser],
    tls: tuple[Path, Path] | None,
    host: str = "127.0.0.1",
    cluster_name: str = "parkguard-fleet",
    max_file_store: str = "1G",
) -> str:
    """Node ``index`` of ``nodes``; ``tls`` is (certificate, key) for the MQTT listener."""
    me = nodes[index]
    routes = "\n".join(f'    "nats-route://{host}:{other.cluster}"'
                       for position, other in enumerate(nodes) if position != index)
    mqtt_tls = ""
    if tls is not None:
        cert, key = tls
        mqtt_tls = (f"  tls {{\n    cert_file: {_quoted(str(cert), 'cert')}\n"
                    f"    key_file: {_quoted(str(key), 'key')}\n  }}")
    template = _Template(
        resources.files("fleet.nats").joinpath("node.conf.template").read_text("utf-8"))
    return template.substitute(
        server_name=f"{cluster_name}-{index + 1}",
        host=host,
        client_port=me.client,
        http_port=me.http,
        store_dir=str(store_dir),
        max_memory_store="64MB",
        max_file_store=max_file_store,
        cluster_name=cluster_name,
        cluster_port=me.cluster,
        routes=routes,
        mqtt_port=me.mqtt,
        mqtt_tls=mqtt_tls,
        replicas=min(3, len(nodes)),
        users=render_users(users),
    )
