"""Payload models for every message on the bus (JSON, UTF-8, version field ``v``).

Received messages are frozen values. Decoding never raises anything but
:class:`~parkguard.errors.ContractError`, whose message names the field and
the reason, so a handler can dead-letter a bad payload in one ``except``.

>>> state = LaneState(lane="in1", online=True, direction="entry", ts="2026-05-01T02:00:00Z")
>>> LaneState.from_json(state.to_json()) == state
True
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Self, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NaiveDatetime,
    PlainSerializer,
    Strict,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from parkguard.clock import utc_iso
from parkguard.errors import ContractError
from wire.contract.topics import TopicKind, check_segment, parse_topic

PROTOCOL_VERSION: Final = 1

#: The largest integer on the wire: 2^53 - 1 is exact as a JSON double (the dashboard's
#: JavaScript) and fits SQLite's signed 64-bit INTEGER, so whatever passes can be stored and shown.
MAX_INT: Final = 2**53 - 1
#: Every time on the wire lies in [EARLIEST, LATEST): far enough from year 1 and 9999 that
#: converting it to any site's zone, or adding a day or a pass's length to it, cannot overflow.
#: How close a message's own stamp must be to the receiver's clock is the receiver's check
#: (wire.contract.window).
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
_TIME_RANGE: Final = "times must lie in 2000-2099 (UTC)"
_DAY: Final = timedelta(days=1)


def _to_utc(value: datetime) -> datetime:
    try:
        moment = value.astimezone(UTC)
    except OverflowError as error:  # e.g. 9999-12-31T23:59-05:00 has no UTC equivalent
        raise ValueError(f"time is out of range once converted to UTC: {_TIME_RANGE}") from error
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"{utc_iso(moment)} is out of range: {_TIME_RANGE}")
    # milliseconds, as the wire carries it: a value equals what it decodes to after travel
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _local_in_range(value: datetime) -> datetime:
    """A naive local time, kept a day inside the range so any zone's offset keeps it there."""
    if not EARLIEST.replace(tzinfo=None) + _DAY <= value < LATEST.replace(tzinfo=None) - _DAY:
        raise ValueError(f"{value.isoformat()} is out of range: {_TIME_RANGE}")
    return value


def _integer_only(value: Any) -> Any:
    """``v`` is a JSON integer: ``true`` or ``1.0`` equal 1 in Python but are not version 1."""
    if type(value) is not int:
        raise ValueError(f"the protocol version must be a JSON integer, not {value!r}")
    return value


UtcTime = Annotated[
    AwareDatetime,
    AfterValidator(_to_utc),
    PlainSerializer(utc_iso, return_type=str),
    Field(description="UTC instant, ISO-8601 with milliseconds, in 2000-2099, "
                      "e.g. 2026-05-01T02:00:00.000Z"),
]
def _within_json_range(value: int) -> int:
    if not -MAX_INT <= value <= MAX_INT:
        raise ValueError(f"integer outside +-2^53 (what JSON carries exactly): {value}")
    return value


#: A JSON integer (never a string, a float or a bool) within +-2^53. The range is a validator,
#: not ``Field(ge=, le=)``: a field's own ``Field(ge=2)`` would be overridden by this one's.
WireInt = Annotated[int, Strict(), AfterValidator(_within_json_range)]
#: A finite JSON number (never a string, NaN or an infinity).
Finite = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Fen = Annotated[
    WireInt,
    Field(ge=0, description="money in fen (1/100 CNY): a JSON integer, never a float"),
]
NodeId = Annotated[
    str,
    AfterValidator(lambda v: check_segment(v, what="node id")),
    Field(description="id of the lane, node or reader; must match the topic"),
]
EventId = Annotated[
    str,
    Field(
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="globally unique id of this event; the gateway ingests each id once",
    ),
]
CorrelationId = Annotated[
    str,
    Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
          description="ties a decide reply to its request"),
]
Seq = Annotated[WireInt, Field(ge=0, description="per-node monotonic sequence number")]
NoPlateIdentity = Annotated[
    str | None,
    Field(max_length=40, pattern=r"^#[PQ][0-9A-Za-z:_-]+$",
          description="no-plate identity from the kiosk (phone or QR ticket); plate is null"),
]
Confidence = Annotated[Finite, Field(ge=0.0, le=1.0)]
Direction = Literal["entry", "exit"]
BarrierPosition = Literal["opening", "open", "closing", "closed", "unknown"]
LaneMode = Literal["normal", "free_open", "locked", "fire_open", "maintenance"]
GateAction = Literal["open", "refuse"]
Settlement = Literal[
    "decision",              # the decision itself let the car go: nothing was due
    "paid_online",           # the provider confirmed a QR / pay-page payment (gateway's open)
    "payment_code",          # a 付款码 scanned at the lane was charged online (gateway's open)
    "payment_code_offline",  # a 付款码 journaled while the gateway was away: captured later
    "cash",                  # a guard took cash at the dashboard (gateway's open)
    "waived",                # a guard waived the fee at the dashboard (gateway's open)
    "guard_open",            # a guard opened with no money taken: what was due is a debt
    "free_open",             # the lane was held free-open (peak rule): booked free
    "fire",                  # fire mode: billing suspended, booked free
]
"""How a car leaving was let go: the gateway books money only for what was taken
(docs/payments.md). Entries are ``decision``."""


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem: ``field.path: reason`` — what an installer can act on."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "(message)"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


