"""``make bench``: ParkGuard's decide latency and durable ingestion against bare paho, side by side.

What is measured, on a private Mosquitto started for the run (never the system broker):

1. **baseline** — a QoS 1 request/response between two plain paho 2.x clients with
   ``TCP_NODELAY`` on their sockets: the transport floor (DESIGN: ≈0.4 ms p50 / 0.7 ms p99).
2. **Nagle on** — the same exchange without ``TCP_NODELAY`` on the clients, to show what the
   one socket option in ``wire/mqtt.py`` buys (DESIGN: 44–88 ms).
3. **ParkGuard decide** — the real lane → gateway → lane path of a
   :class:`~simulator.site.SimulatedSite` with one entry and one exit lane: each car is driven
   in and out electrically, and every decision's ``wait_ms`` (the lane's own stopwatch, from
   building the request to waking up with the reply) is read back from the gateway's
   ``events`` table. Shown for both lanes together and per lane (an exit also prices the stay).
4. **durable ingestion** — M valid ``vehicle_detected`` events published with QoS 1 as fast
   as paho will go into a running :class:`~gateway.app.GatewayApp`, counted *at the database*:
   a reader connection of its own counts the rows of ``events``, so only committed
   (``synchronous=FULL``, acknowledged-after-commit) events count; against the same payloads
   from a bare paho QoS 1 publisher into a subscriber that only counts messages
   (DESIGN: ≈12–15k msg/s).

Why the baselines run in the same invocation: the machines this runs on (laptops, CI runners,
a Pi sharing its cores with a camera) are noisy, so an absolute figure from another day or
another machine says little. Each ParkGuard row is measured seconds after its bare-paho
baseline, on the same broker, the same CPUs and in the same Python process (GIL included),
and the ratio between them is what carries over. One thing does not carry over: the simulator
runs the lanes, the gateway and the car driver in one process, where a site runs them on
separate machines, so the decide row also pays for their sharing one GIL.

How to read the table:

* latency rows: p50 / p90 / p99 / max / mean in milliseconds per round trip; ``vs baseline``
  is ``×a / ×b``, the p50 and p99 ratios to the TCP_NODELAY baseline. ×1 is as fast as MQTT can
  answer; the excess is ParkGuard's own work (validation, queues, SQLite, thread hops).
* throughput rows: ``mean`` is messages stored (or counted) per second over the whole run;
  p50 / p90 / p99 / max are the rates of its successive slices of ``events / 20`` messages
  (how steady the drain was). ``vs baseline`` is the ratio of the means: ×0.25 means the
  durable path keeps up with a quarter of what the broker can deliver.
* the first round trips (``--warmup``, default 20; half as many cars, two decisions each) and
  as many first messages of each throughput row are thrown away: they pay for connections,
  the SQLite page cache and pydantic's first validation.

Speed targets live here, not in the tests: ``tests/test_bench.py`` only checks the benchmark
runs and produces sane numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock, ScaledClock
from parkguard.errors import ParkGuardError
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedSite, settings_of
from simulator.stats import percentile
from wire.contract import topics
from wire.contract.messages import DecideReply, DecideRequest, VehicleDetected
from wire.mqtt import BrokerAddress

DEFAULT_REQUESTS = 500
DEFAULT_EVENTS = 5000
QUICK_REQUESTS = 30
QUICK_EVENTS = 300
#: Round trips (and ingested events) thrown away before measuring.
WARMUP = 20
#: A throughput run is cut into this many equal slices to show how steady it was.
THROUGHPUT_SLICES = 20
#: How often the throughput runs look at the stored/received count.
_POLL_S = 0.001
#: A single bare round trip that takes this long has been lost, not delayed.
_ROUND_TRIP_TIMEOUT_S = 5.0

SITE = "bench"
# Every client logs in as a device of one provisioned site, over TLS, as on a real site.
Login = Callable[[str], BrokerAddress]
START = datetime(2026, 5, 6, 0, 0, tzinfo=UTC)
STAY = timedelta(minutes=97)  # a priced stay: past the free 15 min and the first hour
BETWEEN_CARS = timedelta(minutes=1)

Kind = Literal["latency", "throughput"]

BASELINE_RR = "paho req/resp, TCP_NODELAY (baseline)"
NAGLE_RR = "paho req/resp, Nagle on"
DECIDE = "ParkGuard decide, lane→gateway→lane"
DECIDE_ENTRY = "  … entry lane"
DECIDE_EXIT = "  … exit lane (prices the stay)"
PAID_OPEN = "  … QR paid: callback → barrier up (own simulator)"
#: Issue 21's target for a paid exit: the provider's notice to the barrier command, p99.
PAID_OPEN_TARGET_MS = 300.0
BASELINE_TP = "paho pub → counting sub (baseline)"
INGEST_TP = "ParkGuard ingestion, committed in SQLite"


class BenchError(ParkGuardError, RuntimeError):
    """The benchmark could not complete a measurement (lost message, stuck gateway)."""


@dataclass(frozen=True, slots=True)
class BenchRow:
    """One line of the table: a distribution in ms (latency) or msg/s (throughput)."""

    name: str
    kind: Kind
    count: int
    p50: float
    p90: float
    p99: float
    maximum: float
    mean: float
    baseline: str | None = None
    ratio: float | None = None  # latency: p50 / baseline p50; throughput: mean / baseline mean
    ratio_p99: float | None = None  # latency only
    note: str = ""
    samples: tuple[float, ...] = field(default=(), repr=False)

    @property
    def unit(self) -> str:
        return "ms" if self.kind == "latency" else "msg/s"


def describe(
    name: str, kind: Kind, values: Sequence[float], *, mean: float | None = None,
    count: int | None = None, note: str = "",
) -> BenchRow:
    """Percentiles of ``values`` as a row; ``mean``/``count`` override the plain ones."""
    ordered = sorted(values)
    if not ordered:
        raise BenchError(f"{name}: nothing was measured")
    return BenchRow(
        name=name, kind=kind, count=len(ordered) if count is None else count,
        p50=percentile(ordered, 0.50), p90=percentile(ordered, 0.90),
        p99=percentile(ordered, 0.99), maximum=ordered[-1],
        mean=sum(ordered) / len(ordered) if mean is None else mean,
        note=note, samples=tuple(values),
    )


def compared(row: BenchRow, baseline: BenchRow) -> BenchRow:
    """``row`` with its ratios against ``baseline`` filled in."""
    if row.kind == "latency":
        return replace(row, baseline=baseline.name, ratio=row.p50 / baseline.p50,
                        ratio_p99=row.p99 / baseline.p99)
    return replace(row, baseline=baseline.name, ratio=row.mean / baseline.mean)


def slice_rates(samples: Sequence[tuple[float, int]], total: int, slices: int) -> list[float]:
    """Rates (msg/s) of successive slices of ``total / slices`` messages.

    ``samples`` are (seconds since the first publish, messages done so far), in time order,
    ending with ``total``. A slice ends at the first sample that reaches its boundary.

    >>> slice_rates([(0.5, 10), (1.0, 20), (2.0, 40)], 40, 2)
    [20.0, 20.0]
    """
    size = max(1, total // slices)
    rates: list[float] = []
    last_t, last_n, index = 0.0, 0, 0
    boundaries = list(range(size, total + 1, size))
    if not boundaries or boundaries[-1] != total:
        boundaries.append(total)
    for boundary in boundaries:
        while index < len(samples) - 1 and samples[index][1] < boundary:
            index += 1
        t, n = samples[index]
        if n > last_n and t > last_t:
            rates.append((n - last_n) / (t - last_t))
            last_t, last_n = t, n
    return rates


# -- bare paho clients ----------------------------------------------------------------------


def _set_nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class PlainClient:
    """A paho client with nothing of ParkGuard's adapter: what the baselines run on."""

    def __init__(self, address: BrokerAddress, client_id: str, *, nodelay: bool) -> None:
        self.address = address
        self.client_id = client_id
        self.nodelay = nodelay
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
            protocol=paho.MQTTv311,
        )
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        if address.ca_file is not None:
            self.client.tls_set(ca_certs=str(address.ca_file))
        if address.username is not None:
            self.client.username_pw_set(address.username, address.password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        if nodelay:
            self.client.on_socket_open = _set_nodelay

    def start(self, timeout: float = 10.0) -> PlainClient:
        self.client.connect(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.stop()
            raise BenchError(f"{self.client_id}: no CONNACK within {timeout} s")
        self._check_socket()
        return self

    def subscribe(self, topic: str, timeout: float = 10.0) -> None:
        """Subscribe with QoS 1 and return once the broker has confirmed (SUBACK)."""
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        if not self._subscribed.wait(timeout):
            raise BenchError(f"no SUBACK for {topic} within {timeout} s")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> PlainClient:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _check_socket(self) -> None:
        """Refuse to measure a row whose socket option is not what its name says."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            actual = bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            if actual != self.nodelay:
                raise BenchError(f"TCP_NODELAY is {actual}, expected {self.nodelay}")

    def _on_connect(
        self, _client: paho.Client, _userdata: Any, _flags: paho.ConnectFlags,
        reason: ReasonCode, _properties: Properties | None,
    ) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, _mid: int, _reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        self._subscribed.set()


def _correlation_id(payload: bytes | bytearray) -> str:
    return str(json.loads(payload)["correlation_id"])


def decide_payloads(count: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """Real decide request bodies (id, JSON) and a reply template with ``{cid}`` to fill.

    Built before the clock starts, so the baseline times the transport and nothing else,
    with messages the size of the real ones.
    """
    requests = []
    for _ in range(count):
        cid = uuid.uuid4().hex[:20]
        body = DecideRequest(
            correlation_id=cid, lane="in1", direction="entry", plate="粤B12345",
            confidence=0.99, ts=START, deadline_ms=300,
        ).to_json()
        requests.append((cid, body))
    reply = DecideReply(
        correlation_id="x" * 20, action="open", reason="visitor_entry",
        display_zh="粤B12345 欢迎光临", display_en="Welcome 粤B12345",
        session_id="s-0123456789abcdef", ts=START,
    ).to_json()
    return requests, reply.replace(b"x" * 20, b"{cid}")


def request_response(
    login: Login, *, requests: int, warmup: int, nodelay: bool,
    on_step: Callable[[], None] = lambda: None,
) -> list[float]:
    """Milliseconds per QoS 1 request → reply between two bare paho clients, logged in as
    lane in1 and the gateway on the decide topics (what the ACL lets them do)."""
    request_topic = topics.lane_decide(SITE, "in1")
    reply_topic = topics.lane_decide_reply(SITE, "in1")
    bodies, reply_template = decide_payloads(warmup + requests)
    answered = threading.Event()
    waiting_for: list[str] = [""]

    def respond(client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        cid = _correlation_id(msg.payload)
        client.publish(reply_topic, reply_template.replace(b"{cid}", cid.encode()), qos=1)

    def receive(_client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        if _correlation_id(msg.payload) == waiting_for[0]:
            answered.set()

    kind = "nodelay" if nodelay else "nagle"
    waits: list[float] = []
    with (
        PlainClient(login("gateway"), f"bench-{kind}-responder", nodelay=nodelay) as responder,
        PlainClient(login("lane-in1"), f"bench-{kind}-requester", nodelay=nodelay) as requester,
    ):
        responder.client.on_message = respond
        requester.client.on_message = receive
        responder.subscribe(request_topic)
        requester.subscribe(reply_topic)
        for index, (cid, body) in enumerate(bodies):
            answered.clear()
            waiting_for[0] = cid
            started = time.perf_counter()
            requester.client.publish(request_topic, body, qos=1)
            if not answered.wait(_ROUND_TRIP_TIMEOUT_S):
                raise BenchError(f"{kind}: no reply to request {index} within "
                                 f"{_ROUND_TRIP_TIMEOUT_S} s")
            elapsed_ms = (time.perf_counter() - started) * 1000
            if index >= warmup:
                waits.append(elapsed_ms)
            on_step()
    return waits


# -- ParkGuard decide -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecideRun:
    """Decision waits (ms) after warm-up, per lane, and how many the lane had to make alone."""

    entry_ms: list[float]
    exit_ms: list[float]
    decided_by_lane: int
    wall_s: float
    paid_ms: list[float] = field(default_factory=list)
    """Each exit's QR payment: the provider's signed notice handed to the gateway's callback
    handler → the exit lane's barrier relay on (the gateway's signed ``open`` obeyed)."""


def plate_for(index: int) -> str:
    return f"粤B{index:05d}"


def parkguard_decide(
    login: Login, workdir: Path, *, cars: int, warmup_cars: int,
    on_step: Callable[[], None] = lambda: None,
) -> DecideRun:
    """Drive ``warmup_cars + cars`` cars in and out of a one-in, one-out simulated site.

    Each stay owes money, so each exit is refused with ``payment_due`` and the driver pays
    by the lane's QR (:class:`~simulator.site.ExitPayer`): the pay page's order, the
    simulated provider's signed notice to the gateway, the gateway's open to the lane."""
    _remove_database(workdir / "gateway.db")
    clock = ManualClock(START)
    started = time.perf_counter()
    with SimulatedSite(
        site=SITE, broker=login, workdir=workdir, clock=clock,
        entry_lanes=("in1",), exit_lanes=("out1",),
    ) as site:
        for index in range(warmup_cars + cars):
            plate = plate_for(index)
            site.drive("in1", plate)
            site.settle()
            clock.advance(STAY)
            site.drive("out1", plate)
            site.settle()
            clock.advance(BETWEEN_CARS)
            on_step()
        with site.gateway.store.reader() as db:
            rows = list(db.query("SELECT lane, seq, payload FROM events "
                                 "WHERE type = 'decision' ORDER BY lane, seq"))
        paid_ms = site.payer.callback_to_barrier_ms[warmup_cars:]
    wall_s = time.perf_counter() - started
    per_lane: dict[str, list[dict[str, Any]]] = {"in1": [], "out1": []}
    for row in rows:
        decision = json.loads(row["payload"])
        if decision["reason"] != "manual_open":  # the gateway's open after the money: no decide
            per_lane[row["lane"]].append(decision)
    for lane, decisions in per_lane.items():
        if len(decisions) != warmup_cars + cars:
            raise BenchError(f"lane {lane}: {len(decisions)} decisions stored, "
                             f"expected {warmup_cars + cars}")
    measured = {lane: decisions[warmup_cars:] for lane, decisions in per_lane.items()}

    def gateway_waits(lane: str) -> list[float]:
        return [float(d["wait_ms"]) for d in measured[lane] if d["decided_by"] == "gateway"]

    alone = sum(1 for ds in measured.values() for d in ds if d["decided_by"] == "lane")
    return DecideRun(gateway_waits("in1"), gateway_waits("out1"), alone, wall_s, paid_ms)


def paid_note(paid_ms: Sequence[float]) -> str:
    """Says what the paid-exit row measures, on what, and whether it met the target."""
    p99 = percentile(sorted(paid_ms), 0.99) if paid_ms else float("nan")
    verdict = "met" if p99 <= PAID_OPEN_TARGET_MS else "MISSED"
    return (f"measured in our own simulator (gateway, lanes and the simulated provider in one "
            f"process), not a real provider's network; target p99 ≤ "
            f"{PAID_OPEN_TARGET_MS:.0f} ms: {verdict} ({p99:.1f} ms)")


# -- throughput ------------------------------------------------------------------------------


def lane_event_payloads(count: int, *, lane: str = "in1") -> list[bytes]:
    """Valid ``vehicle_detected`` events with unique ids and increasing ``seq``."""
    tag = uuid.uuid4().hex[:12]
    return [
        VehicleDetected(
            event_id=f"bench-{tag}-{i:08d}", seq=i + 1, ts=START + timedelta(milliseconds=i),
            lane=lane,
        ).to_json()
        for i in range(count)
    ]


def _drain(
    done: Callable[[], int], target: int, *, what: str, timeout: float,
    on_progress: Callable[[int], None], started: float,
) -> list[tuple[float, int]]:
    """Poll ``done()`` until it reaches ``target``; return (seconds since start, count) samples."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        count = done()
        now = time.perf_counter()
        samples.append((now - started, count))
        on_progress(count)
        if count >= target:
            return samples
        if time.monotonic() > deadline:
            raise BenchError(f"{what}: {count} of {target} after {timeout:.0f} s")
        time.sleep(_POLL_S)


def _drain_timeout(events: int) -> float:
    return max(30.0, events / 200)


def _throughput_row(
    name: str, samples: list[tuple[float, int]], events: int, note: str = ""
) -> BenchRow:
    elapsed = samples[-1][0]
    rates = slice_rates(samples, events, THROUGHPUT_SLICES)
    return describe(name, "throughput", rates, mean=events / elapsed, count=events, note=note)


def bare_throughput(
    login: Login, *, events: int, warmup: int,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> BenchRow:
    """A bare paho QoS 1 publisher (lane in1) into a counting QoS 1 subscriber (the gateway's
    login, which may read every lane's events)."""
    topic = topics.lane_event(SITE, "in1")
    payloads = lane_event_payloads(warmup + events)
    received = [0]

    def count(_client: paho.Client, _userdata: Any, _msg: paho.MQTTMessage) -> None:
        received[0] += 1

    with (
        PlainClient(login("gateway"), "bench-counter", nodelay=True) as counter,
        PlainClient(login("lane-in1"), "bench-publisher", nodelay=True) as publisher,
    ):
        counter.client.on_message = count
        counter.subscribe(topic)
        for body in payloads[:warmup]:
            publisher.client.publish(topic, body, qos=1)
        _drain(lambda: received[0], warmup, what="bare warm-up", timeout=30.0,
               on_progress=lambda _n: None, started=time.perf_counter())
        started = time.perf_counter()
        for body in payloads[warmup:]:
            publisher.client.publish(topic, body, qos=1)
        samples = _drain(lambda: received[0] - warmup, events, what="bare subscriber",
                         timeout=_drain_timeout(events), on_progress=on_progress,
                         started=started)
    return _throughput_row(BASELINE_TP, samples, events)


def durable_ingestion(
    login: Login, workdir: Path, *, events: int, warmup: int,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> BenchRow:
    """The same publisher into a running gateway, until every event is committed in SQLite.

    Counted through a read-only connection of the bench's own (WAL: it sees committed
    transactions only), so the rate is what a crash would keep, not what sits in a queue.
    """
    database = workdir / "gateway.db"
    _remove_database(database)
    config = GatewayConfig(
        site=SITE, database=database, broker=settings_of(login("gateway")),
    )
    topic = topics.lane_event(SITE, "in1")
    payloads = lane_event_payloads(warmup + events)
    with (
        # Real time from START, the day the events are stamped with: a gateway on the wall
        # clock would dead-letter them as older than its receipt window.
        GatewayApp(config, clock=ScaledClock(START, speed=1.0)) as app,
        PlainClient(login("lane-in1"), "bench-lane", nodelay=True) as publisher,
        app.store.reader() as db,
    ):
        service = app.service

        def committed() -> int:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])

        for body in payloads[:warmup]:
            publisher.client.publish(topic, body, qos=1)
        _drain(committed, warmup, what="gateway warm-up", timeout=30.0,
               on_progress=lambda _n: None, started=time.perf_counter())
        batches = service.batches
        started = time.perf_counter()
        for body in payloads[warmup:]:
            publisher.client.publish(topic, body, qos=1)
        samples = _drain(lambda: committed() - warmup, events,
                         what="gateway events committed", timeout=_drain_timeout(events),
                         on_progress=on_progress, started=started)
        service.wait_idle()
        batches = service.batches - batches
        if service.dead_letters or service.duplicates:
            raise BenchError(f"gateway dead-lettered {service.dead_letters} and saw "
                             f"{service.duplicates} duplicates of the benchmark's events")
        stored = committed()
    if stored != warmup + events:
        raise BenchError(f"events table holds {stored}, expected {warmup + events}")
    return _throughput_row(INGEST_TP, samples, events,
                           note=f"{batches} commits, {events / max(batches, 1):.0f} events "
                           "per commit on average (synchronous=FULL, acked after commit)")


# -- the whole run ---------------------------------------------------------------------------


def _remove_database(path: Path) -> None:
    """Each run starts from an empty gateway file (SQLite and its WAL companions)."""
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@contextmanager
def _progress(console: Console | None) -> Iterator[Progress]:
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True, disable=console is None,
    ) as progress:
        yield progress


