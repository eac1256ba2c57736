"""Where the milliseconds of one online gate decision go: a timestamp at each hop, per car.

The gate bench (:mod:`simulator.bench_gate`) wraps a few calls of the lanes and the gateway
(instance attributes only: nothing in ``firmware/`` or ``gateway/`` knows about this) and
notes ``time.perf_counter()`` at each hop of a car the gateway decides:

=========== ================================================================================
hop         the instant
=========== ================================================================================
arm         the driver drives the arming loop's pin high (the car arrives)
worker      the lane's worker starts serving the car (``Gate.serve_vehicle``)
read        the plate is read and its ``plate_read`` numbered (``Gate.read_plate`` returns)
asked       the ``DecideRequest`` is built and handed to the bus (``Bus.publish`` called)
sent        paho has it queued (``Bus.publish`` returns: serialised, size-checked)
held        the car's held events are journaled (NORMAL) while the gateway decides
gw_in       the gateway's paho thread has the request (its ``on_message``)
gw_take     the gateway's worker takes it from the inbox (``Batches.answer``)
verdict     the verdict is computed (``Batches._decide`` returns)
gw_out      the reply is handed to the gateway's paho (``Bus.publish`` returns)
reply_in    the lane's paho thread has the reply (its ``on_message``)
woke        the lane's worker is awake with it (the decider's wait returns)
decided     the ``decision`` event is journaled (NORMAL)
relay       ``Barrier.raise_``: the barrier command (the bench's stop)
=========== ================================================================================

``time.perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock for every process of the
machine, so a gateway in a process of its own (``bench_gate --gateway process``) notes its
hops on the same time line and hands them back at the end (:func:`trace_gateway`,
:meth:`GateTrace.merge`). The wrappers cost a few microseconds a hop; the payloads are
parsed for their correlation id only after the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.bench import BenchRow, describe

HOPS = ("arm", "worker", "read", "asked", "sent", "held", "gw_in", "gw_take", "verdict",
        "gw_out", "reply_in", "woke", "decided", "relay")
"""Every hop, in the order a car passes them (``held`` overlaps the gateway's hops)."""

#: (row name, from hop, to hop): the segments of the table, end to end.
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("  loop pin → lane worker starts the car", "arm", "worker"),
    ("  worker → plate read (events numbered)", "worker", "read"),
    ("  read → decide request built", "read", "asked"),
    ("  request serialised, queued to paho", "asked", "sent"),
    ("  paho → broker → gateway's paho (hop 1)", "sent", "gw_in"),
    ("  gateway inbox → its worker takes it", "gw_in", "gw_take"),
    ("  gateway verdict (Python)", "gw_take", "verdict"),
    ("  reply serialised, queued to paho", "verdict", "gw_out"),
    ("  paho → broker → lane's paho (hop 2)", "gw_out", "reply_in"),
    ("  lane paho → lane worker awake", "reply_in", "woke"),
    ("  decision journaled (NORMAL)", "woke", "decided"),
    ("  decision → relay", "decided", "relay"),
)
#: Not on the way end to end, shown for what they overlap.
BESIDE: tuple[tuple[str, str, str], ...] = (
    ("  (held events journaled: sent → held)", "sent", "held"),
    ("  (request out → reply in, lane's view)", "sent", "reply_in"),
    ("  (gateway: request in → reply out)", "gw_in", "gw_out"),
)
TRACE_TOTAL = "  traced: loop pin → relay"


@dataclass
class _Car:
    lane: str
    tag: str | None
    marks: dict[str, float] = field(default_factory=dict)
    correlation_id: str | None = None


class GateTrace:
    """The hops of every car, lane side by car and gateway side by correlation id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, _Car] = {}
        self.cars: list[_Car] = []
        self._gateway: list[tuple[str, float, Any]] = []  # (hop, at, what names the car)

    # lane side -------------------------------------------------------------------------

    def begin(self, lane: str, at: float, tag: str | None = None) -> None:
        """A car arrives at ``lane`` (the driver's pin); reported under ``tag`` (None: not
        reported, a warm-up car)."""
        car = _Car(lane, tag, {"arm": at})
        with self._lock:
            self._current[lane] = car
            self.cars.append(car)

    def mark(self, lane: str, hop: str, *, first: bool = True) -> None:
        """Note ``hop`` now for the car at ``lane`` (``first``: keep the first instant)."""
        at = time.perf_counter()
        car = self._current.get(lane)
        if car is not None and not (first and hop in car.marks):
            car.marks[hop] = at

    def mark_at(self, lane: str, hop: str, at: float) -> None:
        """Note ``hop`` at ``at`` (a ``perf_counter`` instant taken elsewhere)."""
        car = self._current.get(lane)
        if car is not None:
            car.marks.setdefault(hop, at)

    def name(self, lane: str, correlation_id: str) -> None:
        car = self._current.get(lane)
        if car is not None and car.correlation_id is None:
            car.correlation_id = correlation_id

    # gateway side ----------------------------------------------------------------------

    def gateway_mark(self, hop: str, what: Any, at: float | None = None) -> None:
        """A gateway hop; ``what`` is a correlation id or a payload to parse later."""
        self._gateway.append((hop, time.perf_counter() if at is None else at, what))

    def gateway_marks(self) -> list[tuple[str, float, str]]:
        """The gateway's hops with their correlation ids (the payloads parsed now)."""
        return [(hop, at, _correlation_id(what)) for hop, at, what in list(self._gateway)]

    def merge(self, marks: Sequence[tuple[str, float, str]]) -> None:
        """Put the gateway's hops (of this process or another) on the cars they are about."""
        by_id = {car.correlation_id: car for car in self.cars if car.correlation_id}
        for hop, at, correlation_id in marks:
            car = by_id.get(correlation_id)
            if car is not None and hop not in car.marks:
                car.marks[hop] = at

    # the table -------------------------------------------------------------------------

    def rows(self, title: str, tag: str) -> list[BenchRow]:
        """The traced total (named ``title``), then each segment, over the cars tagged
        ``tag`` that passed every hop (a car the lane decided alone has no gateway hops)."""
        self.merge(self.gateway_marks())
        whole = [_in_order(car.marks) for car in self.cars
                 if car.tag == tag and all(hop in car.marks for hop in HOPS)]
        if not whole:
            return []
        rows = [describe(title, "latency", [(m["relay"] - m["arm"]) * 1000 for m in whole])]
        for name, start, end in SEGMENTS + BESIDE:
            rows.append(describe(name, "latency", [(m[end] - m[start]) * 1000 for m in whole]))
        return rows