class WireMessage(BaseModel):
    """Base of every payload: frozen, no unknown fields, a protocol version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Annotated[Literal[1], BeforeValidator(_integer_only)] = Field(
        default=PROTOCOL_VERSION, description="protocol version of this payload")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes | str) -> Self:
        try:
            return cls.model_validate_json(raw)
        except ValidationError as error:
            raise ContractError(f"{cls.__name__}: {describe_validation_error(error)}") from error


# Lane events -----------------------------------------------------------------


class _LaneEventBase(WireMessage):
    event_id: EventId
    seq: Seq
    ts: UtcTime
    lane: NodeId


class VehicleDetected(_LaneEventBase):
    """A loop saw a vehicle arrive at the barrier."""

    type: Literal["vehicle_detected"] = "vehicle_detected"
    loop: Literal["arming", "safety"] = "arming"


class PlateRead(_LaneEventBase):
    """What the camera and plate reader made of the vehicle (``plate`` is None when unreadable)."""

    type: Literal["plate_read"] = "plate_read"
    plate: str | None = Field(max_length=16, description="normalised plate text, None if unread")
    confidence: Finite = Field(ge=0.0, le=1.0)
    char_confidences: tuple[Confidence, ...] = Field(default=(), max_length=16)
    reader: str = Field(max_length=32, description="plate reader type that produced it")
    read_ms: Finite = Field(ge=0.0, le=3_600_000, description="time the reader took, milliseconds")


class Decision(_LaneEventBase):
    """The lane's verdict for a vehicle, whoever made it (gateway or the lane alone)."""

    type: Literal["decision"] = "decision"
    correlation_id: CorrelationId
    direction: Direction
    plate: str | None = Field(max_length=16)
    identity: NoPlateIdentity = None
    action: GateAction
    reason: str = Field(max_length=64, description="machine-readable reason code")
    fee_fen: Fen = 0
    session_id: str | None = Field(default=None, max_length=64)
    decided_by: Literal["gateway", "lane"]
    wait_ms: Finite = Field(ge=0.0, le=3_600_000,
                            description="real time spent waiting for the gateway")


class BarrierMoved(_LaneEventBase):
    """The barrier was commanded or reached a position."""

    type: Literal["barrier"] = "barrier"
    position: BarrierPosition
    cause: str = Field(max_length=64)


class Passed(_LaneEventBase):
    """A vehicle has crossed the barrier line (the safety loop cleared behind it)."""

    type: Literal["passed"] = "passed"
    direction: Direction
    plate: str | None = Field(max_length=16)
    identity: NoPlateIdentity = None
    correlation_id: CorrelationId
    session_id: str | None = Field(default=None, max_length=64)
    fee_fen: Fen = 0
    settled: Settlement = Field(
        default="decision",
        description="how the car was let go; the gateway books money only for what was taken")


class Tailgate(_LaneEventBase):
    """More than one vehicle passed on one opening."""

    type: Literal["tailgate"] = "tailgate"
    vehicles: WireInt = Field(ge=2)


class HelpPressed(_LaneEventBase):
    """The driver pressed the intercom help button."""

    type: Literal["help_pressed"] = "help_pressed"


class PaymentCode(_LaneEventBase):
    """An offline payment code shown or scanned at the lane."""

    type: Literal["payment_code"] = "payment_code"
    code: str = Field(min_length=4, max_length=128)
    plate: str | None = Field(max_length=16)
    identity: NoPlateIdentity = None
    session_id: str | None = Field(
        default=None, max_length=64,
        description="the session the lane's decision named, so a code for a car without a "
                    "plate is charged to its stay even when the car has already left")
    fee_fen: Fen


class Fault(_LaneEventBase):
    """Something at the lane is broken and needs a person."""

    type: Literal["fault"] = "fault"
    code: str = Field(max_length=64)
    detail: str = Field(max_length=512)


class FaultCleared(_LaneEventBase):
    """A device fault the lane reported is over (the camera streams, the display answers,
    the keypad is back): ``code`` is the ``fault`` event's it clears."""

    type: Literal["fault_cleared"] = "fault_cleared"
    code: str = Field(max_length=64, description="the code of the fault that is over")
    detail: str = Field(max_length=512)


LaneEvent: TypeAlias = Annotated[
    VehicleDetected
    | PlateRead
    | Decision
    | BarrierMoved
    | Passed
    | Tailgate
    | HelpPressed
    | PaymentCode
    | Fault
    | FaultCleared,
    Field(discriminator="type"),
]
LANE_EVENT: Final[TypeAdapter[LaneEvent]] = TypeAdapter(LaneEvent)
LANE_EVENT_TYPES: Final = (
    VehicleDetected, PlateRead, Decision, BarrierMoved, Passed, Tailgate, HelpPressed,
    PaymentCode, Fault, FaultCleared,
)


