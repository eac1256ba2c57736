"""Thin MQTT adapter: paho behind ``start / publish / subscribe / stop``.

Why a wrapper at all: paho re-raises exceptions from ``on_message`` and that
ends its network loop, so every handler here is guarded (counted, logged and
handed to ``on_handler_error`` for dead-lettering); and paho leaves Nagle on,
which costs 40-90 ms per request/response on loopback, so every socket gets
``TCP_NODELAY``.

Acknowledgements: by default paho acknowledges a QoS 1 message as soon as the handler
returns, i.e. before anyone has stored it, so a crash right after loses it for good. A
consumer that must not lose messages (the gateway) opts in with ``manual_ack=True`` and
:meth:`MqttBus.subscribe_deliveries`: its handler gets a :class:`Delivery` and calls
:meth:`Delivery.ack` once the message is safe (committed); until then the broker keeps it
and redelivers it on the next connection.

Size: Mosquitto disconnects a client that sends a packet over its ``max_packet_size``, and
paho keeps an unacknowledged QoS 1 packet and resends it on every reconnect, so one
oversized publish would knock the client off the bus again and again. :meth:`MqttBus.publish`
therefore measures the packet first and refuses one over the limit with
:class:`PacketTooLarge` (counted in ``oversized``, told to ``when_refused`` listeners): paho
never holds it. Whatever grows with the site must be cut to size before it reaches the bus
(the lane replicas are sent in chunks, ``docs/replicas.md``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

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

log = logging.getLogger(__name__)

def publish_packet_size(topic: str, payload_size: int, *, qos: int) -> int:
    """Bytes of the MQTT 3.1.1 PUBLISH packet for ``payload_size`` bytes on ``topic``: what
    Mosquitto compares with ``max_packet_size`` (fixed header, topic, packet id, payload).

    >>> publish_packet_size("a/b", 10, qos=1)
    19
    """
    remaining = 2 + len(topic.encode("utf-8")) + (2 if qos > 0 else 0) + payload_size
    length_bytes = 1
    while remaining >= 128 ** length_bytes and length_bytes < 4:
        length_bytes += 1
    return 1 + length_bytes + remaining


def max_payload_size(topic: str, *, qos: int, limit: int) -> int:
    """The largest payload on ``topic`` whose packet stays within ``limit`` bytes."""
    return limit - publish_packet_size(topic, 0, qos=qos) - 3  # up to 3 more length bytes


class PacketTooLarge(BrokerError):
    """A publish refused before it reached paho: the broker would disconnect us for it."""

    def __init__(self, client_id: str, topic: str, size: int, limit: int) -> None:
        super().__init__(f"{client_id}: refused to publish {size} bytes on {topic}: over the "
                         f"broker's max_packet_size of {limit} bytes (it would disconnect us "
                         "and paho would resend it on every reconnect)")
        self.topic, self.size, self.limit = topic, size, limit


class PacketSizeGuard:
    """Refuses a publish over the broker's ``max_packet_size`` before any client library holds
    it; counts refusals and tells listeners. Shared by :class:`MqttBus` and the in-memory twin
    so both keep the same promise."""

    def __init__(self, client_id: str, limit: int) -> None:
        if limit < 64:
            raise BrokerError(f"{client_id}: max_packet_size must be at least 64 bytes, "
                              f"got {limit}")
        self.client_id = client_id
        self.limit = limit
        self.refused = 0
        self._listeners: list[RefusalListener] = []

    def listen(self, listener: RefusalListener) -> None:
        self._listeners.append(listener)

    def check(self, topic: str, body: bytes, qos: int) -> None:
        """Return if the packet fits; else count, log, tell listeners, raise PacketTooLarge."""
        size = publish_packet_size(topic, len(body), qos=qos)
        if size <= self.limit:
            return
        self.refused += 1
        error = PacketTooLarge(self.client_id, topic, size, self.limit)
        log.error("%s", error)
        for listener in self._listeners:
            try:
                listener(topic, size, self.limit)
            except Exception:
                log.exception("%s: refusal listener failed", self.client_id)
        raise error


class MqttReceipt:
    """paho's publish handle as a :class:`wire.bus.Receipt`."""

    __slots__ = ("info",)

    def __init__(self, info: paho.MQTTMessageInfo) -> None:
        self.info = info

    def acknowledged(self) -> bool | None:
        info = self.info
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            return info.is_published()
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            # Handed over while the connection was dropping: paho keeps it and sends it after
            # the reconnect, but ``is_published`` refuses to look. Read the flag it would read.
            return bool(info._published)
        return None


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us if we vanish without saying goodbye."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to prove who we are: TLS when ``ca_file`` is set."""

    host: str
    port: int
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    max_packet_size: int = MAX_PACKET_SIZE
    """The broker's ``max_packet_size``: the bus never sends a bigger packet."""


