"""Prometheus ``/metrics`` for the gateway: what it decided, how long lanes waited, what is
queued, what was dead-lettered, which alarms are on, which lanes are up, which alerts reached
a person (docs/integrations.md, "Metrics").

Why read the database at scrape time rather than count in the code paths: the database is
already the record of what happened (every lane's journaled ``decision`` event, every dead
letter, every alert notification), it survives a restart so the counters do not fall to zero
with the process, and the worker's hot path stays free of metric calls. Only the rows added
since the last scrape are read (by ``rowid``), so a scrape costs what arrived in between,
not the site's whole history; the first scrape after a start reads the history once.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`: several gateways in one
test process do not collide, and nothing of the process-wide default registry leaks out.

Who may scrape is decided by :class:`MetricsAccess`: a client address in an allow-list or a
bearer token; with neither configured ``/metrics`` answers 404, since the same port serves
the drivers' pay page to the public.
"""

from __future__ import annotations

import hmac
import ipaddress
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import sqlite_utils
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gateway.web.deps import Reader
from parkguard.errors import ContractError
from wire.contract import topics
from wire.contract.messages import LaneState

#: Upper bounds (seconds) of the lane's wait for the gateway's word: the decide deadline is
#: 300 ms (docs/lane.md), a healthy answer comes in a few milliseconds.
WAIT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

#: The flood level at which the site's flood alarm is on (gateway/safety/alarms/monitor.py).
FLOOD_ALARM_LEVEL = 2

#: The dead-letter reasons, as a bounded label set (the stored reason is free text).
LETTER_REASONS = ("handler_error", "out_of_window", "invalid")


def letter_reason(reason: str) -> str:
    """The class of a dead letter's stored reason: a bug of ours (``handler_error``), a
    timestamp outside the receipt window (``out_of_window``), or a message that breaks the
    contract (``invalid``)."""
    if reason.startswith("handler error"):
        return "handler_error"
    if " ahead of " in reason or " older than " in reason:  # wire/contract/window.py
        return "out_of_window"
    return "invalid"


def topic_kind(topic: str) -> str:
    """Which part of the tree a dead letter came in on (bounded), or ``unknown``."""
    try:
        return topics.parse_topic(topic).kind
    except ContractError:
        return "unknown"


class QueueDepth(Protocol):
    """The worker's inbox as the metrics see it (:meth:`gateway.runtime.inbox.Inbox.depth`)."""

    def depth(self) -> dict[str, int]: ...


class SafetyState(Protocol):
    """The alarm monitor as the metrics see it."""

    def fire_active(self) -> bool: ...

    def flood_level(self) -> int: ...


@dataclass(slots=True)
class _Seen:
    """Running totals of the rows read so far, and where reading stopped."""

    events_rowid: int = 0
    letters_id: int = 0
    decisions: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    wait_buckets: dict[str, list[int]] = field(default_factory=dict)  # per bucket, not cumulative
    wait_sum_s: dict[str, float] = field(default_factory=dict)
    letters: Counter[tuple[str, str]] = field(default_factory=Counter)