def run_bench(
    requests: int, events: int, workdir: Path, *, warmup: int = WARMUP,
    console: Console | None = None,
) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir`` and measure every row, baselines first.

    ``requests`` round trips per request/response row (and ``requests`` cars, so as many
    decisions per lane), ``events`` messages per throughput row. ``console`` shows progress.
    """
    if requests < 2 or events < THROUGHPUT_SLICES:
        raise ValueError(f"need at least 2 requests and {THROUGHPUT_SLICES} events")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "broker" / "data" / "mosquitto.db").unlink(missing_ok=True)
    warmup_cars = max(1, math.ceil(warmup / 2))  # each car is two round trips
    with ExitStack() as stack:
        site = provision_simulated_site(workdir / "pki", SITE, entry_lanes=("in1",),
                                        exit_lanes=("out1",))
        broker = stack.enter_context(MosquittoBroker(workdir / "broker", site=site))
        address = broker.address
        if console is not None:
            console.print(f"broker: private mosquitto with TLS and ACLs on {broker.host}:"
                          f"{broker.port} (log {broker.log_path})")
        progress = stack.enter_context(_progress(console))

        def task(description: str, total: int) -> Callable[[], None]:
            handle = progress.add_task(description, total=total)
            return lambda: progress.advance(handle)

        def counter(description: str, total: int) -> Callable[[int], None]:
            handle = progress.add_task(description, total=total)
            return lambda done: progress.update(handle, completed=done)

        baseline = describe(BASELINE_RR, "latency", request_response(
            address, requests=requests, warmup=warmup, nodelay=True,
            on_step=task("baseline req/resp (TCP_NODELAY)", warmup + requests)))
        nagle = describe(NAGLE_RR, "latency", request_response(
            address, requests=requests, warmup=warmup, nodelay=False,
            on_step=task("req/resp with Nagle on", warmup + requests)))
        run = parkguard_decide(
            address, workdir / "site", cars=requests, warmup_cars=warmup_cars,
            on_step=task("ParkGuard decide (cars in and out)", warmup_cars + requests))
        alone = (f"{run.decided_by_lane} decided by the lane alone (gateway too slow), "
                 "left out" if run.decided_by_lane else "")
        decide = describe(DECIDE, "latency", run.entry_ms + run.exit_ms, note=alone)
        entry = describe(DECIDE_ENTRY, "latency", run.entry_ms)
        exit_ = describe(DECIDE_EXIT, "latency", run.exit_ms)
        paid = describe(PAID_OPEN, "latency", run.paid_ms, note=paid_note(run.paid_ms))
        bare = bare_throughput(address, events=events, warmup=warmup,
                               on_progress=counter("bare publisher → subscriber", events))
        ingest = durable_ingestion(address, workdir / "ingest", events=events, warmup=warmup,
                                   on_progress=counter("gateway ingestion", events))
    return [
        baseline,
        compared(nagle, baseline),
        compared(decide, baseline),
        compared(entry, baseline),
        compared(exit_, baseline),
        compared(paid, baseline),
        bare,
        compared(ingest, bare),
    ]


# -- presentation ----------------------------------------------------------------------------


def _number(value: float, kind: Kind) -> str:
    if kind == "throughput":
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _ratio(row: BenchRow) -> str:
    if row.ratio is None:
        return "[dim]—[/dim]"
    if row.kind == "throughput" or row.ratio_p99 is None:
        return f"×{row.ratio:.2f}"
    return f"×{row.ratio:.1f} / ×{row.ratio_p99:.1f}"


def results_table(rows: Sequence[BenchRow], *, title: str = "ParkGuard bench") -> Table:
    """Latency rows in ms, then throughput rows in msg/s, each with its ratio to its baseline."""
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
        caption="vs baseline: latency p50 / p99 ratio to the TCP_NODELAY round trip; "
        "throughput mean ratio to bare paho.\nThroughput pNN/max: rates of the run's "
        f"{THROUGHPUT_SLICES} successive slices; mean: the whole run.",
        caption_justify="left",
    )
    table.add_column("case", no_wrap=True)
    table.add_column("n", justify="right")
    for column in ("p50", "p90", "p99", "max", "mean"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("vs baseline", justify="right", no_wrap=True)
    for index, row in enumerate(rows):
        if index and row.kind != rows[index - 1].kind:
            table.add_section()
        name = escape(row.name)
        table.add_row(
            f"[bold]{name}[/bold]" if row.baseline is None else name, str(row.count),
            *(_number(v, row.kind) for v in (row.p50, row.p90, row.p99, row.maximum, row.mean)),
            row.unit, _ratio(row),
        )
    return table


def plot_latencies(rows: Sequence[BenchRow], out: Path) -> Path | None:
    """Overlay the baseline and ParkGuard decide histograms on a log x-axis; None without
    matplotlib (a lane-only install)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return None
    by_name = {row.name: row for row in rows}
    shown = [(by_name[BASELINE_RR], "#1f6feb"), (by_name[DECIDE], "#d1242f")]
    values = [v for row, _ in shown for v in row.samples if v > 0]
    low, high = math.log10(min(values)), math.log10(max(values))
    if high - low < 0.1:
        low, high = low - 0.05, high + 0.05
    bins = [10 ** (low + (high - low) * i / 60) for i in range(61)]
    fig, axes = plt.subplots(figsize=(9, 4.5))
    for row, colour in shown:
        # Each distribution sums to 1: the decide row has twice the samples (entry and exit).
        axes.hist(row.samples, bins=bins, weights=[1 / len(row.samples)] * len(row.samples),
                  alpha=0.55, color=colour,
                  label=f"{row.name.strip()}: n {row.count}, p50 {row.p50:.2f} ms, "
                  f"p99 {row.p99:.2f} ms")
        axes.axvline(row.p50, color=colour, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    plain = ticker.FuncFormatter(lambda value, _pos: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.set_xlabel("round trip, milliseconds (log scale; dashed: p50)")
    axes.set_ylabel("share of round trips")
    axes.set_title("QoS 1 request/response: bare paho vs ParkGuard decide, same broker")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3, which="both")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.bench",
        description="ParkGuard decide latency and durable ingestion against bare paho, "
        "side by side on a private Mosquitto.",
    )
    parser.add_argument("--requests", type=int, default=None, metavar="N",
                        help=f"round trips per latency row, and cars driven in and out "
                        f"(default {DEFAULT_REQUESTS})")
    parser.add_argument("--events", type=int, default=None, metavar="M",
                        help=f"messages per throughput row (default {DEFAULT_EVENTS})")
    parser.add_argument("--warmup", type=int, default=WARMUP, metavar="K",
                        help="round trips and events thrown away first (default %(default)s)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PATH",
                        help="write a latency histogram PNG here")
    parser.add_argument("--quick", action="store_true",
                        help=f"small numbers ({QUICK_REQUESTS} requests, {QUICK_EVENTS} events)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the broker log and SQLite files here (default: a temporary "
                        "directory, removed afterwards)")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    if args.events is None:
        args.events = QUICK_EVENTS if args.quick else DEFAULT_EVENTS
    if args.requests < 2 or args.events < THROUGHPUT_SLICES or args.warmup < 0:
        parser.error(f"--requests must be ≥ 2, --events ≥ {THROUGHPUT_SLICES}, --warmup ≥ 0")
    return args


