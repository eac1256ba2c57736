"""The lane's side of one-time codes (``[kiosk] confirm = "otp"``): :class:`OneTimeCode` is
the kiosk's confirmation, :class:`GatewayCodes` asks the gateway (``lane/{lane}/otp``) to text
a code to the driver's phone and to check the digits typed, and waits for its answer
(``lane/{lane}/otp/reply``) on the lane's clock, at most ``[kiosk] otp_wait_ms``.

The gateway makes, keeps and checks the code (gateway/lanes/otp.py); the lane never sees it.
No answer in time is ``silent``: :class:`OneTimeCode` then lets an entry go ahead by phone
number and asks an exit for the last four digits instead. The phone number travels only in a
``send`` request; it is never logged or journaled here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final, Literal, Protocol

from firmware.lane.kiosk import Answer, LastFourDigits
from parkguard.clock import Clock
from parkguard.core.plates import NoPlateId
from parkguard.errors import ContractError
from wire.bus import Bus
from wire.contract import topics
from wire.contract.messages import OtpReply, OtpRequest

log = logging.getLogger(__name__)

OTP_TEXTS: Final[dict[str, tuple[str, str]]] = {
    "ask": ("请输入短信验证码", "Enter the code sent to your phone"),
    "wrong": ("验证码错误 请重新输入", "Wrong code: please try again"),
    "expired": ("验证码已过期 请重新输入手机号", "Code expired: type your number again"),
    "locked": ("验证码错误次数过多 请按帮助键", "Too many wrong codes: press Help"),
    "rate_limited": ("验证码发送过于频繁 请按帮助键", "Too many codes sent: press Help"),
    "send_failed": ("短信发送失败 请按帮助键", "Text message failed: press Help"),
    "offline_entry": ("网络中断 按手机号入场", "Offline: entering by phone number"),
    "offline_last4": ("网络中断 请输入手机尾号4位", "Offline: last 4 digits of your phone"),
    "ask_consent": ("请输入短信验证码 末尾加1=同意车辆短信提醒",
                    "Enter the code; add a 1 to agree to texts about your car"),
}
"""What the kiosk shows while a one-time code confirms a phone (docs/lane.md)."""

CODE_DIGITS: Final = 6
"""The gateway's codes are six digits; a seventh, 1, is the driver's contact consent."""


SendOutcome = Literal["sent", "rate_limited", "send_failed", "unavailable", "silent"]
CheckOutcome = Literal["confirmed", "wrong", "expired", "locked", "no_code", "unavailable",
                       "silent"]


class CodeService(Protocol):
    """Who makes, sends and checks one-time codes: the gateway (over the bus,
    :class:`GatewayCodes`). ``silent``: no answer in time."""

    def send(self, phone: str, identity: NoPlateId) -> SendOutcome: ...

    def check(self, identity: NoPlateId, code: str,
              consent: str | None = None) -> CheckOutcome: ...


class OneTimeCode:
    """Confirm with a 6-digit code the gateway sends to the phone by SMS and checks itself
    (hashed, expiring, a few tries, a few codes an hour per number); the lane never sees,
    shows or logs the code. ``[kiosk] confirm = "otp"``: entries and exits.

    With the gateway silent (down, or the broker unreachable) the driver is not stuck: an
    entry goes ahead by phone number alone (as with ``last4``), an exit falls back to the
    last four digits, which the lane checks itself."""

    at_entry = True

    def __init__(self, codes: CodeService, *, direction: str = "exit",
                 contact_consent: str | None = None) -> None:
        """``contact_consent``: offer the contact register (``[kiosk] contact_consent``, the
        wording version): the prompt says so, and a 1 typed after the 6-digit code is the
        driver's agreement, sent with the check (the code alone agrees to nothing)."""
        self._codes = codes
        self._consent = contact_consent
        self._entry = direction == "entry"
        self._fallback = LastFourDigits()
        self._offline: set[str] = set()  # identities confirming by last four instead
        self._lock = threading.Lock()

    def lane_times_out(self, identity: NoPlateId) -> bool:
        """Only the last-four fallback: a code's lifetime is the gateway's (``[otp]``)."""
        with self._lock:
            return identity.text in self._offline

    def challenge(self, phone: str, identity: NoPlateId) -> Answer:
        with self._lock:
            self._offline.discard(identity.text)
        outcome = self._codes.send(phone, identity)
        if outcome == "sent":
            return Answer("ask", OTP_TEXTS["ask_consent" if self._consent else "ask"])
        if outcome in ("silent", "unavailable"):
            log.warning("kiosk: no one-time code (%s): falling back", outcome)
            return self._without_gateway(identity)
        return Answer("refused", OTP_TEXTS[outcome])

    def _without_gateway(self, identity: NoPlateId) -> Answer:
        """An entry may go ahead; an exit confirms with the last four digits instead."""
        if self._entry:
            return Answer("confirmed", OTP_TEXTS["offline_entry"])
        with self._lock:
            self._offline.add(identity.text)
        return Answer("ask", OTP_TEXTS["offline_last4"])

    def check(self, identity: NoPlateId, typed: str) -> Answer:
        with self._lock:
            offline = identity.text in self._offline
        if offline:
            answer = self._fallback.check(identity, typed)
            if answer:
                with self._lock:
                    self._offline.discard(identity.text)
            return answer
        code = "".join(char for char in typed if char.isdigit())
        agreed = None
        if self._consent and len(code) == CODE_DIGITS + 1 and code.endswith("1"):
            code, agreed = code[:CODE_DIGITS], self._consent
        outcome = self._codes.check(identity, code, agreed)
        if outcome == "confirmed":
            return Answer("confirmed", OTP_TEXTS["ask"])
        if outcome == "wrong":
            return Answer("again", OTP_TEXTS["wrong"])
        if outcome in ("expired", "no_code"):
            return Answer("refused", OTP_TEXTS["expired"])
        if outcome in ("silent", "unavailable"):
            return self._without_gateway(identity)
        return Answer("refused", OTP_TEXTS["locked"])