# Lane state, commands and decisions -----------------------------------------


class LaneState(WireMessage):
    """Retained: is the lane alive and what is it doing. The offline copy is its Last Will."""

    lane: NodeId
    online: StrictBool
    direction: Direction
    mode: LaneMode = "normal"
    barrier: BarrierPosition = "unknown"
    queue: WireInt = Field(default=0, ge=0, description="vehicles waiting at the lane")
    firmware: str = Field(default="", max_length=32)
    ts: UtcTime


CommandName = Literal["open", "close", "hold_open", "display", "set_mode", "sync"]


class LaneCommand(WireMessage):
    """A signed order to a lane; the lane refuses bad, expired and replayed ones."""

    command: CommandName
    args: dict[Annotated[str, Field(max_length=32)],
               Annotated[str, Field(max_length=256)] | StrictBool | WireInt] = Field(
        default_factory=dict, max_length=16)
    reason: str = Field(default="", max_length=256)
    issuer: str = Field(max_length=64, description="person or service that gave the order")
    nonce: str = Field(min_length=16, max_length=64, pattern=r"^[0-9a-f]+$")
    issued: UtcTime
    expires: UtcTime
    sig: str = Field(default="", pattern=r"^([0-9a-f]{64})?$", description="HMAC-SHA256, hex")

    @model_validator(mode="after")
    def _expires_after_issue(self) -> Self:
        if self.expires <= self.issued:
            raise ValueError("expires must be later than issued")
        return self

    def canonical_bytes(self) -> bytes:
        """The bytes the signature covers: every field but ``sig``, keys sorted, compact."""
        body = self.model_dump(mode="json", exclude={"sig"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def signed(self, key: bytes) -> LaneCommand:
        digest = hmac.new(key, self.canonical_bytes(), hashlib.sha256).hexdigest()
        return self.model_copy(update={"sig": digest})

    def signature_valid(self, key: bytes) -> bool:
        expected = hmac.new(key, self.canonical_bytes(), hashlib.sha256).hexdigest()
        return bool(self.sig) and hmac.compare_digest(expected, self.sig)


class DecideRequest(WireMessage):
    """The lane asks the gateway what to do with the vehicle in front of it."""

    correlation_id: CorrelationId
    lane: NodeId
    direction: Direction
    plate: str | None = Field(max_length=16, description="the read as the lane's reader gave it")
    identity: NoPlateIdentity = None
    confidence: Finite = Field(ge=0.0, le=1.0)
    char_confidences: tuple[Confidence, ...] = Field(
        default=(), max_length=16,
        description="per-character confidence of the read, for fuzzy matching"
    )
    ts: UtcTime
    deadline_ms: WireInt = Field(gt=0, le=60_000,
                                 description="the lane decides alone after this")


class DecideReply(WireMessage):
    """The gateway's word on a decide request."""

    correlation_id: CorrelationId
    action: GateAction
    reason: str = Field(max_length=64)
    fee_fen: Fen = 0
    session_id: str | None = Field(default=None, max_length=64)
    display_zh: str = Field(default="", max_length=64, description="lane display text, Chinese")
    display_en: str = Field(default="", max_length=64, description="lane display text, English")
    pay_url: str | None = Field(
        default=None, max_length=512, pattern=r"^https?://[\x21-\x7e]+$",
        description="exit with a fee due: the pay-page link the lane shows as a QR code")
    ts: UtcTime


# One-time codes for no-plate entries and exits (docs/lane.md#one-time-codes) ---------------

PhoneIdentity = Annotated[
    str,
    Field(max_length=24, pattern=r"^#P[0-9]{4}:[A-Z2-7]{12}$",
          description="the phone's no-plate identity (#P + last four + HMAC): what the code "
                      "is kept and rate-limited under; the number itself is never stored"),
]


class OtpRequest(WireMessage):
    """A lane's kiosk asks the gateway to text a one-time code to a phone (``send``: carries
    the number, which the gateway uses to send and then forgets, never storing it unless the
    driver agrees to be reached) or to check the code the driver typed (``check``: carries
    the code, never the number)."""

    correlation_id: CorrelationId
    lane: NodeId
    action: Literal["send", "check"]
    identity: PhoneIdentity
    phone: str | None = Field(default=None, pattern=r"^1[3-9][0-9]{9}$",
                              description="send only: the mainland mobile number, 11 digits")
    code: str | None = Field(default=None, pattern=r"^[0-9]{4,8}$",
                             description="check only: the digits the driver typed")
    contact_consent: str | None = Field(
        default=None, pattern=r"^[a-z0-9]{1,8}$",
        description="check only: the version of the contact-register wording the driver "
                    "agreed to at the kiosk (docs/contacts.md); absent: no consent")
    ts: UtcTime

    @model_validator(mode="after")
    def _fields_for_action(self) -> Self:
        if self.action == "send" and (self.phone is None or self.code is not None
                                      or self.contact_consent is not None):
            raise ValueError("send carries phone and no code or consent")
        if self.action == "check" and (self.code is None or self.phone is not None):
            raise ValueError("check carries code and no phone")
        return self


OtpOutcome = Literal["sent", "rate_limited", "send_failed", "unavailable", "confirmed", "wrong",
                     "expired", "locked", "no_code"]


class OtpReply(WireMessage):
    """The gateway's answer to an :class:`OtpRequest`: for ``send`` whether the text went out
    (``sent``, ``send_failed``, ``rate_limited``, ``unavailable``: no SMS channel configured);
    for ``check`` ``confirmed``, ``wrong`` (``attempts_left`` more tries), ``locked`` (no
    tries left), ``expired`` or ``no_code``."""

    correlation_id: CorrelationId
    lane: NodeId
    outcome: OtpOutcome
    # not WireInt: its own -2^53..2^53 bounds win over bounds given with Field() here
    attempts_left: Annotated[int, Strict(), Field(ge=0, le=10)] = 0
    expires_at: UtcTime | None = Field(default=None,
                                       description="sent: until when the code works")
    ts: UtcTime


# Sensors, patrols, alarms, alerts --------------------------------------------


class SensorReading(WireMessage):
    """One reading from a sensor node; which fields are set depends on ``kind``."""

    node: NodeId
    seq: Seq
    ts: UtcTime
    kind: Literal["flood", "fire_panel"]
    water_level_mm: WireInt | None = Field(default=None, ge=0, le=10_000)
    pump_running: StrictBool | None = None
    fire: StrictBool | None = None
    trouble: StrictBool | None = None
    supervisory: StrictBool | None = None
    zone: str | None = Field(default=None, max_length=32)
    battery_mv: WireInt | None = Field(default=None, ge=0, le=10_000)

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Self:
        if self.kind == "flood" and self.water_level_mm is None:
            raise ValueError("a flood reading needs water_level_mm")
        if self.kind == "fire_panel" and None in (self.fire, self.trouble, self.supervisory):
            raise ValueError("a fire_panel reading needs fire, trouble and supervisory")
        return self


class SensorState(WireMessage):
    """Retained: is the sensor node alive (offline comes from its Last Will)."""

    node: NodeId
    online: StrictBool
    heartbeat_s: WireInt = Field(gt=0, le=3600)
    firmware: str = Field(default="", max_length=32)
    ts: UtcTime


class PatrolTap(WireMessage):
    """A guard tapped a checkpoint tag; readers buffer offline and upload in order."""

    reader: NodeId
    seq: Seq
    tag_id: str = Field(pattern=r"^[0-9A-F]{8,20}$", description="tag UID, upper-case hex")
    sun: str | None = Field(default=None, max_length=128, description="SUN/CMAC data if any")
    badge: str = Field(min_length=1, max_length=32, description="guard badge id")
    reader_time: Annotated[NaiveDatetime, AfterValidator(_local_in_range)] = Field(
        description="the reader's local clock at the tap")
    uploaded: UtcTime | None = None
    answers: dict[Annotated[str, Field(max_length=64)],
                  Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=32,
        description="checklist answered at the checkpoint: item → ok / fault / a note")


class AlarmState(WireMessage):
    """Retained site alarm: lanes act on it directly, even with the gateway down. A flood
    alarm is active from level 2 (entries closed); `level` is written only where `active`
    cannot say it: at level 3 (evacuate: every lane holds 水浸 请立即驶离 on its display until
    the level drops). Without a level the key is left out, so readers that predate the field
    (they refuse unknown keys) still read every fire and level 0-2 message."""

    kind: Literal["fire", "flood"]
    active: StrictBool
    level: WireInt | None = Field(
        default=None, ge=0, le=3,
        description="flood only: the site's flood level, 0-3; absent: 2 when active, "
                    "below 2 when not (the gateway writes it at level 3)")
    source: str = Field(max_length=64, description="node or service that set it")
    zone: str | None = Field(default=None, max_length=32)
    since: UtcTime | None = None
    ts: UtcTime

    @model_validator(mode="after")
    def _level_fits(self) -> Self:
        if self.level is None:
            return self
        if self.kind != "flood":
            raise ValueError("level: only a flood alarm has a level")
        if self.active != (self.level >= 2):
            raise ValueError("level: a flood alarm is active exactly from level 2")
        return self

    def to_json(self) -> bytes:
        """No ``level`` key when there is none: byte for byte what readers that refuse
        unknown fields (firmware before the field) have always read."""
        if self.level is None:
            return self.model_dump_json(exclude={"level"}).encode("utf-8")
        return super().to_json()

    def flood_level(self) -> int:
        """The flood level this message says (a fire alarm: 0)."""
        if self.kind != "flood":
            return 0
        if self.level is not None:
            return self.level
        return 2 if self.active else 0


class Alert(WireMessage):
    """An alert to staff; retained while active."""

    alert_id: NodeId
    kind: str = Field(max_length=32)
    severity: Literal["info", "warning", "critical"]
    state: Literal["raised", "acked", "resolved"]
    escalation_step: WireInt = Field(default=0, ge=0)
    title_zh: str = Field(max_length=128)
    title_en: str = Field(max_length=128)
    detail: str = Field(default="", max_length=1024)
    raised_at: UtcTime
    acked_by: str | None = Field(default=None, max_length=64)
    ts: UtcTime


# Lane replicas and capacity (docs/replicas.md, docs/capacity.md) -------------

SiteId = Annotated[
    str,
    AfterValidator(lambda v: check_segment(v, what="site")),
    Field(description="site slug; must match the topic"),
]
SessionId = Annotated[str, Field(min_length=1, max_length=64, description="gateway session id")]
Epoch = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{8,32}$",
          description="changes whenever the gateway starts: versions count within one epoch"),
]
LevelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
SessionAccess = Literal["visitor", "pass", "whitelisted"]
DeltaKind = Literal["session_opened", "session_closed", "paid", "pass_changed", "list_changed",
                    "coupons_changed"]


