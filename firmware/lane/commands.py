"""Checks a signed lane command before the lane acts on it: key, lane, time window, nonce.

Why a lane checks at all: the command topic opens a barrier, so anybody who can
publish there — a stolen login, a bridged fleet broker, a recording of
yesterday's traffic — must not be able to. The gateway signs every command with
this lane's own key (HMAC-SHA256 over :meth:`LaneCommand.canonical_bytes`), and
the lane accepts it only if

- the signature is right (``bad_signature``),
- it names this lane when it names one (``wrong_lane``),
- its validity window is not absurdly long (``malformed``) — a short window
  is what makes a bounded replay cache enough,
- ``issued <= now < expires`` within a small clock skew (``not_yet_valid``,
  ``expired``),
- its nonce has not been accepted before (``replayed``), by this run of the lane or an
  earlier one: accepted nonces are kept in the lane's journal until they expire, and
  written there before the barrier can move (``unrecorded`` if that fails),

and the payload is a well-formed command in the first place (``malformed``).

The signature covers the command's *meaning*, not the bytes on the wire: a byte
change that is only another spelling of the same instant
(``2026-05-06t02:00:00,000z``) decodes to the identical command, whose nonce
is spent once — so it still runs at most once. Every other change either fails
to decode or breaks the signature.

:class:`CommandVerifier` is pure logic: no MQTT, no GPIO. Thread-safe, so the lane checks
a command the moment it arrives (its age is judged at receipt, not when the worker gets to
it). :class:`CommandInbox` queues the verdicts for the lane's worker (rejections too, so
every event is emitted by the worker alone and ``seq`` stays in publication order), and
:class:`CommandDesk` carries out an accepted command from one handler table, in normal
running and during a fire alike (a fire keeps the barrier up whatever a command says).

>>> from datetime import UTC, datetime, timedelta
>>> from parkguard.clock import ManualClock
>>> clock = ManualClock(datetime(2026, 5, 6, 2, 0, tzinfo=UTC))
>>> key = bytes(32)
>>> command = LaneCommand(command="open", args={"lane": "in1"}, reason="help button",
...     issuer="guard:0042", nonce="9f86d081884c7d65", issued=clock.now(),
...     expires=clock.now() + timedelta(seconds=30)).signed(key)
>>> verifier = CommandVerifier(key, clock, "in1")
>>> verifier.check(command).accepted
True
>>> verifier.check(command).reason
'replayed'
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Literal, Protocol, TypeAlias, cast, get_args

from firmware.lane.states import Event
from parkguard.clock import Clock, utc_iso
from parkguard.errors import ContractError
from wire.contract.messages import LaneCommand, Settlement

if TYPE_CHECKING:
    from firmware.lane.events import EventLog
    from firmware.lane.gate import Gate
    from firmware.lane.status import LaneStatus

log = logging.getLogger(__name__)

RejectReason: TypeAlias = Literal[
    "bad_signature", "expired", "not_yet_valid", "replayed", "malformed", "wrong_lane",
    "unrecorded", "wrong_session",
]

DEFAULT_SKEW_S: Final = 5.0
"""How far the gateway's and the lane's clocks may disagree (both run NTP on site)."""
DEFAULT_MAX_WINDOW_S: Final = 300.0
"""Longest ``expires - issued`` a lane accepts; the gateway uses 30 s."""
DEFAULT_MAX_REMEMBERED: Final = 4096
"""Nonces kept at most; far more than a lane can legitimately get within one window."""
DISPLAY_TEXT_MAX: Final = 64
SETTLEMENTS: Final[tuple[str, ...]] = get_args(Settlement)
"""What an ``open``'s ``args.settled`` may say (docs/payments.md)."""
SESSION_ID_MAX: Final = 64


class SpentNonces(Protocol):
    """Where accepted nonces outlive the lane process: its journal
    (:class:`firmware.lane.journal.Journal`). Without it a restart forgets them, and a
    recording of an order obeyed just before the restart would be obeyed again."""

    def spend_nonce(self, nonce: str, expires: datetime) -> None:
        """Keep ``nonce`` until ``expires``, durably, before returning."""

    def forget_nonces(self, expired_by: datetime, *, floor: datetime | None) -> None:
        """Drop nonces expiring at or before ``expired_by``; keep ``floor``."""

    def spent_nonces(self) -> tuple[dict[str, datetime], datetime | None]:
        """What an earlier run kept: nonce -> expiry, and the floor."""


