"""Topic builders and the parser for ``parkguard/v1/{site}/...``.

Every topic a process publishes or subscribes to is built here, so a typo
becomes an error at the call site rather than a silent message to nowhere.

>>> lane_event("mall-b2", "in1")
'parkguard/v1/mall-b2/lane/in1/event'
>>> parse_topic("parkguard/v1/mall-b2/lane/in1/event").kind
'lane_event'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from parkguard.errors import ContractError

ROOT: Final = "parkguard"
VERSION: Final = "v1"

ALARM_KINDS: Final = ("fire", "flood")

#: The parts of a lane's replica (``lane/{lane}/replica/{part}``), see docs/replicas.md:
#: the retained snapshot, the deltas after it, and the retained capacity (lot full).
REPLICA_PARTS: Final = ("snapshot", "delta", "capacity")

_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

TopicKind = Literal[
    "lane_event",
    "lane_state",
    "lane_cmd",
    "lane_decide",
    "lane_decide_reply",
    "lane_otp",
    "lane_otp_reply",
    "sensor_reading",
    "sensor_state",
    "patrol_tap",
    "alarm",
    "alert",
    "lane_replica",
    "alert_ack",
    "bridge_state",
    "gateway_availability",
    "audit_head",
    "lane_evidence_get",
    "lane_evidence_reply",
]


def check_segment(value: str, *, what: str) -> str:
    """Refuse ids that would break the topic tree (wildcards, slashes, upper case, empty)."""
    if not _SEGMENT.match(value):
        raise ContractError(
            f"{what} {value!r} is not a valid topic segment: use 1-32 characters of "
            "a-z, 0-9, '-' or '_', starting with a letter or digit"
        )
    return value


def site_root(site: str) -> str:
    return f"{ROOT}/{VERSION}/{check_segment(site, what='site')}"


def _lane(site: str, lane: str, leaf: str) -> str:
    return f"{site_root(site)}/lane/{check_segment(lane, what='lane')}/{leaf}"


def lane_event(site: str, lane: str) -> str:
    return _lane(site, lane, "event")


def lane_state(site: str, lane: str) -> str:
    return _lane(site, lane, "state")


def lane_cmd(site: str, lane: str) -> str:
    return _lane(site, lane, "cmd")


def lane_decide(site: str, lane: str) -> str:
    return _lane(site, lane, "decide")


def lane_decide_reply(site: str, lane: str) -> str:
    return _lane(site, lane, "decide/reply")


def lane_otp(site: str, lane: str) -> str:
    """A lane asks the gateway to text a one-time code to a phone, or to check one typed."""
    return _lane(site, lane, "otp")


def lane_otp_reply(site: str, lane: str) -> str:
    return _lane(site, lane, "otp/reply")


def lane_evidence_get(site: str, lane: str) -> str:
    """The gateway asks one lane for the images it kept of a read (docs/evidence.md)."""
    return _lane(site, lane, "evidence/get")


def lane_evidence_reply(site: str, lane: str) -> str:
    """A lane's answer: the pieces of its images of a read, or that it has none."""
    return _lane(site, lane, "evidence/reply")


def lane_replica(site: str, lane: str, part: str = "snapshot") -> str:
    """What the gateway tells one lane so it can decide alone (read by that lane only).

    ``part`` is one of :data:`REPLICA_PARTS`; the builder accepts any valid segment so the
    ACL tests can aim at parts nobody sends, but :func:`~wire.contract.messages.decode`
    refuses a part it has no model for.
    """
    return _lane(site, lane, f"replica/{check_segment(part, what='replica part')}")


def _sensor(site: str, node: str, leaf: str) -> str:
    return f"{site_root(site)}/sensor/{check_segment(node, what='sensor node')}/{leaf}"


def sensor_reading(site: str, node: str) -> str:
    return _sensor(site, node, "reading")


def sensor_state(site: str, node: str) -> str:
    return _sensor(site, node, "state")


def patrol_tap(site: str, reader: str) -> str:
    return f"{site_root(site)}/patrol/{check_segment(reader, what='patrol reader')}/tap"


def alarm(site: str, kind: str) -> str:
    if kind not in ALARM_KINDS:
        raise ContractError(f"alarm kind {kind!r} is not one of {', '.join(ALARM_KINDS)}")
    return f"{site_root(site)}/alarm/{kind}"


def alert(site: str, alert_id: str) -> str:
    return f"{site_root(site)}/alert/{check_segment(alert_id, what='alert id')}"


def alert_ack(site: str, alert_id: str, staff: str) -> str:
    """A staff member's acknowledgement; the staff id in the topic is what the ACL checks."""
    return f"{alert(site, alert_id)}/ack/{check_segment(staff, what='staff id')}"


def bridge_state(site: str) -> str:
    """Where the site's bridge to the fleet broker says whether it is up (``1``/``0``)."""
    return f"{site_root(site)}/bridge/state"