class _Part(BaseModel):
    """Base of the records inside a replica message: frozen, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ReplicaSession(_Part):
    """A car inside: what an exit lane needs to find and price it alone."""

    session_id: SessionId
    plate: str = Field(max_length=40, description="plate as the gateway keeps it, or the "
                       "no-plate identity (#P…, #Q…) a kiosk gave; '' if unread")
    entry_at: UtcTime
    access: SessionAccess = Field(description="how it came in; a pass car pays only what "
                                              "its pass did not cover")
    pass_id: str | None = Field(default=None, max_length=64,
                                description="the pass this car counts on, if any")


class SessionClosed(_Part):
    """A car has left: the lane drops it from its open sessions."""

    session_id: SessionId
    exit_at: UtcTime


class ReplicaPass(_Part):
    """A pass as ``parkguard.core.access.pass_to_json`` writes it for a lane: the holder's
    name masked and no phone (a phone field is refused: customer data never reaches a lane)."""

    pass_id: str = Field(min_length=1, max_length=64)
    kind: Literal["monthly", "family"]
    holder: str = Field(max_length=128, description="masked name, e.g. 王**")
    plates: tuple[Annotated[str, Field(max_length=16)], ...] = Field(min_length=1,
                                                                      max_length=5)
    valid_from: UtcTime
    valid_until: UtcTime
    vehicle_class: str | None = Field(default=None, max_length=32)
    max_inside: WireInt = Field(default=1, ge=1, description="cars of this pass inside at once")
    revoked_at: UtcTime | None = None


class ReplicaListEntry(_Part):
    """A whitelist, blacklist or exit-hold entry as ``parkguard.core.access.list_entry_to_json``
    writes it; entries past ``until`` are ignored by the access rules. A ``hold`` keeps the
    plate's car at the exit (docs/incidents.md, "Holding a plate")."""

    list_name: Literal["whitelist", "blacklist", "hold"]
    plate: str = Field(min_length=1, max_length=16)
    reason: str = Field(max_length=256, description="for staff, never for the display")
    until: UtcTime | None = None