def report_console() -> Console:
    """The console a bench prints to; wide enough that a log file does not wrap the table."""
    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def run_and_report(
    run: Callable[[Path], list[BenchRow]], *, workdir: Path | None, prefix: str,
    title: Callable[[float], str], console: Console,
) -> list[BenchRow] | None:
    """Run one bench in ``workdir`` (default: a temporary directory, removed afterwards),
    print its table and notes; None, after saying why, if it failed. ``title`` gets the
    wall seconds."""
    with ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        started = time.perf_counter()
        try:
            rows = run(workdir)
        except ParkGuardError as error:
            console.print(f"[red]bench failed:[/red] {error}")
            return None
        wall = time.perf_counter() - started
    console.print(results_table(rows, title=title(wall)))
    for row in rows:
        if row.note:
            console.print(f"note: {row.name.strip()}: {row.note}")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = report_console()
    rows = run_and_report(
        lambda workdir: run_bench(args.requests, args.events, workdir, warmup=args.warmup,
                                  console=console),
        workdir=args.workdir, prefix="pg-bench-", console=console,
        title=lambda wall: f"ParkGuard bench — {args.requests} requests, {args.events} events, "
                           f"warm-up {args.warmup}, {wall:.0f} s")
    if rows is None:
        return 1
    if args.plot is not None:
        plot = plot_latencies(rows, args.plot)
        console.print(f"plot: {plot}" if plot else "plot skipped: matplotlib is not installed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