class MqttBus:
    """One MQTT connection with guarded handlers, resubscription and Nagle off.

    ``persistent=True`` asks the broker to keep our subscriptions and queue
    QoS 1 messages while we are away (clean session off): what the gateway needs
    so nothing is lost while it restarts.

    ``manual_ack=True`` defers the QoS 1 acknowledgement of messages taken through
    :meth:`subscribe_deliveries` until their consumer calls :meth:`Delivery.ack`; messages
    only plain :meth:`subscribe` handlers want are still acknowledged when the handlers
    return, so one bus can serve both kinds. The broker sends at most its
    ``max_inflight_messages`` unacknowledged messages at a time: a consumer that holds
    acks for a batch should keep batches below that window.

    ``max_packet_size`` (default: the address's, i.e. the broker's configured limit): a
    publish whose packet would be bigger raises :class:`PacketTooLarge` instead of being
    handed to paho (see the module docstring).
    """

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        persistent: bool = False,
        will: Will | None = None,
        keepalive: int = 15,
        on_handler_error: HandlerErrorHook | None = None,
        manual_ack: bool = False,
        max_packet_size: int | None = None,
    ) -> None:
        self.address = address
        self._size = PacketSizeGuard(client_id, address.max_packet_size
                                     if max_packet_size is None else max_packet_size)
        self.client_id = client_id
        self._manual_ack = manual_ack
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=paho.MQTTv311,
            manual_ack=manual_ack,
        )
        self._keepalive = keepalive
        self._handlers: list[tuple[str, int, Handler]] = []
        self._delivery_handlers: list[tuple[str, int, DeliveryHandler]] = []
        self._lock = threading.Lock()
        self._connection = 0  # bumped on every connect and disconnect: which socket a mid is on
        self._guard = HandlerGuard(client_id, on_handler_error)
        self._connect_listeners: list[Callable[[], None]] = []
        self._disconnect_listeners: list[Callable[[], None]] = []
        self.connected = threading.Event()
        self._answered = threading.Event()
        self.refused: str | None = None
        self.received = 0
        self.acks_sent = 0
        self.stale_acks = 0  # acks dropped because the message came on an earlier connection
        self.disconnects = 0  # connections lost or closed since construction
        if address.ca_file is not None:
            self._client.tls_set(ca_certs=str(address.ca_file))
        if address.username is not None:
            self._client.username_pw_set(address.username, address.password)
        if will is not None:
            self._client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open

    # lifecycle ---------------------------------------------------------------

    def start(self, *, timeout: float = 10.0) -> MqttBus:
        """Connect and start the network thread; wait until the broker has said yes."""
        where = f"{self.address.host}:{self.address.port}"
        self._client.connect_async(self.address.host, self.address.port, self._keepalive)
        self._client.loop_start()
        self._answered.wait(timeout)
        if self.connected.is_set():
            return self
        self._client.disconnect()
        self._client.loop_stop()
        if self.refused is not None:
            raise BrokerError(f"{self.client_id}: {where} refused the connection: {self.refused}")
        raise BrokerError(f"{self.client_id}: no CONNACK from {where} within {timeout:.0f} s")

    def stop(self) -> None:
        """Say goodbye properly (no Last Will) and stop the network thread. Safe twice."""
        self._client.disconnect()
        self._client.loop_stop()
        self._lost()

    def drop(self) -> None:
        """Vanish as a crash or a pulled cable would: the broker publishes our Last Will."""
        self._client.loop_stop()
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._lost()

    def __enter__(self) -> MqttBus:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def when_connected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every (re)connect, e.g. to republish a retained online state."""
        self._connect_listeners.append(listener)

    def when_disconnected(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once each time the connection is lost or closed (paho's network
        thread, or the thread that called :meth:`stop`/:meth:`drop`): keep it short."""
        self._disconnect_listeners.append(listener)

    def _lost(self) -> None:
        """Mark the connection gone; the disconnect listeners run if it was up."""
        with self._lock:
            was = self.connected.is_set()
            self.connected.clear()
        if not was:
            return
        for listener in self._disconnect_listeners:
            try:
                listener()
            except Exception:
                log.exception("%s: on-disconnect listener failed", self.client_id)

    def when_refused(self, listener: RefusalListener) -> None:
        """Call ``listener(topic, size, limit)`` whenever a publish is refused for size (on
        the publisher's thread, before :class:`PacketTooLarge` is raised): the gateway raises
        an alert, since something it meant to say never left."""
        self._size.listen(listener)

    @property
    def max_packet_size(self) -> int:
        """The broker's limit this bus enforces on every publish."""
        return self._size.limit

    @property
    def oversized(self) -> int:
        """Publishes refused for size (never handed to paho)."""
        return self._size.refused

    # messaging ---------------------------------------------------------------

    def publish(
        self, topic: str, payload: bytes | WireMessage, *, qos: int = 1, retain: bool = False
    ) -> MqttReceipt:
        """Hand one message to paho; :class:`PacketTooLarge` if the broker would refuse it."""
        body = body_of(payload)
        self._size.check(topic, body, qos)
        return MqttReceipt(self._client.publish(topic, body, qos=qos, retain=retain))

    def publish_and_wait(
        self,
        topic: str,
        payload: bytes | WireMessage,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float = 10.0,
    ) -> None:
        """Publish and return only once the broker has acknowledged (QoS 1 PUBACK)."""
        info = self.publish(topic, payload, qos=qos, retain=retain).info
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise BrokerError(f"{self.client_id}: {topic} not acknowledged within {timeout} s")

    @property
    def handler_errors(self) -> int:
        """Handlers that raised (each counted, logged and handed to ``on_handler_error``)."""
        return self._guard.errors

    @property
    def manual_ack(self) -> bool:
        return self._manual_ack

    def enable_manual_ack(self) -> None:
        """Opt in to ``manual_ack`` after construction, before :meth:`start`.

        For a consumer handed a bus it did not build (the gateway's service): it can insist
        on acknowledging after commit without every assembler knowing why.
        """
        if self._manual_ack:
            return
        if self._client.is_connected() or self.connected.is_set():
            raise BrokerError(f"{self.client_id}: manual acknowledgement must be chosen "
                              "before the bus starts")
        self._client.manual_ack_set(True)
        self._manual_ack = True

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call ``handler(topic, payload)`` for every message matching the filter.

        Handlers run on paho's network thread: keep them short (enqueue, set an
        event). Subscriptions are renewed on every reconnect.
        """
        with self._lock:
            self._handlers.append((topic_filter, qos, handler))
        if self.connected.is_set():
            self._client.subscribe(topic_filter, qos=qos)

    def subscribe_deliveries(
        self, topic_filter: str, handler: DeliveryHandler, *, qos: int = 1
    ) -> None:
        """Call ``handler(delivery)`` for every matching message; the consumer acknowledges it.

        Needs ``manual_ack=True``: without it paho has acknowledged the message before the
        handler runs, and a consumer that believes otherwise would lose messages silently.
        One delivery consumer per message: if several filters match, they share one
        :class:`Delivery` and the first ``ack`` counts.
        """
        if not self._manual_ack:
            raise BrokerError(f"{self.client_id}: subscribe_deliveries needs "
                              "MqttBus(manual_ack=True)")
        with self._lock:
            self._delivery_handlers.append((topic_filter, qos, handler))
        if self.connected.is_set():
            self._client.subscribe(topic_filter, qos=qos)

    def _ack(self, mid: int, qos: int, connection: int) -> None:
        with self._lock:
            if connection != self._connection:
                self.stale_acks += 1
                return
            self._client.ack(mid, qos)
            self.acks_sent += 1

    # paho callbacks --------------------------------------------------------------

    def _on_socket_open(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_connect(
        self,
        client: paho.Client,
        _userdata: Any,
        _flags: paho.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            self._answered.set()
            log.error("%s: broker refused connection: %s", self.client_id, reason)
            return
        with self._lock:
            self._connection += 1
            filters = [(f, q) for f, q, _ in self._handlers]
            filters += [(f, q) for f, q, _ in self._delivery_handlers]
        for topic_filter, qos in dict(filters).items():
            client.subscribe(topic_filter, qos=qos)
        self.connected.set()
        self._answered.set()
        for listener in self._connect_listeners:
            try:
                listener()
            except Exception:
                log.exception("%s: on-connect listener failed", self.client_id)
        log.info("%s: connected to %s:%s", self.client_id, self.address.host, self.address.port)

    def _on_disconnect(
        self,
        _client: paho.Client,
        _userdata: Any,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        with self._lock:
            self._connection += 1  # what was not acknowledged will be resent: drop late acks
            self.disconnects += 1
        self._lost()
        log.info("%s: disconnected (%s)", self.client_id, reason)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self.received += 1
        topic = msg.topic
        with self._lock:
            handlers = [h for f, _q, h in self._handlers if paho.topic_matches_sub(f, topic)]
            consumers = [h for f, _q, h in self._delivery_handlers
                         if paho.topic_matches_sub(f, topic)]
            connection = self._connection
        payload = bytes(msg.payload)
        for handler in handlers:
            self._guard.run(topic, payload, partial(handler, topic, payload))
        if not self._manual_ack:
            return
        delivery = Delivery(topic, payload, qos=msg.qos, mid=msg.mid, redelivered=bool(msg.dup),
                            on_ack=partial(self._ack, msg.mid, msg.qos, connection))
        for consumer in consumers:
            if not self._guard.run(topic, payload, partial(consumer, delivery)):
                delivery.ack()  # handed to on_handler_error: holding it would stall the window
        if not consumers:
            delivery.ack()  # only plain handlers wanted it: acknowledged as paho would