class ReplicaTariff(_Part):
    """The tariff file the gateway prices by, verbatim, with its SHA-256 so a lane can tell a
    damaged or stale copy and say which version it priced an offline exit with."""

    source: str = Field(max_length=256, description="where the gateway read it")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of `text` (UTF-8), hex")
    text: str = Field(max_length=262_144, description="the TOML file's text")

    @model_validator(mode="after")
    def _hash_matches(self) -> Self:
        if hashlib.sha256(self.text.encode("utf-8")).hexdigest() != self.sha256:
            raise ValueError("sha256 does not match the tariff text: damaged on the way")
        return self

    @classmethod
    def of(cls, text: str, *, source: str) -> ReplicaTariff:
        return cls(source=source, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   text=text)


class ReplicaPrepaid(_Part):
    """What a car inside has paid in advance (net of refunds) and until when it may leave
    without paying more; ``paid_fen`` 0 means nothing counts any more (refunded)."""

    session_id: SessionId
    paid_fen: Fen
    grace_until: UtcTime | None = Field(
        default=None, description="leaving by then costs nothing more; None if nothing paid")


class PassesChanged(_Part):
    """The whole set of passes now: it replaces the lane's passes."""

    passes: tuple[ReplicaPass, ...]


class ListsChanged(_Part):
    """The whole of both lists now: it replaces the lane's lists."""

    lists: tuple[ReplicaListEntry, ...]


MAX_PLATE_COUPONS: Final = 16
"""Live merchant coupons one plate may hold (the gateway refuses a 17th): one plate's whole
set always fits one ``coupons_changed`` delta."""