class GatewayCollector(Collector):
    """Reads the gateway's state and database on each scrape (see the module docstring)."""

    def __init__(self, *, reader: Reader, inbox: QueueDepth | None,
                 lanes: Callable[[], dict[str, LaneState]],
                 alarms: SafetyState | None, alerts_enabled: bool) -> None:
        self._reader = reader
        self._inbox = inbox
        self._lanes = lanes
        self._alarms = alarms
        self._alerts_enabled = alerts_enabled
        self._seen = _Seen()
        self._lock = threading.Lock()  # two scrapes at once must not count rows twice

    def collect(self) -> Iterator[Metric]:
        with self._lock, self._reader() as db:
            self._read_new_events(db)
            self._read_new_letters(db)
            seen = self._seen
            yield from self._decisions(seen)
            yield self._dead_letters(seen)
            if self._alerts_enabled:
                yield from self._alerts(db)
        yield from self._queue()
        yield from self._lane_states()
        yield from self._alarm_states()

    # reading what is new -------------------------------------------------------------

    def _read_new_events(self, db: sqlite_utils.Database) -> None:
        seen = self._seen
        newest = db.execute("SELECT max(rowid) FROM events").fetchone()[0]
        if newest is None:
            return
        rows = db.execute(
            "SELECT json_extract(payload, '$.direction'), json_extract(payload, '$.action'), "
            "json_extract(payload, '$.decided_by'), json_extract(payload, '$.wait_ms') "
            "FROM events WHERE rowid > ? AND rowid <= ? AND type = 'decision'",
            [seen.events_rowid, newest])
        for direction, action, decided_by, wait_ms in rows:
            who = str(decided_by)
            seen.decisions[(str(direction), str(action), who)] += 1
            wait_s = float(wait_ms or 0) / 1000
            buckets = seen.wait_buckets.setdefault(who, [0] * (len(WAIT_BUCKETS_S) + 1))
            buckets[next((i for i, bound in enumerate(WAIT_BUCKETS_S) if wait_s <= bound),
                         len(WAIT_BUCKETS_S))] += 1
            seen.wait_sum_s[who] = seen.wait_sum_s.get(who, 0.0) + wait_s
        seen.events_rowid = int(newest)

    def _read_new_letters(self, db: sqlite_utils.Database) -> None:
        seen = self._seen
        for letter_id, topic, reason in db.execute(
                "SELECT id, topic, reason FROM dead_letters WHERE id > ? ORDER BY id",
                [seen.letters_id]):
            seen.letters_id = letter_id
            seen.letters[(topic_kind(topic), letter_reason(reason))] += 1

    # the families ------------------------------------------------------------------

    @staticmethod
    def _decisions(seen: _Seen) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "parkguard_decisions", "Gate decisions the lanes journaled, by direction, "
            "outcome (open, deny, hold, ...) and who decided (gateway or the lane alone)",
            labels=["direction", "outcome", "decided_by"])
        for (direction, outcome, who), count in sorted(seen.decisions.items()):
            decisions.add_metric([direction, outcome, who], count)
        yield decisions
        wait = HistogramMetricFamily(
            "parkguard_decision_wait_seconds", "How long a lane waited for the gateway's word "
            "on a read (the lane's own measurement, in its decision event)",
            labels=["decided_by"])
        for who, counts in sorted(seen.wait_buckets.items()):
            cumulative, running = [], 0
            for bound, count in zip((*WAIT_BUCKETS_S, float("inf")), counts, strict=True):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else str(bound), running))
            wait.add_metric([who], cumulative, sum_value=seen.wait_sum_s[who])
        yield wait

    @staticmethod
    def _dead_letters(seen: _Seen) -> Metric:
        letters = CounterMetricFamily(
            "parkguard_dead_letters", "Messages kept in the dead-letter table, by the topic "
            "kind they came on and the class of their reason", labels=["kind", "reason"])
        for (kind, reason), count in sorted(seen.letters.items()):
            letters.add_metric([kind, reason], count)
        return letters

    @staticmethod
    def _alerts(db: sqlite_utils.Database) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "parkguard_alert_notifications", "Alert messages to people, by channel and "
            "outcome (sent or failed)", labels=["channel", "status"])
        queued = GaugeMetricFamily(
            "parkguard_alert_notifications_queued", "Alert messages waiting to be sent",
            labels=["channel"])
        for channel, status, count in db.execute(
                "SELECT channel, status, count(*) FROM alert_notifications "
                "WHERE status IN ('sent', 'failed', 'queued') GROUP BY channel, status "
                "ORDER BY channel, status"):
            if status == "queued":
                queued.add_metric([channel], count)
            else:
                sent.add_metric([channel, status], count)
        active = GaugeMetricFamily("parkguard_alerts_active",
                                   "Alerts raised or acknowledged and not yet resolved",
                                   labels=["severity"])
        counts = dict(db.execute("SELECT severity, count(*) FROM alerts "
                                 "WHERE state <> 'resolved' GROUP BY severity").fetchall())
        for severity in ("info", "warning", "critical"):
            active.add_metric([severity], counts.get(severity, 0))
        yield from (sent, queued, active)

    def _queue(self) -> Iterator[Metric]:
        if self._inbox is None:
            return
        depth = GaugeMetricFamily(
            "parkguard_ingest_queue_depth", "Work waiting for the gateway's worker, by queue "
            "(decides, urgent, events, jobs) and messages received but not yet committed "
            "(in_flight)", labels=["queue"])
        for queue, count in sorted(self._inbox.depth().items()):
            depth.add_metric([queue], count)
        yield depth

    def _lane_states(self) -> Iterator[Metric]:
        states = self._lanes()
        online = GaugeMetricFamily("parkguard_lane_online",
                                   "1 while a lane's retained state says online", labels=["lane"])
        for lane, state in sorted(states.items()):
            online.add_metric([lane], 1 if state.online else 0)
        total = GaugeMetricFamily("parkguard_lanes", "Lanes by their last retained state",
                                  labels=["state"])
        up = sum(1 for state in states.values() if state.online)
        total.add_metric(["online"], up)
        total.add_metric(["offline"], len(states) - up)
        yield from (online, total)

    def _alarm_states(self) -> Iterator[Metric]:
        if self._alarms is None:
            return
        active = GaugeMetricFamily("parkguard_alarm_active", "1 while the site alarm is on "
                                   "(as its retained alarm topic says)", labels=["kind"])
        level = self._alarms.flood_level()
        active.add_metric(["fire"], 1 if self._alarms.fire_active() else 0)
        active.add_metric(["flood"], 1 if level >= FLOOD_ALARM_LEVEL else 0)
        yield active
        yield GaugeMetricFamily("parkguard_flood_level",
                                "The site's flood level (0 dry, 1 warn, 2 entries closed, "
                                "3 evacuate)",
                                value=level)


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of the app's own, holding only ``collector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read ``/metrics``: a client address inside one of ``allow`` (networks,
    e.g. ``10.0.5.7/32``), or a request with ``Authorization: Bearer <token>``. Neither
    configured: nobody (``/metrics`` answers 404, as if it did not exist)."""

    allow: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for network in self.allow:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"metrics_allow: {network!r} is not an address or "
                                 "network") from None
        if self.token is not None and len(self.token) < 16:
            raise ValueError("metrics token: at least 16 characters")

    @property
    def enabled(self) -> bool:
        return bool(self.allow) or self.token is not None

    def permits(self, client: str | None, authorization: str | None) -> bool:
        if self.token is not None and authorization is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                    given.strip().encode(), self.token.encode()):
                return True
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(network, strict=False)
                   for network in self.allow)