@dataclass(frozen=True, slots=True)
class CommandVerdict:
    """Whether to act on a command; when not, the reason code and a sentence for the log."""

    accepted: bool
    reason: RejectReason | None
    detail: str
    command: LaneCommand | None = None

    @classmethod
    def accept(cls, command: LaneCommand) -> CommandVerdict:
        return cls(True, None, f"{command.command} from {command.issuer}", command)

    @classmethod
    def reject(cls, reason: RejectReason, detail: str,
               command: LaneCommand | None = None) -> CommandVerdict:
        return cls(False, reason, detail, command)


class CommandVerifier:
    """Accepts each authentic, current command for one lane exactly once.

    The replay cache remembers every accepted nonce until its command could no
    longer pass the time check anyway (``expires`` + skew), so it stays small.
    If it ever holds ``max_remembered`` live nonces, the one that expires first is
    forgotten and a *floor* is raised to its expiry: from then on any command that
    expires at or before the floor is refused as ``replayed``. Forgetting can thus
    only refuse too much (under a flood of valid commands), never let a replay in.
    """

    def __init__(
        self,
        key: bytes,
        clock: Clock,
        lane: str,
        *,
        skew_s: float = DEFAULT_SKEW_S,
        max_window_s: float = DEFAULT_MAX_WINDOW_S,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
        spent: SpentNonces | None = None,
    ) -> None:
        if len(key) < 16:
            raise ValueError(f"a lane command key must be at least 16 bytes, got {len(key)}")
        if skew_s < 0 or max_window_s <= 0 or max_remembered < 1:
            raise ValueError("skew_s >= 0, max_window_s > 0 and max_remembered >= 1 please")
        self._key = key
        self._clock = clock
        self.lane = lane
        self._skew = timedelta(seconds=skew_s)
        self._max_window = timedelta(seconds=max_window_s)
        self._max_remembered = max_remembered
        self._lock = threading.Lock()
        self._seen: dict[str, datetime] = {}
        self._by_expiry: list[tuple[datetime, str]] = []
        self._floor: datetime | None = None
        self._spent = spent
        if spent is not None:
            self._load(spent)

    def _load(self, spent: SpentNonces) -> None:
        """Take up the nonces an earlier run of this lane accepted (and its floor)."""
        kept, floor = spent.spent_nonces()
        self._floor = floor
        for nonce, expires in sorted(kept.items(), key=lambda item: item[1])[
                -self._max_remembered:]:
            self._seen[nonce] = expires
            heapq.heappush(self._by_expiry, (expires, nonce))
        if len(kept) > self._max_remembered:  # only if max_remembered shrank between runs
            self._raise_floor(self._by_expiry[0][0])

    @property
    def remembered(self) -> int:
        """Nonces currently held by the replay cache."""
        with self._lock:
            return len(self._seen)

    def check_payload(self, payload: bytes | str) -> CommandVerdict:
        """Decode a received payload and check it; a payload that is no command is
        ``malformed``."""
        try:
            command = LaneCommand.from_json(payload)
        except ContractError as error:
            return CommandVerdict.reject("malformed", str(error)[:400])
        return self.check(command)

    def check(self, command: LaneCommand) -> CommandVerdict:
        """Accept ``command`` (and spend its nonce) or say why not."""
        if not command.signature_valid(self._key):
            return CommandVerdict.reject(
                "bad_signature", f"{command.command}: signature does not match this lane's key",
                command)
        named = command.args.get("lane")
        if named is not None and named != self.lane:
            return CommandVerdict.reject(
                "wrong_lane", f"{command.command} is addressed to lane {named!r}, not "
                f"{self.lane!r}", command)
        problem = args_problem(command)
        if problem is not None:
            return CommandVerdict.reject("malformed", problem, command)
        window = command.expires - command.issued
        if window > self._max_window:
            return CommandVerdict.reject(
                "malformed", f"{command.command}: valid for {window.total_seconds():.0f} s, "
                f"longer than the {self._max_window.total_seconds():.0f} s a lane accepts",
                command)
        now = self._clock.now()
        if now + self._skew < command.issued:
            return CommandVerdict.reject(
                "not_yet_valid", f"{command.command}: issued {utc_iso(command.issued)}, "
                f"lane clock says {utc_iso(now)}", command)
        if now >= command.expires + self._skew:
            return CommandVerdict.reject(
                "expired", f"{command.command}: expired {utc_iso(command.expires)}, "
                f"lane clock says {utc_iso(now)}", command)
        with self._lock:
            self._forget_until(now)
            if command.nonce in self._seen:
                return CommandVerdict.reject(
                    "replayed", f"{command.command}: nonce {command.nonce} was already used",
                    command)
            if self._floor is not None and command.expires <= self._floor:
                return CommandVerdict.reject(
                    "replayed", f"{command.command}: expires {utc_iso(command.expires)}, no "
                    f"later than {utc_iso(self._floor)}, before which this lane no longer "
                    "tells used nonces from new ones", command)
            try:
                self._remember(command.nonce, command.expires)
            except Exception as error:  # whatever the store raises: refuse, never obey twice
                log.exception("lane %s: could not record nonce %s", self.lane, command.nonce)
                return CommandVerdict.reject(
                    "unrecorded", f"{command.command}: its nonce could not be kept, so the "
                    f"lane cannot promise to obey it only once ({type(error).__name__})",
                    command)
        return CommandVerdict.accept(command)

    def still_valid(self, command: LaneCommand) -> bool:
        """Whether an accepted command is still inside its window now (a lane that was busy
        drops orders that went stale while they waited)."""
        return self._clock.now() < command.expires + self._skew

    # replay cache ---------------------------------------------------------------------

    def _forget_until(self, now: datetime) -> None:
        # A nonce whose command fails the time check anyway need not be remembered. The
        # floor rises to what is forgotten: should the clock ever step back (a Pi has no
        # RTC and boots on the time it last saved), a forgotten order still stays spent.
        forgotten: datetime | None = None
        while self._by_expiry and self._by_expiry[0][0] + self._skew <= now:
            forgotten, nonce = heapq.heappop(self._by_expiry)
            self._seen.pop(nonce, None)
        if forgotten is not None:
            self._raise_floor(forgotten)
            self._persist_forgetting(forgotten)

    def _remember(self, nonce: str, expires: datetime) -> None:
        if self._spent is not None:  # on the card before the barrier can move
            self._spent.spend_nonce(nonce, expires)
        if len(self._seen) >= self._max_remembered:
            dropped_expires, dropped = heapq.heappop(self._by_expiry)
            self._seen.pop(dropped, None)
            self._raise_floor(dropped_expires)
            self._persist_forgetting(dropped_expires)
        self._seen[nonce] = expires
        heapq.heappush(self._by_expiry, (expires, nonce))

    def _raise_floor(self, expires: datetime) -> None:
        if self._floor is None or expires > self._floor:
            self._floor = expires

    def _persist_forgetting(self, until: datetime) -> None:
        if self._spent is None:
            return
        try:
            self._spent.forget_nonces(until, floor=self._floor)
        except Exception:  # a nonce kept too long refuses nothing that is current
            log.exception("lane %s: could not drop expired nonces", self.lane)