BlockUntil = Callable[[threading.Event, datetime], bool]


class GatewayCodes:
    """:class:`~firmware.lane.kiosk.CodeService` over the bus. ``block_until``: the lane
    worker's wait (it counts as idle meanwhile); ``wait_ms``: how long to wait for an answer."""

    def __init__(self, *, site: str, lane: str, bus: Bus, clock: Clock, wait_ms: int,
                 block_until: BlockUntil) -> None:
        self._site = site
        self._lane = lane
        self._bus = bus
        self._clock = clock
        self._wait = timedelta(milliseconds=wait_ms)
        self._block_until = block_until
        self._pending: dict[str, tuple[threading.Event, list[OtpReply]]] = {}
        self._lock = threading.Lock()
        self.late_replies = 0

    def topics(self) -> list[str]:
        """What the lane subscribes to with :meth:`on_reply`."""
        return [topics.lane_otp_reply(self._site, self._lane)]

    def send(self, phone: str, identity: NoPlateId) -> SendOutcome:
        digits = "".join(char for char in phone if char.isdigit())[-11:]
        reply = self._ask(action="send", identity=identity.text, phone=digits)
        if reply is None:
            return "silent"
        if reply.outcome in ("sent", "rate_limited", "send_failed", "unavailable"):
            return reply.outcome
        log.warning("lane %s: odd answer %s to a send", self._lane, reply.outcome)
        return "unavailable"

    def check(self, identity: NoPlateId, code: str,
              consent: str | None = None) -> CheckOutcome:
        if not 4 <= len(code) <= 8 or not code.isdigit():
            return "wrong"  # not a code at all: no need to ask, and never counted
        extra = {"contact_consent": consent} if consent else {}
        reply = self._ask(action="check", identity=identity.text, code=code, **extra)
        if reply is None:
            return "silent"
        if reply.outcome in ("confirmed", "wrong", "expired", "locked", "no_code",
                             "unavailable"):
            return reply.outcome
        log.warning("lane %s: odd answer %s to a check", self._lane, reply.outcome)
        return "unavailable"

    def _ask(self, **fields: str) -> OtpReply | None:
        correlation_id = f"otp-{uuid.uuid4().hex[:20]}"
        answered: threading.Event = threading.Event()
        box: list[OtpReply] = []
        with self._lock:
            self._pending[correlation_id] = (answered, box)
        try:
            request = OtpRequest(correlation_id=correlation_id, lane=self._lane,
                                 ts=self._clock.now(), **fields)  # type: ignore[arg-type]
            self._bus.publish(topics.lane_otp(self._site, self._lane), request)
            self._block_until(answered, request.ts + self._wait)
        finally:
            with self._lock:
                self._pending.pop(correlation_id, None)
        if not box:
            log.warning("lane %s: no answer to a one-time code %s", self._lane,
                        fields["action"])
            return None
        return box[0]

    def on_reply(self, _topic: str, payload: bytes) -> None:
        """The bus thread: wakes the waiting request, or counts a late answer."""
        try:
            reply = OtpReply.from_json(payload)
        except ContractError as error:
            log.warning("lane %s: bad one-time code reply: %s", self._lane, error)
            return
        with self._lock:
            pending = self._pending.get(reply.correlation_id)
        if pending is None:
            self.late_replies += 1
            return
        answered, box = pending
        box.append(reply)
        answered.set()