def _in_order(marks: dict[str, float]) -> dict[str, float]:
    """The marks with each hop of the end-to-end chain no later than the next one.

    ``sent`` and ``gw_out`` are noted when ``Bus.publish`` returns, but paho may write the
    packet inside that call: on a loaded machine the publishing thread can then wait for a
    CPU while the peer already has the message, and the hop would come out negative. Such a
    wait is not part of the trip, so the mark is moved back to the peer's instant (that hop
    counts 0 ms) and the segments still tile the total.
    """
    chain = [SEGMENTS[0][1], *(end for _, _, end in SEGMENTS)]
    ordered = dict(marks)
    for hop, later in zip(reversed(chain[:-1]), reversed(chain[1:]), strict=True):
        ordered[hop] = min(ordered[hop], ordered[later])
    return ordered


def _correlation_id(what: Any) -> str:
    if isinstance(what, str):
        return what
    try:
        return str(json.loads(what)["correlation_id"])
    except (ValueError, KeyError, TypeError):
        return ""


def _after(obj: Any, name: str, note: Callable[[Any, tuple[Any, ...]], None]) -> None:
    """Replace ``obj.name`` by a wrapper that calls it, then ``note(result, args)``."""
    original = getattr(obj, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        note(result, args)
        return result

    setattr(obj, name, wrapped)


def _on_message(client: Any, note: Callable[[str, bytes], None]) -> None:
    """Note every message paho hands ``client`` (on its network thread) before handling it."""
    original = client.on_message

    def wrapped(paho_client: Any, userdata: Any, message: Any) -> None:
        note(message.topic, message.payload)
        original(paho_client, userdata, message)

    client.on_message = wrapped


def trace_lane(trace: GateTrace, lane: str, node: Any) -> None:
    """Wrap the hops of a lane node (a :class:`~firmware.lane.node.LaneNode` on MQTT)."""
    controller, bus = node.controller, node.bus
    gate, decider = controller.gate, controller.decider
    serve = gate.serve_vehicle

    def serving() -> None:
        trace.mark(lane, "worker")
        serve()

    gate.serve_vehicle = serving
    _after(gate, "read_plate", lambda _r, _a: trace.mark(lane, "read"))
    publish = bus.publish

    def publishing(topic: str, payload: Any, **kwargs: Any) -> Any:
        if not topic.endswith("/decide"):
            return publish(topic, payload, **kwargs)
        trace.mark(lane, "asked")
        trace.name(lane, payload.correlation_id)
        receipt = publish(topic, payload, **kwargs)
        trace.mark(lane, "sent")
        return receipt

    bus.publish = publishing
    _after(decider, "_after_asking", lambda _r, _a: trace.mark(lane, "held"))

    def replied(topic: str, _payload: bytes) -> None:
        if topic.endswith("/decide/reply"):
            trace.mark(lane, "reply_in")

    _on_message(bus._client, replied)  # paho's own entry: the hop itself
    _after(decider, "_block_until", lambda _r, _a: trace.mark(lane, "woke"))
    _after(controller.events, "decision", lambda _r, _a: trace.mark(lane, "decided"))


def trace_gateway(trace: GateTrace, bus: Any, batches: Any) -> None:
    """Wrap the hops of a gateway (its :class:`~wire.mqtt.MqttBus` and worker's ``Batches``)."""

    def request_in(topic: str, payload: bytes) -> None:
        if topic.endswith("/decide"):
            trace.gateway_mark("gw_in", bytes(payload))

    _on_message(bus._client, request_in)  # paho's own entry: the hop itself
    answer = batches.answer

    def answering(items: list[Any]) -> None:
        at = time.perf_counter()
        for item in items:
            trace.gateway_mark("gw_take", item.payload, at)
        answer(items)

    batches.answer = answering
    _after(batches, "_decide",
           lambda _r, args: trace.gateway_mark("verdict", args[0].correlation_id))
    publish = bus.publish

    def publishing(topic: str, payload: Any, **kwargs: Any) -> Any:
        receipt = publish(topic, payload, **kwargs)
        if topic.endswith("/decide/reply"):
            trace.gateway_mark("gw_out", payload.correlation_id)
        return receipt

    bus.publish = publishing
