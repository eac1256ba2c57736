"""The in-memory twin of the site broker: MQTT's promises in one process, no sockets.

:class:`MemoryBroker` is the broker (retained messages, persistent sessions, Last Wills,
QoS 1 redelivery of what a manual-ack consumer did not acknowledge); :class:`MemoryBus` is
one client's connection to it and keeps the :class:`wire.bus.Bus` promises. Messages are
delivered on the broker's one dispatch thread, in publication order, as paho delivers on its
network thread: a handler never runs on the publisher's thread, so locks behave as they do
against Mosquitto.

Why a twin at all: a test that starts Mosquitto for a unit of logic pays a process, a port
and real time, and can only prove that something did *not* happen by sleeping. Here
:meth:`MemoryBroker.settle` returns once every message published so far has been handled,
so "nothing happened" is asserted after a settle (and a clock step), never after a sleep.
ACLs, TLS and packet limits are the real broker's job and are tested against it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from paho.mqtt.client import topic_matches_sub

from parkguard.configfile import MAX_PACKET_SIZE
from parkguard.errors import BrokerError
from wire.bus import (
    Delivery,
    DeliveryHandler,
    Handler,
    HandlerErrorHook,
    HandlerGuard,
    RefusalListener,
    body_of,
)
from wire.contract.messages import WireMessage
from wire.mqtt import PacketSizeGuard, Will

log = logging.getLogger(__name__)


class MemoryReceipt:
    """A publish handle: acknowledged once the broker has taken the message."""

    __slots__ = ("_done",)

    def __init__(self, done: bool) -> None:
        self._done = done

    def acknowledged(self) -> bool | None:
        return self._done

    def _mark(self) -> None:
        self._done = True


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class _Session:
    """What the broker keeps for one client id (across connections when persistent)."""

    bus: MemoryBus
    filters: dict[str, int] = field(default_factory=dict)
    queued: deque[_Message] = field(default_factory=deque)  # while away (persistent only)
    unacked: dict[int, _Message] = field(default_factory=dict)  # manual-ack deliveries


class MemoryBroker:
    """One in-process broker shared by every :class:`MemoryBus` of a test or a simulation."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._retained: dict[str, _Message] = {}
        self._sessions: dict[str, _Session] = {}
        self._work: deque[Callable[[], None]] = deque()
        self._busy = False
        self._mids = itertools.count(1)
        self._stopping = False
        self.published = 0
        self._thread = threading.Thread(target=self._dispatch, name="memory-broker",
                                        daemon=True)
        self._thread.start()

    def bus(self, client_id: str, **options: object) -> MemoryBus:
        """A new client of this broker (same options as :class:`MemoryBus`)."""
        return MemoryBus(self, client_id=client_id, **options)  # type: ignore[arg-type]

    def retained(self, topic: str) -> bytes | None:
        """The retained payload on ``topic``, if any (what a new subscriber would get)."""
        with self._lock:
            message = self._retained.get(topic)
            return None if message is None else message.payload

    def settle(self, timeout: float = 10.0) -> None:
        """Return once every message published so far has been handed to every handler."""
        with self._lock:
            if not self._lock.wait_for(lambda: not self._work and not self._busy, timeout):
                raise TimeoutError(f"memory broker still busy after {timeout} s")

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._thread.join(timeout=5)

    # the client side (called by MemoryBus) ----------------------------------------------

    def _connect(self, bus: MemoryBus, will: Will | None) -> None:
        with self._lock:
            session = self._sessions.get(bus.client_id)
            if session is not None and session.bus is not bus and session.bus.connected.is_set():
                session.bus._kicked()  # MQTT: a second connection takes over the client id
            if session is None or not bus.persistent:
                session = _Session(bus)
                self._sessions[bus.client_id] = session
            session.bus = bus
            bus._will = will
            resend = list(session.unacked.values()) + list(session.queued)
            session.unacked.clear()
            session.queued.clear()
            for message in resend:
                self._enqueue_to(session, message, redelivered=True)
            for topic_filter, qos in bus._filters().items():  # paho resubscribes on connect:
                session.filters[topic_filter] = qos           # retained messages come again
                self._send_retained(session, topic_filter)
            self._lock.notify_all()

    def _disconnect(self, bus: MemoryBus, *, graceful: bool) -> None:
        with self._lock:
            session = self._sessions.get(bus.client_id)
            if session is None or session.bus is not bus:
                return
            if not bus.persistent:
                del self._sessions[bus.client_id]
            will = bus._will
        if not graceful and will is not None:
            self._publish(_Message(will.topic, will.payload, will.qos, will.retain))

    def _subscribe(self, bus: MemoryBus, topic_filter: str, qos: int) -> None:
        with self._lock:
            session = self._sessions.get(bus.client_id)
            if session is None or session.bus is not bus:
                return
            session.filters[topic_filter] = qos
            self._send_retained(session, topic_filter)
            self._lock.notify_all()

    def _send_retained(self, session: _Session, topic_filter: str) -> None:
        """Under the lock: a (re)subscription gets the retained messages it matches."""
        for message in list(self._retained.values()):
            if topic_matches_sub(topic_filter, message.topic):
                self._enqueue_to(session, message, only=topic_filter)

    def _publish(self, message: _Message) -> None:
        with self._lock:
            self.published += 1
            if message.retain:
                if message.payload:
                    self._retained[message.topic] = message
                else:
                    self._retained.pop(message.topic, None)
            for session in self._sessions.values():
                if any(topic_matches_sub(f, message.topic) for f in session.filters):
                    if session.bus.connected.is_set():
                        self._enqueue_to(session, _Message(message.topic, message.payload,
                                                           message.qos, False))
                    elif message.qos > 0:
                        session.queued.append(message)
            self._lock.notify_all()

    def _enqueue_to(self, session: _Session, message: _Message, *, redelivered: bool = False,
                    only: str | None = None) -> None:
        """Under the lock: queue one message for one session's bus."""
        bus, mid = session.bus, next(self._mids)

        def ack() -> None:
            with self._lock:
                session.unacked.pop(mid, None)

        def deliver() -> None:
            if not bus.connected.is_set():  # went away while it was queued
                if bus.persistent and message.qos > 0:
                    with self._lock:
                        session.queued.append(message)
                return
            manual = bus._delivers(message.topic)
            if manual and message.qos > 0:
                with self._lock:
                    session.unacked[mid] = message
            bus._receive(message.topic, message.payload, qos=message.qos, mid=mid,
                         redelivered=redelivered, on_ack=ack, only=only)

        self._work.append(deliver)

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._work or self._stopping)
                if self._stopping:
                    return
                job = self._work.popleft()
                self._busy = True
            try:
                job()
            except Exception:  # the bus guards handlers; this is a bug in the twin itself
                log.exception("memory broker: delivery failed")
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()