class ReplicaCoupon(_Part):
    """A live merchant coupon for a plate, as the exit quote is offered it: a lane prices an
    offline exit with it exactly as the gateway's bill would (same kind, same order). The
    merchant and its money stay at the gateway, which charges the merchant when the passage
    arrives."""

    coupon_id: str = Field(pattern=r"^[0-9a-f]{8,32}$",
                           description="the gateway's coupon id (the quote's discount ref)")
    plate: str = Field(min_length=1, max_length=16, description="normalised plate it was given to")
    kind: Literal["rule", "free_minutes", "amount_off", "full_free"]
    rule: str | None = Field(default=None, min_length=1, max_length=32,
                             description="for `rule`: the tariff's coupon rule code")
    minutes: WireInt = Field(default=0, ge=0, le=7 * 24 * 60, description="for free_minutes")
    fen: Fen = Field(default=0, description="for amount_off")
    issued_at: UtcTime = Field(description="coupons are offered oldest first, as at the gateway")
    expires_at: UtcTime = Field(description="not offered at or after this time")

    @model_validator(mode="after")
    def _value_matches_kind(self) -> Self:
        if (self.kind == "rule") != (self.rule is not None):
            raise ValueError("rule names the tariff rule of a `rule` coupon, and only of one")
        return self


class PlateCoupons(_Part):
    """One plate's live coupons now: they replace the lane's coupons for that plate (an empty
    set: the plate has none left, used, revoked or expired)."""

    plate: str = Field(min_length=1, max_length=16, description="normalised plate")
    coupons: tuple[ReplicaCoupon, ...] = Field(max_length=MAX_PLATE_COUPONS)

    @model_validator(mode="after")
    def _all_of_the_plate(self) -> Self:
        if any(coupon.plate != self.plate for coupon in self.coupons):
            raise ValueError(f"every coupon must be for plate {self.plate!r}")
        return self


DeltaData: TypeAlias = (
    ReplicaSession | SessionClosed | ReplicaPrepaid | PassesChanged | ListsChanged
    | PlateCoupons
)
_DELTA_DATA: Final[dict[str, type[_Part]]] = {
    "session_opened": ReplicaSession,
    "session_closed": SessionClosed,
    "paid": ReplicaPrepaid,
    "pass_changed": PassesChanged,
    "list_changed": ListsChanged,
    "coupons_changed": PlateCoupons,
}


class ReplicaSnapshot(WireMessage):
    """Everything the lane needs to decide alone. It replaces the lane's replica whole; deltas
    with ``version`` + 1, + 2, ... of the same ``epoch`` follow. It grows with the site, so it
    never goes on the bus whole: it travels as :class:`ReplicaChunk` messages
    (:mod:`wire.contract.chunks` cuts and joins them)."""

    site: SiteId
    epoch: Epoch
    version: WireInt = Field(ge=0, description="the last delta this snapshot includes")
    taken_at: UtcTime
    sessions: tuple[ReplicaSession, ...] = Field(description="every car inside, oldest first")
    passes: tuple[ReplicaPass, ...] = Field(description="passes not lapsed beyond the history "
                                                        "window (they explain a refusal)")
    lists: tuple[ReplicaListEntry, ...] = Field(
        description="whitelist, blacklist and exit holds in force")
    tariff: ReplicaTariff
    prepaid: tuple[ReplicaPrepaid, ...] = Field(description="cars inside that paid in advance")
    coupons: tuple[ReplicaCoupon, ...] = Field(
        default=(), max_length=1_000_000,
        description="every live merchant coupon, by plate and oldest first")


MAX_CHUNKS: Final = 4096
"""Chunks in one snapshot at most: 4096 of the default 256 KiB packet is a 1 GiB snapshot."""


class ReplicaChunk(WireMessage):
    """Piece ``index`` of ``count`` of one :class:`ReplicaSnapshot`'s JSON text, QoS 1 on
    ``replica/snapshot``. A lane joins the pieces of one ``snapshot`` id in index order,
    checks ``sha256`` and decodes the result as a ReplicaSnapshot; until every piece of one
    snapshot has arrived it keeps the replica it has (docs/replicas.md)."""

    site: SiteId
    epoch: Epoch
    version: WireInt = Field(ge=0, description="the snapshot's version")
    snapshot: str = Field(pattern=r"^[0-9a-f]{8,32}$",
                          description="id of this snapshot publication: pieces of different "
                                      "publications never mix")
    index: WireInt = Field(ge=0, description="0-based position of this piece")
    count: WireInt = Field(ge=1, le=MAX_CHUNKS, description="pieces in this snapshot")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="SHA-256 (hex) of the whole snapshot's JSON text, UTF-8")
    data: str = Field(max_length=16 * 1024 * 1024,
                      description="this piece of the snapshot's JSON text")

    @model_validator(mode="after")
    def _index_within_count(self) -> Self:
        if self.index >= self.count:
            raise ValueError(f"index {self.index} is not below count {self.count}")
        return self


