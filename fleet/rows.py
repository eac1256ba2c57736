"""What one message from the stream becomes in the fleet's database: pure, no IO.

A message is read with the site's own wire contract (:func:`wire.contract.messages.decode`), so
the fleet refuses exactly what a site gateway refuses; a message that does not read is a dead
letter with its reason, never an exception out of the consumer.

Idempotency: a lane event is keyed by its ``event_id``; every other message (states, alarms,
sensor readings, taps, audit heads) by the SHA-256 of its subject and payload, so the bridge
resending the same QoS 1 message gives the same key and the second copy changes nothing.

The rows are ``NamedTuple``s, immutable like the frozen dataclasses they were, because the
service builds four of them per message: a frozen dataclass's ``__init__`` sets each field
through ``object.__setattr__`` and cost several times a tuple's (docs/fleet.md, "Scale").
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from typing import NamedTuple

from pydantic import ValidationError

from fleet.natsconf import subject_to_topic
from parkguard.errors import ContractError
from wire.contract.messages import (
    LANE_EVENT,
    AlarmState,
    AuditHead,
    Fault,
    FaultCleared,
    GatewayAvailability,
    LaneState,
    Passed,
    PatrolTap,
    PaymentCode,
    SensorState,
    WireValue,
    decode,
    describe_validation_error,
)
from wire.contract.topics import Topic, parse_topic
from wire.fleet_command import FleetAck, FleetCommand, is_ack_topic, parse_command_topic

#: The settlements in which money was actually taken (wire Settlement; docs/payments.md):
#: the fleet's revenue is the sum of these exits' fees, as the site's books count them.
MONEY_TAKEN = frozenset({"paid_online", "payment_code", "payment_code_offline", "cash"})
#: Of those, the ones whose money the lane already reported in its own ``payment_code`` event
#: (firmware/lane/gate.py): that event is the payment, the exit only says how it was settled.
#: Counting the exit's fee as well would count the money twice (seen in `parkguard fleet demo`).
PAID_BY_CODE_EVENT = frozenset({"payment_code", "payment_code_offline"})


class Delivered(NamedTuple):
    """One message as JetStream delivered it."""

    subject: str
    payload: bytes
    stream_seq: int


class EventRow(NamedTuple):
    """One ``events`` row: the fields are the columns ``fleet/store.py`` inserts, in order."""

    event_id: str
    site: str
    kind: str
    node: str
    type: str | None
    seq: int | None
    ts: datetime | None
    stream_seq: int
    payload: str


class SessionPassage(NamedTuple):
    """An entry opens a session row, an exit fills in its end (either may arrive first)."""

    site: str
    session_id: str
    direction: str
    lane: str
    plate: str | None
    ts: datetime
    fee_fen: int
    settled: str


class PaymentRow(NamedTuple):
    """One ``payments`` row: the fields are the columns ``fleet/store.py`` inserts, in order."""

    event_id: str
    site: str
    lane: str
    session_id: str | None
    source: str
    settled: str | None
    fee_fen: int
    ts: datetime


class AlarmRow(NamedTuple):
    site: str
    kind: str
    active: bool
    source: str
    zone: str | None
    since: datetime | None
    ts: datetime


class HealthRow(NamedTuple):
    """``online``/``fault`` None means "unchanged" (a fault event says nothing of online)."""

    site: str
    device: str
    online: bool | None
    fault: str | None
    clears_fault: bool
    detail: str | None
    ts: datetime


class TapRow(NamedTuple):
    event_id: str
    site: str
    reader: str
    seq: int
    tag_id: str
    badge: str
    reader_time: datetime


class AuditHeadRow(NamedTuple):
    site: str
    length: int
    head_hash: str
    ts: datetime


class Rows(NamedTuple):
    """Everything one message writes; every row but ``event`` is optional."""

    event: EventRow
    session: SessionPassage | None = None
    payment: PaymentRow | None = None
    alarm: AlarmRow | None = None
    health: tuple[HealthRow, ...] = ()
    tap: TapRow | None = None
    audit_head: AuditHeadRow | None = None
    ack: FleetAck | None = None


class DeadLetter(NamedTuple):
    subject: str
    stream_seq: int
    reason: str
    payload: bytes


def content_id(subject: str, payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(subject.encode() + b"\x00" + payload).hexdigest()


#: A fleet sees the same few topics per lane over and over: read each one once (Topic is frozen).
_parsed = functools.lru_cache(maxsize=8192)(parse_topic)


@functools.lru_cache(maxsize=8192)
def _route(subject: str) -> tuple[str, bool]:
    """A subject's topic, and whether it is fleet command traffic (an ack or a command): the
    same few subjects come again and again. A topic that fails its checks raises each time
    (lru_cache keeps no exceptions)."""
    topic = subject_to_topic(subject)
    return topic, bool(is_ack_topic(topic) or parse_command_topic(topic))


def read(message: Delivered) -> Rows | DeadLetter:
    """The rows ``message`` writes, or why it cannot be kept."""
    topic, fleet_traffic = _route(message.subject)
    if fleet_traffic:
        return _fleet_command_traffic(message, topic)
    try:
        where = _parsed(topic)
        if where.kind == "bridge_state":
            return _bridge_state(message, where)
        value = _decode(topic, where, message.payload)
    except ContractError as error:
        return DeadLetter(message.subject, message.stream_seq, str(error), message.payload)
    return _rows(message, where, value)


def _decode(topic: str, where: Topic, payload: bytes) -> WireValue:
    """:func:`decode` for a topic already parsed. A lane event (nearly all a fleet reads) is
    read here with the contract's own ``LANE_EVENT`` adapter and the same lane check, which
    spares decode's second parse of the topic and its look for a ``site`` field lane events
    do not have (a third of the reading time in the bench); everything else goes to decode.
    ``tests/fleet/test_fleet_rows.py`` holds the two to the same answers."""
    if where.kind != "lane_event":
        return decode(topic, payload)
    try:
        event = LANE_EVENT.validate_json(payload)
    except ValidationError as error:
        reason = describe_validation_error(error)
        raise ContractError(f"lane_event on {topic}: {reason}") from error
    if event.lane != where.node:
        raise ContractError(f"lane_event on {topic}: payload lane={event.lane!r} does not "
                            f"match the topic's {where.node!r}")
    return event


def _fleet_command_traffic(message: Delivered, topic: str) -> Rows | DeadLetter:
    """The sites' acks (also ``fleet_acks``), and a fleet command should one come back (the
    service reads only what MQTT clients sent since it reads ``$MQTT_msgs``; the commands it
    sends are in ``fleet_commands``, recorded before they leave)."""
    site = topic.split("/")[2]
    ack = None
    if is_ack_topic(topic):
        try:
            ack = FleetAck.model_validate_json(message.payload)
        except ValidationError as error:
            return DeadLetter(message.subject, message.stream_seq,
                              f"fleet_ack: {error.errors()[0]['msg']}", message.payload)
        if ack.site != site:
            return DeadLetter(message.subject, message.stream_seq,
                              f"fleet_ack: site {ack.site!r} on {site}'s topic", message.payload)
    else:
        try:  # the fleet's own command, kept as sent; what does not read is a dead letter
            FleetCommand.model_validate_json(message.payload)
        except ValidationError as error:
            return DeadLetter(message.subject, message.stream_seq,
                              f"fleet_command: {error.errors()[0]['msg']}", message.payload)
    kind = "fleet_ack" if ack is not None else "fleet_command"
    event = EventRow(content_id(message.subject, message.payload), site, kind,
                     "fleet", ack.status if ack else None, None, ack.ts if ack else None,
                     message.stream_seq, message.payload.decode("utf-8", errors="replace"))
    return Rows(event=event, ack=ack)


def _bridge_state(message: Delivered, where: Topic) -> Rows | DeadLetter:
    """The Mosquitto bridge's own ``1``/``0`` notification (not JSON)."""
    text = message.payload.decode("utf-8", errors="replace").strip()
    if text not in ("0", "1"):
        return DeadLetter(message.subject, message.stream_seq,
                          f"bridge_state: expected 0 or 1, got {text[:20]!r}", message.payload)
    event = EventRow(content_id(message.subject, message.payload), where.site, where.kind,
                     "bridge", None, None, None, message.stream_seq,
                     json.dumps({"connected": text == "1"}))
    return Rows(event=event)