def gateway_availability(site: str) -> str:
    """Retained: whether the site's gateway is up (``online``) or gone (``offline``, its Last
    Will), so a lane decides from its replica at once instead of waiting out its deadline."""
    return f"{site_root(site)}/gateway/availability"


def audit_head(site: str) -> str:
    """Retained: the length and last hash of the site's audit chain, sent to the fleet so a
    chain rewritten from the start is caught against the fleet's copy (docs/fleet.md)."""
    return f"{site_root(site)}/audit/head"


def discovery_node(site: str) -> str:
    """The Home Assistant discovery ``node_id`` of a site's configs, outside the tree:
    ``{prefix}/{component}/parkguard_{site}/{object}/config`` (gateway/runtime/discovery.py);
    the broker ACL grants the gateway that subtree and no other site's."""
    return f"{ROOT}_{check_segment(site, what='site').replace('-', '_')}"


# Subscription filters ------------------------------------------------------


def all_lane(site: str, leaf: Literal["event", "state", "decide", "otp"]) -> str:
    """Filter for one leaf of every lane of a site, e.g. every lane's events."""
    return f"{site_root(site)}/lane/+/{leaf}"


def all_lane_evidence_replies(site: str) -> str:
    """Filter for every lane's evidence replies (what the gateway's fetcher hears)."""
    return f"{site_root(site)}/lane/+/evidence/reply"


def all_lane_replicas(site: str, part: str) -> str:
    """Filter for one replica part of every lane, e.g. what a control-room screen watches."""
    return f"{site_root(site)}/lane/+/replica/{check_segment(part, what='replica part')}"


def all_sensor(site: str, leaf: Literal["reading", "state"]) -> str:
    return f"{site_root(site)}/sensor/+/{leaf}"


def all_patrol_taps(site: str) -> str:
    return f"{site_root(site)}/patrol/+/tap"


def all_alarms(site: str) -> str:
    return f"{site_root(site)}/alarm/+"


def all_alerts(site: str) -> str:
    return f"{site_root(site)}/alert/+"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its site, its kind, and its node (lane, sensor, reader, alarm, alert)."""

    site: str
    kind: TopicKind
    node: str
    part: str = ""
    """The replica part (``snapshot``, ``delta``, ...) of a ``lane_replica`` topic, else ''."""


_BODIES: Final[tuple[tuple[str, TopicKind], ...]] = (
    (r"lane/(?P<node>[^/]+)/event", "lane_event"),
    (r"lane/(?P<node>[^/]+)/state", "lane_state"),
    (r"lane/(?P<node>[^/]+)/cmd", "lane_cmd"),
    (r"lane/(?P<node>[^/]+)/decide", "lane_decide"),
    (r"lane/(?P<node>[^/]+)/decide/reply", "lane_decide_reply"),
    (r"lane/(?P<node>[^/]+)/otp", "lane_otp"),
    (r"lane/(?P<node>[^/]+)/otp/reply", "lane_otp_reply"),
    (r"sensor/(?P<node>[^/]+)/reading", "sensor_reading"),
    (r"sensor/(?P<node>[^/]+)/state", "sensor_state"),
    (r"patrol/(?P<node>[^/]+)/tap", "patrol_tap"),
    (r"alarm/(?P<node>[^/]+)", "alarm"),
    (r"alert/(?P<node>[^/]+)", "alert"),
    (r"lane/(?P<node>[^/]+)/replica/(?P<part>[a-z0-9][a-z0-9_-]{0,31})", "lane_replica"),
    (r"alert/(?P<node>[^/]+)/ack/[a-z0-9][a-z0-9_-]{0,31}", "alert_ack"),
    (r"(?P<node>bridge)/state", "bridge_state"),
    (r"(?P<node>gateway)/availability", "gateway_availability"),
    (r"(?P<node>audit)/head", "audit_head"),
    (r"lane/(?P<node>[^/]+)/evidence/get", "lane_evidence_get"),
    (r"lane/(?P<node>[^/]+)/evidence/reply", "lane_evidence_reply"),
)
_PATTERNS: Final[tuple[tuple[re.Pattern[str], TopicKind], ...]] = tuple(
    (re.compile(rf"^{ROOT}/{VERSION}/(?P<site>[^/]+)/{body}$"), kind) for body, kind in _BODIES
)


def parse_topic(topic: str) -> Topic:
    """Tell which part of the tree a received topic belongs to, or say why it belongs nowhere."""
    for pattern, kind in _PATTERNS:
        match = pattern.match(topic)
        if match:
            site = check_segment(match["site"], what="site")
            node = match["node"]
            if kind == "alarm":
                if node not in ALARM_KINDS:
                    raise ContractError(f"topic {topic!r}: unknown alarm kind {node!r}")
            else:
                check_segment(node, what=kind.split("_")[0])
            part = match.groupdict().get("part") or ""
            return Topic(site=site, kind=kind, node=node, part=part)
    raise ContractError(f"topic {topic!r} is not part of the {ROOT}/{VERSION} tree")
