"""One-time codes for the no-plate kiosk: the gateway makes a code, texts it to the driver's
phone through its SMS channel, and checks what the driver types at the lane.

Why the gateway and not the lane: the code must reach a phone (an SMS gateway the lanes do
not talk to), and a code checked where it was made never crosses the bus. What is kept
(table ``otp_codes``): the phone's no-plate identity (an HMAC of the number, never the
number), an HMAC of the code under a key that lives only in this process (a gateway restart
voids the codes outstanding: the driver types the number again), when it expires, how many
tries are left. Limits: ``ttl_s``, ``attempts`` per code, ``sends_per_hour`` per number
(each ``send`` replaces the number's previous code).

Requests (:class:`~wire.contract.messages.OtpRequest`) arrive on ``lane/+/otp`` and are handled
on the gateway's worker; the text goes out on a courier thread (a slow SMS gateway never holds
the worker), and the ``send`` is answered once the channel took it or refused it. A bad
request is dead-lettered with any phone number in it masked.

A driver may agree at the kiosk to be reached about the car (the ``check`` carries the
version of the wording agreed to, ``contact_consent``): the number of the code's ``send`` is
then held in this process's memory only until the code is checked, and a confirmed code
hands it to ``on_consent`` (the contact register, which keeps it encrypted). A number the
driver proved by the code is the only one a kiosk consent registers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator

from gateway.safety.alerts.channels import Notifier, Publisher
from gateway.storage.store import GatewayStore
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import StrictModel, reveal
from parkguard.core.privacy import mask_phones_in
from parkguard.errors import ContractError
from wire.contract import topics
from wire.contract.messages import OtpOutcome, OtpReply, OtpRequest, decode

log = logging.getLogger(__name__)

MAX_HELD_NUMBERS = 256
"""Numbers held in memory awaiting their check, at most (a kiosk consent needs them)."""

DEFAULT_MESSAGE = ("【{site}】停车验证码 {code}，{minutes}分钟内有效。"
                   "Parking code {code}, valid {minutes} min.")


class OtpSettings(StrictModel):
    """``[otp]`` of the gateway: how one-time codes for no-plate drivers are sent and kept
    (lanes with ``[kiosk] confirm = "otp"``; docs/lane.md)."""

    sms_url: SecretStr = Field(
        description="Apprise URL of the SMS channel with {phone} where the 11-digit number "
                    "goes, e.g. smseagle://TOKEN@sms-gw.lan/+86{phone} (an SMSEagle box on "
                    "the site's LAN) or any Apprise SMS service; secret: it carries the "
                    "channel's credentials")
    message: str = Field(
        default=DEFAULT_MESSAGE, min_length=8, max_length=140,
        description="the text; {code}, {minutes} and {site} are filled in. Mainland SMS "
                    "needs the sender's 【signature】 first")
    ttl_s: int = Field(default=300, ge=60, le=1800, description="a code works this long")
    attempts: int = Field(default=3, ge=1, le=10, description="tries per code")
    sends_per_hour: int = Field(default=3, ge=1, le=20,
                                description="codes one phone number may get in an hour")

    @field_validator("sms_url")
    @classmethod
    def _has_phone(cls, value: SecretStr) -> SecretStr:
        if "{phone}" not in value.get_secret_value():
            raise ValueError("sms_url must contain {phone}, where the number goes")
        return value

    @field_validator("message")
    @classmethod
    def _has_code(cls, value: str) -> str:
        if "{code}" not in value:
            raise ValueError("message must contain {code}")
        try:
            value.format(code="000000", minutes=5, site="site")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"message: only {{code}}, {{minutes}} and {{site}} may be filled "
                             f"in ({error!r})") from None
        return value


@dataclass(frozen=True, slots=True)
class _Send:
    row_id: int
    request: OtpRequest
    url: str
    body: str


class OtpDesk:
    """Makes, sends and checks one-time codes; answers on ``lane/{lane}/otp/reply``."""

    def __init__(self, store: GatewayStore, *, site: str, site_name: str, clock: Clock,
                 settings: OtpSettings, notifier: Notifier, publisher: Publisher,
                 run_on_owner: Callable[[Callable[[], None]], object]) -> None:
        self._store = store
        self._site = site
        self._site_name = site_name or site
        self._clock = clock
        self.settings = settings
        self._notifier = notifier
        self._publisher = publisher
        self._owner = run_on_owner
        self._key = secrets.token_bytes(32)  # never stored: a restart voids open codes
        self._outbox: queue.Queue[_Send | None] = queue.Queue()
        self._courier = threading.Thread(target=self._send_loop, name="otp-courier",
                                         daemon=True)
        self.sent = self.failed = self.confirmed = self.wrong = 0
        self.on_consent: Callable[[str, str, str], None] | None = None
        """``on_consent(phone, identity, wording_version)`` after a confirmed code whose
        check carried a consent (the contact register's ``consent``); set by the app."""
        self._numbers: dict[str, tuple[int, str]] = {}  # identity → (code row, number)
        with store.atomic():  # codes made under an earlier key can never match
            store.db.execute("UPDATE otp_codes SET state = 'void' "
                             "WHERE state IN ('sending', 'active')")
        self._courier.start()

    def close(self) -> None:
        self._outbox.put(None)
        self._courier.join(timeout=10)

    # the bus ------------------------------------------------------------------------------

    def on_message(self, topic: str, payload: bytes) -> None:
        """The bus thread: hand the request to the worker."""
        self._owner(lambda: self._on_worker(topic, payload))

    def _on_worker(self, topic: str, payload: bytes) -> None:
        try:
            request = decode(topic, payload)
            if not isinstance(request, OtpRequest):
                raise ContractError(f"{topic}: not a one-time code request")
        except ContractError as error:
            masked = mask_phones_in(payload.decode("utf-8", "replace")).encode()
            with self._store.atomic():
                self._store.dead_letter(received_at=utc_iso(self._clock.now()), topic=topic,
                                        payload=masked, reason=mask_phones_in(str(error)))
            log.warning("otp: dead-lettered a request on %s", topic)
            return
        self.handle(request)

    def handle(self, request: OtpRequest) -> None:
        """The worker: one send or check."""
        if request.action == "send":
            self._send(request)
        else:
            self._check(request)

    # sending ------------------------------------------------------------------------------

    def _send(self, request: OtpRequest) -> None:
        now = self._clock.now()
        db = self._store.db
        since = utc_iso(now - timedelta(hours=1))
        with self._store.atomic():
            db.execute("DELETE FROM otp_codes WHERE created_at < ?",
                       [utc_iso(now - timedelta(days=1))])
            recent = db.execute(
                "SELECT count(*) FROM otp_codes WHERE identity = ? AND created_at >= ? "
                "AND state != 'rate_limited'", [request.identity, since]).fetchone()[0]
            if recent >= self.settings.sends_per_hour:
                log.info("otp: %s asked for more than %d codes in an hour",
                         request.identity[:6], self.settings.sends_per_hour)
                self._reply(request, "rate_limited")
                return
            db.execute("UPDATE otp_codes SET state = 'replaced' WHERE identity = ? "
                       "AND state IN ('sending', 'active')", [request.identity])
            code = f"{secrets.randbelow(1_000_000):06d}"
            salt = secrets.token_hex(8)
            expires = now + timedelta(seconds=self.settings.ttl_s)
            row_id: int = db.table("otp_codes").insert({
                "identity": request.identity, "lane": request.lane,
                "correlation_id": request.correlation_id, "salt": salt,
                "code_hash": self._hash(salt, request.identity, code),
                "created_at": utc_iso(now), "expires_at": utc_iso(expires),
                "attempts_left": self.settings.attempts, "state": "sending",
            }).last_pk or 0
        phone = request.phone or ""  # a send always carries one (the contract's rule)
        if self.on_consent is not None:
            self._numbers.pop(request.identity, None)  # a new code replaces the old
            self._numbers[request.identity] = (row_id, phone)
            while len(self._numbers) > MAX_HELD_NUMBERS:  # the oldest go first
                self._numbers.pop(next(iter(self._numbers)))
        url = reveal(self.settings.sms_url) or ""
        minutes = max(1, self.settings.ttl_s // 60)
        body = self.settings.message.format(code=code, minutes=minutes, site=self._site_name)
        self._outbox.put(_Send(row_id, request,
                               url.replace("{phone}", quote(phone, safe="+")), body))

    def _send_loop(self) -> None:
        while (item := self._outbox.get()) is not None:
            try:
                self._notifier.send(item.url, "", item.body)  # an SMS: the body alone
                error = None
            except Exception as failure:  # any channel failure is an answer, never a crash
                error = f"{type(failure).__name__}"
                log.warning("otp: the SMS channel refused a code: %s", type(failure).__name__)
            try:
                self._owner(partial(self._sent, item, error))
            except Exception:
                log.exception("otp: outcome of a send not recorded")

    def _sent(self, item: _Send, error: str | None) -> None:
        """The worker: the channel took the text (the code is live) or did not."""
        with self._store.atomic():
            self._store.db.execute(
                "UPDATE otp_codes SET state = ? WHERE id = ? AND state = 'sending'",
                ["send_failed" if error else "active", item.row_id])
        if error:
            self.failed += 1
            self._reply(item.request, "send_failed")
            return
        self.sent += 1
        row = self._store.db.table("otp_codes").get(item.row_id)
        self._reply(item.request, "sent", attempts_left=int(row["attempts_left"]),
                    expires_at=datetime.fromisoformat(str(row["expires_at"])))

    # checking -----------------------------------------------------------------------------

    def _check(self, request: OtpRequest) -> None:
        now = self._clock.now()
        db = self._store.db
        with self._store.atomic():
            row = db.execute(
                "SELECT id, salt, code_hash, expires_at, attempts_left, state FROM otp_codes "
                "WHERE identity = ? AND state IN ('active', 'locked', 'expired', 'confirmed') "
                "ORDER BY id DESC LIMIT 1", [request.identity]).fetchone()
            outcome, left = self._verdict(row, request, now)
        held = self._numbers.get(request.identity)
        if held is not None and outcome in ("confirmed", "locked", "expired", "no_code"):
            del self._numbers[request.identity]
            if outcome == "confirmed" and row is not None and held[0] == row[0] \
                    and request.contact_consent:
                self._consent(held[1], request)
        self._reply(request, outcome, attempts_left=left)

    def _consent(self, phone: str, request: OtpRequest) -> None:
        """The driver proved the number and agreed: the register keeps it (a refusal is
        logged, never in the way of the driver's entry)."""
        if self.on_consent is None or request.contact_consent is None:
            return
        try:
            self.on_consent(phone, request.identity, request.contact_consent)
        except Exception as error:
            log.warning("otp: a kiosk consent was not registered: %s", type(error).__name__)

    def _verdict(self, row: tuple[object, ...] | None, request: OtpRequest,
                 now: datetime) -> tuple[OtpOutcome, int]:
        """Inside the check's transaction: the outcome and the tries left."""
        db = self._store.db
        if row is None or row[5] == "confirmed":
            return "no_code", 0
        row_id, salt, code_hash, expires_at, tries, state = row
        left = int(str(tries))
        if state == "locked":
            return "locked", 0
        if state == "expired" or now >= datetime.fromisoformat(str(expires_at)):
            db.execute("UPDATE otp_codes SET state = 'expired' WHERE id = ?", [row_id])
            return "expired", 0
        typed = self._hash(str(salt), request.identity, request.code or "")
        if hmac.compare_digest(typed, str(code_hash)):
            db.execute("UPDATE otp_codes SET state = 'confirmed', attempts_left = ? "
                       "WHERE id = ?", [left - 1, row_id])
            self.confirmed += 1
            return "confirmed", left - 1
        self.wrong += 1
        left -= 1
        db.execute("UPDATE otp_codes SET attempts_left = ?, state = ? WHERE id = ?",
                   [left, "active" if left else "locked", row_id])
        return ("wrong" if left else "locked"), left

    # helpers ------------------------------------------------------------------------------

    def _hash(self, salt: str, identity: str, code: str) -> str:
        message = f"{salt}:{identity}:{code}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _reply(self, request: OtpRequest, outcome: OtpOutcome, *, attempts_left: int = 0,
               expires_at: datetime | None = None) -> None:
        reply = OtpReply(correlation_id=request.correlation_id, lane=request.lane,
                         outcome=outcome, attempts_left=attempts_left, expires_at=expires_at,
                         ts=self._clock.now())
        self._publisher.publish(topics.lane_otp_reply(self._site, request.lane), reply)


def refuse_all(site: str, publisher: Publisher, clock: Clock) -> Callable[[str, bytes], None]:
    """Without ``[otp]``: every request is answered ``unavailable`` at once, so a lane
    configured for codes falls back without waiting (docs/lane.md)."""

    def answer(topic: str, payload: bytes) -> None:
        try:
            request = decode(topic, payload)
        except ContractError:
            return
        if isinstance(request, OtpRequest):
            publisher.publish(topics.lane_otp_reply(site, request.lane), OtpReply(
                correlation_id=request.correlation_id, lane=request.lane,
                outcome="unavailable", ts=clock.now()))

    return answer