def _rows(message: Delivered, where: Topic, value: WireValue) -> Rows:
    # The payload is kept as it came (it is valid JSON: the contract just read it).
    event_id = getattr(value, "event_id", None) or content_id(message.subject, message.payload)
    ts = getattr(value, "ts", None)
    seq = getattr(value, "seq", None)
    kind = getattr(value, "type", None)
    event = EventRow(event_id=event_id, site=where.site, kind=where.kind, node=where.node,
                     type=kind if isinstance(kind, str) else None,
                     seq=seq if isinstance(seq, int) else None,
                     ts=ts if isinstance(ts, datetime) else None,
                     stream_seq=message.stream_seq, payload=message.payload.decode("utf-8"))
    site = where.site
    if isinstance(value, Passed):
        return _passed(event, value)
    if isinstance(value, PaymentCode):
        return Rows(event=event, payment=PaymentRow(event_id, site, value.lane, value.session_id,
                                                     "payment_code", "payment_code",
                                                     value.fee_fen, value.ts))
    if isinstance(value, Fault | FaultCleared):
        cleared = isinstance(value, FaultCleared)
        return Rows(event=event, health=(HealthRow(
            site, f"lane:{value.lane}", None, None if cleared else value.code, cleared,
            value.detail, value.ts),))
    if isinstance(value, LaneState):
        return Rows(event=event, health=(HealthRow(site, f"lane:{value.lane}", value.online,
                                                   None, False, value.mode, value.ts),))
    if isinstance(value, SensorState):
        return Rows(event=event, health=(HealthRow(site, f"sensor:{value.node}", value.online,
                                                   None, False, None, value.ts),))
    if isinstance(value, GatewayAvailability):
        return Rows(event=event, health=(HealthRow(site, "gateway", value.state == "online",
                                                   None, False, None, value.ts),))
    if isinstance(value, AlarmState):
        return Rows(event=event, alarm=AlarmRow(site, value.kind, value.active, value.source,
                                                value.zone, value.since, value.ts))
    if isinstance(value, AuditHead):
        return Rows(event=event, audit_head=AuditHeadRow(site, value.length, value.head_hash,
                                                         value.ts))
    if isinstance(value, PatrolTap):
        return Rows(event=event, tap=TapRow(event_id, site, value.reader, value.seq,
                                            value.tag_id, value.badge, value.reader_time))
    return Rows(event=event)


def _passed(event: EventRow, value: Passed) -> Rows:
    session = None
    if value.session_id is not None:
        session = SessionPassage(event.site, value.session_id, value.direction, value.lane,
                                 value.plate, value.ts, value.fee_fen, value.settled)
    payment = None
    if value.direction == "exit":
        payment = PaymentRow(event.event_id, event.site, value.lane, value.session_id, "exit",
                             value.settled, _exit_money(value),
                             value.ts)
    return Rows(event, session, payment)


def _exit_money(value: Passed) -> int:
    """The fen an exit adds to revenue: its fee when money was taken at the exit itself."""
    taken = value.settled in MONEY_TAKEN and value.settled not in PAID_BY_CODE_EVENT
    return value.fee_fen if taken else 0