class ReplicaDelta(WireMessage):
    """One change after a snapshot, QoS 1 and not retained. Apply only ``version`` = the
    lane's + 1 of its epoch; an older one is a repeat, a gap means: ask for a sync."""

    site: SiteId
    epoch: Epoch
    version: WireInt = Field(ge=1, description="one more than the change before it")
    ts: UtcTime
    kind: DeltaKind
    data: DeltaData = Field(description="the record `kind` names: ReplicaSession, "
                                        "SessionClosed, ReplicaPrepaid, PassesChanged, "
                                        "ListsChanged or PlateCoupons")

    @field_validator("data", mode="before")
    @classmethod
    def _data_of_its_kind(cls, value: Any, info: ValidationInfo) -> Any:
        model = _DELTA_DATA.get(info.data.get("kind", ""))
        if model is None or isinstance(value, model):
            return value  # a bad kind is reported on its own field
        try:
            return model.model_validate(value)
        except ValidationError as error:
            raise ValueError(
                f"not {info.data['kind']} data: {describe_validation_error(error)}") from None

    @model_validator(mode="after")
    def _data_matches_kind(self) -> Self:
        expected = _DELTA_DATA[self.kind]
        if type(self.data) is not expected:
            raise ValueError(f"kind {self.kind!r} carries {expected.__name__}, "
                             f"not {type(self.data).__name__}")
        return self


class LevelState(_Part):
    """One level's spaces and cars."""

    capacity: WireInt = Field(ge=0)
    occupied: WireInt = Field(ge=0, description="may exceed capacity: pass cars are never refused")
    full: StrictBool


class CapacityState(WireMessage):
    """Retained, one per lane: the lot's occupancy. When ``full`` an entry lane shows
    车位已满 / FULL and refuses visitors; pass holders and whitelisted cars still enter."""

    site: SiteId
    total: WireInt = Field(gt=0, description="spaces in the car park")
    occupied: WireInt = Field(ge=0, description="cars inside (sessions open)")
    free: WireInt = Field(ge=0, description="total - occupied, never below 0")
    reserve: WireInt = Field(default=0, ge=0, description="spaces kept for pass holders")
    full: StrictBool = Field(description="free <= reserve: visitors are refused")
    levels: dict[LevelName, LevelState] = Field(description="per level, by name")
    ts: UtcTime

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.free != max(0, self.total - self.occupied):
            raise ValueError(f"free is {self.free} but total {self.total} - occupied "
                             f"{self.occupied} leaves {max(0, self.total - self.occupied)}")
        if self.full != (self.free <= self.reserve):
            raise ValueError(f"full is {self.full} but free {self.free} vs reserve "
                             f"{self.reserve} says {self.free <= self.reserve}")
        return self


# Gateway availability ------------------------------------------------------


class GatewayAvailability(WireMessage):
    """Retained: is the site's gateway there to answer decide requests. ``offline`` comes
    from its Last Will (or its clean stop); a lane that reads it decides from its replica at
    once. Home Assistant reads ``state`` with ``value_template: "{{ value_json.state }}"``."""

    site: SiteId
    state: Literal["online", "offline"] = Field(
        description="`online` while the gateway is connected; `offline` once it is gone")
    ts: UtcTime = Field(description="when the gateway said so; in its Last Will, when the "
                                    "will was registered (the broker cannot know when it died)")


class AuditHead(WireMessage):
    """Retained: where the site's hash-chained audit log ends, published by the gateway at
    start and every few minutes. The fleet keeps every head it is sent; a chain rewritten
    later no longer has those hashes at those lengths (docs/audit.md, docs/fleet.md)."""

    site: SiteId
    length: WireInt = Field(ge=0, description="entries in the chain")
    head_hash: str = Field(pattern=r"^[0-9a-f]{64}$",
                           description="SHA-256 of the last entry (64 zeros when empty)")
    ts: UtcTime


# Evidence images (docs/evidence.md) ------------------------------------------

EvidenceImage = Literal["plate", "car"]
"""``plate``: the plate's crop; ``car``: the whole camera view of the read."""
MAX_EVIDENCE_PIECE: Final = 192 * 1024
"""Base64 characters in one evidence piece at most: with its envelope well under the
broker's 256 KiB ``max_packet_size`` (a larger packet disconnects the lane)."""
MAX_EVIDENCE_CHUNKS: Final = 64
"""Pieces of one image at most (64 x 144 KiB of JPEG: more than any lane keeps)."""


class EvidenceRequest(WireMessage):
    """The gateway asks one lane for the JPEGs it kept of one read (a ``plate_read``
    event). The lane answers on ``evidence/reply`` with the same correlation id."""

    correlation_id: CorrelationId
    lane: NodeId
    event_id: EventId = Field(description="the plate_read event whose images are wanted")
    ts: UtcTime


