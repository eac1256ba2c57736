"""The bus seam: what a lane, a sensor bridge or the gateway needs from MQTT, and nothing more.

Two implementations keep the same promises: :class:`wire.mqtt.MqttBus` (paho, a real broker)
and :class:`wire.memory.MemoryBus` (one process, no sockets, for unit tests and the
simulator's fast paths). Code above the wire takes a :class:`Bus`, so it is tested on the
in-memory twin with a manual clock and no sleeps, and a few end-to-end tests keep the real
Mosquitto.

The promises both keep:
- handlers run on the bus's own thread (never the publisher's), one message at a time, in
  the order the broker delivered them; a handler that raises is counted, logged and handed
  to ``on_handler_error`` (a bad message must not stop the bus);
- subscriptions survive reconnects; ``when_connected`` listeners run after every connect,
  ``when_disconnected`` listeners once each time a connection is lost or closed (the lane
  then stops asking a gateway it cannot reach, :mod:`firmware.lane.deciding`);
- a QoS 1 publish returns a :class:`Receipt` that says when the broker has it;
- with ``manual_ack`` a :class:`Delivery` stays the broker's until :meth:`Delivery.ack`;
- a publish whose packet is over the broker's ``max_packet_size`` is refused with
  :class:`wire.mqtt.PacketTooLarge` before it is queued (the broker would disconnect the
  sender and a QoS 1 packet would be resent on every reconnect), counted and told to the
  ``when_refused`` listeners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from wire.contract.messages import WireMessage

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]
HandlerErrorHook = Callable[[str, bytes, BaseException], None]
#: Called with ``(topic, packet_size, limit)`` when a publish is refused for size.
RefusalListener = Callable[[str, int, int], None]


class Delivery:
    """One received message that stays the broker's responsibility until :meth:`ack`.

    ``ack`` may be called from any thread, any number of times (the first one counts). The
    bus decides what an ack means (``on_ack``): :class:`wire.mqtt.MqttBus` drops an ack from an
    earlier connection rather than risk acknowledging a different message with a reused
    packet id; the resent copy is acknowledged instead.
    """

    __slots__ = ("_acked", "_on_ack", "mid", "payload", "qos", "redelivered", "topic")

    def __init__(self, topic: str, payload: bytes, *, qos: int, mid: int,
                 redelivered: bool = False, on_ack: Callable[[], None] | None = None) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid
        self.redelivered = redelivered
        self._on_ack = on_ack
        self._acked = on_ack is None or qos == 0  # nothing to acknowledge

    @classmethod
    def detached(cls, topic: str, payload: bytes) -> Delivery:
        """A delivery nobody needs to acknowledge (tests, messages made in-process)."""
        return cls(topic, payload, qos=0, mid=0)

    @property
    def acked(self) -> bool:
        return self._acked

    def ack(self) -> None:
        """Tell the broker we have the message for good (QoS 1 PUBACK); idempotent."""
        if self._acked:
            return
        self._acked = True
        if self._on_ack is not None:
            self._on_ack()

    def __repr__(self) -> str:
        return (f"Delivery({self.topic!r}, mid={self.mid}, qos={self.qos}, "
                f"acked={self._acked})")


DeliveryHandler = Callable[[Delivery], None]


class Receipt(Protocol):
    """What a publish returns: whether the broker has the message yet."""

    def acknowledged(self) -> bool | None:
        """True once the broker has it, False while it may still get it, None if the bus gave
        up on it (it will never be sent: hand it over again)."""
        ...


@runtime_checkable
class Bus(Protocol):
    """One client's connection to the site broker (see the module docstring for the promises)."""

    client_id: str
    connected: threading.Event

    def start(self, *, timeout: float = 10.0) -> Bus: ...

    def stop(self) -> None: ...

    def when_connected(self, listener: Callable[[], None]) -> None: ...

    def when_disconnected(self, listener: Callable[[], None]) -> None: ...

    def when_refused(self, listener: RefusalListener) -> None: ...

    @property
    def max_packet_size(self) -> int: ...

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> Receipt: ...

    def publish_and_wait(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                         retain: bool = False, timeout: float = 10.0) -> None: ...

    def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None: ...

    def subscribe_deliveries(self, topic_filter: str, handler: DeliveryHandler, *,
                             qos: int = 1) -> None: ...

    @property
    def manual_ack(self) -> bool: ...

    def enable_manual_ack(self) -> None: ...


def body_of(payload: bytes | WireMessage) -> bytes:
    """The bytes that go on the wire for a payload given as bytes or as a contract model."""
    return payload.to_json() if isinstance(payload, WireMessage) else payload


class HandlerGuard:
    """Runs handlers so that one that raises is counted, logged and handed to the error hook,
    and never ends the bus's thread (paho ends its network loop if a callback raises)."""

    def __init__(self, client_id: str, on_error: HandlerErrorHook | None) -> None:
        self._client_id = client_id
        self._on_error = on_error
        self.errors = 0

    def run(self, topic: str, payload: bytes, call: Callable[[], None]) -> bool:
        """Run one handler; False if it failed (and was reported)."""
        try:
            call()
        except Exception as error:  # a handler must never end the bus's thread
            self.errors += 1
            log.exception("%s: handler failed on %s", self._client_id, topic)
            if self._on_error is not None:
                try:
                    self._on_error(topic, payload, error)
                except Exception:
                    log.exception("%s: handler error hook failed", self._client_id)
            return False
        return True