def args_problem(command: LaneCommand) -> str | None:
    """What is wrong with a command's arguments for its kind, if anything."""
    lane = command.args.get("lane")
    if lane is not None and not isinstance(lane, str):
        return f"{command.command}: args.lane must be a string"
    if command.command == "open":
        settled = command.args.get("settled")
        if settled is not None and settled not in SETTLEMENTS:
            return (f"open: args.settled must be one of {', '.join(SETTLEMENTS)}, "
                    f"not {settled!r}")
        session_id = command.args.get("session_id")
        if session_id is not None and (not isinstance(session_id, str) or not session_id
                                       or len(session_id) > SESSION_ID_MAX):
            return f"open: args.session_id must be text of 1 to {SESSION_ID_MAX} characters"
    if command.command == "display":
        texts = {k: command.args.get(k) for k in ("zh", "en")}
        if all(v is None for v in texts.values()):
            return "display: needs args.zh or args.en"
        for name, value in texts.items():
            if value is not None and (not isinstance(value, str) or len(value) > DISPLAY_TEXT_MAX):
                return f"display: args.{name} must be text of at most {DISPLAY_TEXT_MAX} characters"
    return None


class CommandInbox:
    """Verdicts on the commands that arrived, queued for the lane's worker."""

    def __init__(self, lane: str, verifier: CommandVerifier | None, *, events: EventLog,
                 wake: Callable[[], None]) -> None:
        self._lane = lane
        self.verifier = verifier
        self._events = events
        self._wake = wake
        self._accepted: deque[LaneCommand] = deque()
        self._rejected: deque[CommandVerdict] = deque()
        self.rejected = 0

    def on_command(self, _topic: str, payload: bytes) -> None:
        """The bus's thread: check at once (a command's age counts from its arrival), queue
        the outcome for the worker, wake it."""
        if self.verifier is None:
            verdict = CommandVerdict.reject("bad_signature", "this lane has no command key")
        else:
            verdict = self.verifier.check_payload(payload)
        if verdict.accepted and verdict.command is not None:
            log.info("lane %s: accepted %s", self._lane, verdict.detail)
            self._accepted.append(verdict.command)
        else:
            log.warning("lane %s: command rejected (%s): %s", self._lane, verdict.reason,
                        verdict.detail)
            self._rejected.append(verdict)
        self._wake()

    def waiting(self) -> bool:
        return bool(self._accepted)

    def close_waiting(self) -> bool:
        return any(command.command == "close" for command in list(self._accepted))

    def next(self) -> LaneCommand | None:
        try:
            return self._accepted.popleft()
        except IndexError:
            return None

    def reject(self, verdict: CommandVerdict) -> None:
        self._rejected.append(verdict)

    def report_rejections(self) -> None:
        """Worker, each time it looks: one ``command_rejected`` fault per rejection."""
        while True:
            try:
                verdict = self._rejected.popleft()
            except IndexError:
                return
            self.rejected += 1
            self._events.fault("command_rejected", f"{verdict.reason}: {verdict.detail}")