class MemoryBus:
    """One client's connection to a :class:`MemoryBroker`, keeping the :class:`wire.bus.Bus`
    promises. ``drop()`` vanishes as a crash would (the broker publishes the Last Will);
    ``persistent=True`` keeps subscriptions and queues QoS 1 messages while away."""

    def __init__(self, broker: MemoryBroker, *, client_id: str, persistent: bool = False,
                 will: Will | None = None, on_handler_error: HandlerErrorHook | None = None,
                 manual_ack: bool = False, max_packet_size: int = MAX_PACKET_SIZE) -> None:
        self.broker = broker
        self.client_id = client_id
        self._size = PacketSizeGuard(client_id, max_packet_size)
        self.persistent = persistent
        self.connected = threading.Event()
        self.received = 0
        self._manual_ack = manual_ack
        self._will = will
        self._will_to_send = will
        self._guard = HandlerGuard(client_id, on_handler_error)
        self._lock = threading.Lock()
        self._handlers: list[tuple[str, int, Handler]] = []
        self._delivery_handlers: list[tuple[str, int, DeliveryHandler]] = []
        self._listeners: list[Callable[[], None]] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self._outgoing: list[tuple[_Message, MemoryReceipt]] = []  # QoS 1 while disconnected

    # lifecycle ----------------------------------------------------------------------------

    def start(self, *, timeout: float = 10.0) -> MemoryBus:
        """Connect: renew subscriptions, send what waited, run the connect listeners."""
        self.connected.set()
        self.broker._connect(self, self._will_to_send)
        with self._lock:
            waiting, self._outgoing = self._outgoing, []
        for message, receipt in waiting:
            self.broker._publish(message)
            receipt._mark()
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("%s: on-connect listener failed", self.client_id)
        return self

    def stop(self) -> None:
        """Say goodbye properly (no Last Will). Safe twice."""
        if self.connected.is_set():
            self.connected.clear()
            self.broker._disconnect(self, graceful=True)
            self._lost()

    def drop(self) -> None:
        """Vanish as a crash or a pulled cable would: the broker publishes our Last Will."""
        if self.connected.is_set():
            self.connected.clear()
            self.broker._disconnect(self, graceful=False)
            self._lost()

    def _kicked(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self._lost()

    def _lost(self) -> None:
        for listener in list(self._disconnect_listeners):
            try:
                listener()
            except Exception:
                log.exception("%s: on-disconnect listener failed", self.client_id)

    def __enter__(self) -> MemoryBus:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def when_connected(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def when_disconnected(self, listener: Callable[[], None]) -> None:
        """As :meth:`wire.mqtt.MqttBus.when_disconnected` (run on the thread that dropped)."""
        self._disconnect_listeners.append(listener)

    # messaging ----------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> MemoryReceipt:
        """As :meth:`wire.mqtt.MqttBus.publish`, with the same size refusal."""
        message = _Message(topic, body_of(payload), qos, retain)
        self._size.check(topic, message.payload, qos)
        if self.connected.is_set():
            self.broker._publish(message)
            return MemoryReceipt(True)
        receipt = MemoryReceipt(False)
        if qos > 0:  # paho keeps QoS 1 messages for the next connection; QoS 0 is lost
            with self._lock:
                self._outgoing.append((message, receipt))
        return receipt

    def when_refused(self, listener: RefusalListener) -> None:
        self._size.listen(listener)

    @property
    def max_packet_size(self) -> int:
        return self._size.limit

    @property
    def oversized(self) -> int:
        return self._size.refused

    def publish_and_wait(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                         retain: bool = False, timeout: float = 10.0) -> None:
        if not self.connected.is_set():
            raise BrokerError(f"{self.client_id}: {topic} not acknowledged: not connected")
        self.publish(topic, payload, qos=qos, retain=retain)

    @property
    def handler_errors(self) -> int:
        return self._guard.errors

    @property
    def manual_ack(self) -> bool:
        return self._manual_ack

    def enable_manual_ack(self) -> None:
        if self.connected.is_set():
            raise BrokerError(f"{self.client_id}: manual acknowledgement must be chosen "
                              "before the bus starts")
        self._manual_ack = True

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        with self._lock:
            self._handlers.append((topic_filter, qos, handler))
        if self.connected.is_set():
            self.broker._subscribe(self, topic_filter, qos)

    def subscribe_deliveries(self, topic_filter: str, handler: DeliveryHandler, *,
                             qos: int = 1) -> None:
        if not self._manual_ack:
            raise BrokerError(f"{self.client_id}: subscribe_deliveries needs "
                              "MemoryBus(manual_ack=True)")
        with self._lock:
            self._delivery_handlers.append((topic_filter, qos, handler))
        if self.connected.is_set():
            self.broker._subscribe(self, topic_filter, qos)

    # the broker side ----------------------------------------------------------------------

    def _filters(self) -> dict[str, int]:
        with self._lock:
            pairs = [(f, q) for f, q, _ in self._handlers]
            pairs += [(f, q) for f, q, _ in self._delivery_handlers]
        return dict(pairs)

    def _delivers(self, topic: str) -> bool:
        """Whether a manual-ack consumer will take this message (so the broker keeps it)."""
        with self._lock:
            return self._manual_ack and any(
                topic_matches_sub(f, topic) for f, _q, _h in self._delivery_handlers)

    def _receive(self, topic: str, payload: bytes, *, qos: int, mid: int, redelivered: bool,
                 on_ack: Callable[[], None], only: str | None) -> None:
        """On the broker's dispatch thread: run the handlers this message is for."""
        self.received += 1
        with self._lock:
            handlers = [h for f, _q, h in self._handlers
                        if (only is None or f == only) and topic_matches_sub(f, topic)]
            consumers = [h for f, _q, h in self._delivery_handlers
                         if (only is None or f == only) and topic_matches_sub(f, topic)]
        for handler in handlers:
            self._guard.run(topic, payload, lambda h=handler: h(topic, payload))  # type: ignore[misc]
        if not self._manual_ack:
            return
        delivery = Delivery(topic, payload, qos=qos, mid=mid, redelivered=redelivered,
                            on_ack=on_ack)
        for consumer in consumers:
            if not self._guard.run(topic, payload, lambda c=consumer: c(delivery)):  # type: ignore[misc]
                delivery.ack()  # handed to the error hook: holding it would stall the window
        if not consumers:
            delivery.ack()