class EvidenceReply(WireMessage):
    """One piece of one image of a read, or (``images`` empty) that the lane has none of
    it: never kept, or dropped from its bounded store. Every piece names all the images
    that are coming, so the gateway knows when it has them all; it joins each image's
    pieces in ``index`` order, decodes the base64 and checks ``size`` and ``sha256``."""

    correlation_id: CorrelationId
    lane: NodeId
    event_id: EventId
    images: tuple[EvidenceImage, ...] = Field(
        max_length=2, description="the images this answer carries; empty: none kept")
    image: EvidenceImage | None = Field(default=None, description="which image this piece is of")
    index: Annotated[int, Strict(), Field(ge=0, lt=MAX_EVIDENCE_CHUNKS)] = 0
    count: Annotated[int, Strict(), Field(ge=0, le=MAX_EVIDENCE_CHUNKS)] = Field(
        default=0, description="pieces of this image")
    size: Annotated[int, Strict(), Field(ge=0, le=16 * 1024 * 1024)] = Field(
        default=0, description="bytes of the whole JPEG")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                               description="SHA-256 (hex) of the whole JPEG")
    data: str = Field(default="", max_length=MAX_EVIDENCE_PIECE,
                      pattern=r"^[A-Za-z0-9+/]*={0,2}$",
                      description="this piece of the JPEG, base64")
    taken_at: UtcTime | None = Field(default=None, description="when the camera took it")
    ts: UtcTime

    @model_validator(mode="after")
    def _piece_fits(self) -> Self:
        if len(set(self.images)) != len(self.images):
            raise ValueError("images names an image twice")
        if not self.images:
            if self.image is not None or self.count or self.data or self.sha256:
                raise ValueError("an answer with no images carries no piece")
            return self
        if self.image not in self.images:
            raise ValueError(f"image {self.image!r} is not one of images {self.images}")
        if self.sha256 is None or self.count < 1 or self.index >= self.count:
            raise ValueError("a piece needs sha256, count >= 1 and index below count")
        return self


# Decoding by topic -----------------------------------------------------------

WireValue: TypeAlias = (
    VehicleDetected | PlateRead | Decision | BarrierMoved | Passed | Tailgate | HelpPressed
    | PaymentCode | Fault | FaultCleared | LaneState | LaneCommand | DecideRequest | DecideReply
    | OtpRequest | OtpReply
    | SensorReading | SensorState | PatrolTap | AlarmState | Alert
    | ReplicaSnapshot | ReplicaChunk | ReplicaDelta | CapacityState | GatewayAvailability
    | AuditHead
    | EvidenceRequest | EvidenceReply
)

_ADAPTERS: Final[dict[TopicKind, TypeAdapter[Any]]] = {
    "lane_event": LANE_EVENT,
    "lane_state": TypeAdapter(LaneState),
    "lane_cmd": TypeAdapter(LaneCommand),
    "lane_decide": TypeAdapter(DecideRequest),
    "lane_decide_reply": TypeAdapter(DecideReply),
    "lane_otp": TypeAdapter(OtpRequest),
    "lane_otp_reply": TypeAdapter(OtpReply),
    "sensor_reading": TypeAdapter(SensorReading),
    "sensor_state": TypeAdapter(SensorState),
    "patrol_tap": TypeAdapter(PatrolTap),
    "alarm": TypeAdapter(AlarmState),
    "alert": TypeAdapter(Alert),
    "gateway_availability": TypeAdapter(GatewayAvailability),
    "audit_head": TypeAdapter(AuditHead),
    "lane_evidence_get": TypeAdapter(EvidenceRequest),
    "lane_evidence_reply": TypeAdapter(EvidenceReply),
}

# A lane's replica topic holds a different message per part (topics.REPLICA_PARTS).
_REPLICA_ADAPTERS: Final[dict[str, TypeAdapter[Any]]] = {
    "snapshot": TypeAdapter(ReplicaChunk),
    "delta": TypeAdapter(ReplicaDelta),
    "capacity": TypeAdapter(CapacityState),
}

# Which payload field must name the same node as the topic does.
_NODE_FIELD: Final[dict[TopicKind, str]] = {
    "lane_event": "lane",
    "lane_state": "lane",
    "lane_decide": "lane",
    "lane_otp": "lane",
    "lane_otp_reply": "lane",
    "lane_evidence_get": "lane",
    "lane_evidence_reply": "lane",
    "sensor_reading": "node",
    "sensor_state": "node",
    "patrol_tap": "reader",
    "alarm": "kind",
    "alert": "alert_id",
}


def decode(topic: str, payload: bytes | str) -> WireValue:
    """Validate a received payload against the schema its topic demands.

    Also refuses a payload that claims to come from another node than its
    topic says, so one lane cannot speak for another by a field.
    """
    where = parse_topic(topic)
    if where.kind == "lane_replica":
        adapter = _REPLICA_ADAPTERS.get(where.part)
    else:
        adapter = _ADAPTERS.get(where.kind)
    if adapter is None:
        raise ContractError(f"{where.kind} on {topic}: no message model for this topic yet")
    try:
        value: WireValue = adapter.validate_json(payload)
    except ValidationError as error:
        reason = describe_validation_error(error)
        raise ContractError(f"{where.kind} on {topic}: {reason}") from error
    field = _NODE_FIELD.get(where.kind)
    if field is not None and getattr(value, field) != where.node:
        raise ContractError(
            f"{where.kind} on {topic}: payload {field}={getattr(value, field)!r} "
            f"does not match the topic's {where.node!r}"
        )
    site = getattr(value, "site", None)
    if site is not None and site != where.site:
        raise ContractError(
            f"{where.kind} on {topic}: payload site={site!r} does not match the topic's "
            f"{where.site!r}"
        )
    return value