@dataclass(frozen=True, slots=True)
class DisplayText:
    """What the gateway last asked the lane display to show (the display driver reads it)."""

    zh: str
    en: str
    issuer: str


class CommandDesk:
    """Carries out accepted commands on the worker: one handler per command, each knowing
    what a fire changes."""

    def __init__(self, inbox: CommandInbox, *, gate: Gate, events: EventLog,
                 status: LaneStatus) -> None:
        self.inbox = inbox
        self._gate = gate
        self._events = events
        self._status = status
        self.done = 0
        self.display: DisplayText | None = None
        self._handlers: dict[str, Callable[[LaneCommand, bool], None]] = {
            "open": self._open, "hold_open": self._hold_open, "close": self._close,
            "display": self._display,
        }

    def run(self, command: LaneCommand, *, fire: bool = False) -> None:
        """Carry out one accepted command (``fire``: the lane is in its fire mode)."""
        verifier = self.inbox.verifier
        if verifier is not None and not verifier.still_valid(command):
            # It waited behind a car for longer than it was valid: the guard has moved on.
            self.inbox.reject(CommandVerdict.reject(
                "expired", f"{command.command}: expired while the lane was busy", command))
            self.inbox.report_rejections()
            return
        problem = None if fire or command.command != "open" else self._gate.open_problem(
            _text(command.args.get("session_id")))
        if problem is not None:  # the money was for another car: this one keeps waiting
            self.inbox.reject(CommandVerdict.reject(
                "wrong_session", f"open from {command.issuer}: {problem}", command))
            self.inbox.report_rejections()
            return
        self.done += 1
        handler = self._handlers.get(command.command)
        if handler is not None:
            handler(command, fire)
        elif not fire:
            self._events.fault("command_unsupported",
                               f"{command.command} from {command.issuer} is not supported yet")

    def _open(self, command: LaneCommand, fire: bool) -> None:
        if not fire:  # during a fire the barrier is up already
            settled = _text(command.args.get("settled"))  # checked: a Settlement or None
            self._gate.manual_open(command.nonce, settled=cast("Settlement | None", settled),
                                   session_id=_text(command.args.get("session_id")))

    def _hold_open(self, command: LaneCommand, fire: bool) -> None:
        if fire:
            self._gate.step(Event.HOLD_OPEN, "command_hold_open")  # held after the fire
        else:
            self._gate.hold_open()

    def _close(self, command: LaneCommand, fire: bool) -> None:
        if fire:
            self._gate.step(Event.CLOSE_COMMAND)  # ends a hold; the fire keeps it up
            self._events.fault("fire_hold", f"close from {command.issuer} refused: the fire "
                                            "alarm holds the barrier open")
            return
        self._gate.close()

    def _display(self, command: LaneCommand, fire: bool) -> None:
        self.display = DisplayText(zh=str(command.args.get("zh", "")),
                                   en=str(command.args.get("en", "")), issuer=command.issuer)
        if not fire:  # a car waiting for its money keeps its QR (the text says "scan QR")
            self._status.show(self.display.zh, self.display.en, self._gate.pay_qr())


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
