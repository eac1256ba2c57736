"""Alerts that reach a person: raised → notified → acknowledged → resolved, with escalation.

An alert is raised for a *condition* named by a key (``fire``, ``flood:2``,
``missing:flood1``); while an alert with that key is unresolved, raising it again returns
the same alert, so a condition that keeps being reported raises one alert, not one per
reading. Each alert climbs the three-shift roster — the guard on duty, then the squad
leader, the captain, the manager, each step after its delay — and the whole ladder starts
again every ``repeat_min`` until somebody acknowledges. A fire goes to every step at once.

Time comes only from the injected clock: :meth:`AlertDesk.tick` sends what is due at
``now``, so a test on a :class:`~parkguard.clock.ManualClock` advances time and sees each
step leave at its simulated minute; :class:`Ticker` calls it in production.

Messages leave through a :class:`Notifier` (:class:`AppriseNotifier`: DingTalk, WeCom,
Feishu, ``mailto://``, ``json://``, ntfy, ... any Apprise URL) and the MQTT topic
``alert/{id}`` (retained while active, cleared once resolved). Acknowledgement comes from
the dashboard (:meth:`AlertDesk.ack`), a signed link in the message
(:meth:`AlertDesk.ack_url` / :meth:`AlertDesk.ack_with_token`) or the staff app over MQTT
(:meth:`AlertDesk.handle_ack_message`, topic ``alert/{id}/ack/{staff}``). Every ack and
resolve is written to the hash-chained audit log in the transaction that changes the alert.

``db`` is the gateway worker's connection: call the desk on the worker (``Gateway.call``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from functools import partial
from pathlib import Path
from time import perf_counter
from typing import Any, Final, Literal, Protocol, Self, TypeAlias
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlite_utils
from pydantic import Field, model_validator
from sqlite_utils.migrations import Migrations

from gateway.records.audit import AuditLog
from gateway.records.reports import mask_phone
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import StrictModel
from parkguard.core.zones import TimeZoneName
from parkguard.errors import ContractError, ParkGuardError
from wire.contract import topics
from wire.contract.messages import Alert, WireMessage

__all__ = [
    "ROLES",
    "AckClaim",
    "AckTokenError",
    "AlertDesk",
    "AlertError",
    "AlertSettings",
    "AlertState",
    "AlertView",
    "AppriseNotifier",
    "Notifier",
    "NotifyError",
    "Person",
    "Publisher",
    "Role",
    "Severity",
    "Shift",
    "Step",
    "Ticker",
    "UnknownAlertError",
    "load_or_create_key",
    "migrations",
]

log = logging.getLogger(__name__)

Role: TypeAlias = Literal["guard", "squad_leader", "captain", "manager"]
ROLES: Final[tuple[Role, ...]] = ("guard", "squad_leader", "captain", "manager")
Severity: TypeAlias = Literal["info", "warning", "critical"]
AlertState: TypeAlias = Literal["raised", "notified", "acked", "resolved"]
_ACTIVE: Final = ("raised", "notified")
_SEGMENT = r"^[a-z0-9][a-z0-9_-]{0,31}$"
ACK_TOPIC_SUFFIX: Final = "/ack/"


# --- errors ------------------------------------------------------------------------------------


class AlertError(ParkGuardError, ValueError):
    """An alert action was refused (blank actor or reason, resolved already, ...)."""


class UnknownAlertError(AlertError, LookupError):
    """No alert has that id."""


class AckTokenError(AlertError):
    """A signed acknowledgement link was refused: ``reason`` is malformed, forged, expired
    or used."""

    def __init__(self, reason: Literal["malformed", "forged", "expired", "used"],
                 detail: str = "") -> None:
        super().__init__(f"acknowledgement link {reason}" + (f": {detail}" if detail else ""))
        self.reason = reason


class NotifyError(ParkGuardError, RuntimeError):
    """A channel did not take the message."""


# --- configuration -----------------------------------------------------------------------------


class Shift(StrictModel):
    """One shift of the roster; it lasts until the next shift's start (site-local time)."""

    name: str = Field(pattern=_SEGMENT, description="shift name, e.g. a, b, c")
    start: time = Field(description="site-local start time, e.g. 08:00")


class Person(StrictModel):
    """Someone alerts can reach."""

    id: str = Field(pattern=_SEGMENT,
                    description="staff id: the same as the staff app's user (`staff-<id>`)")
    name: str = Field(min_length=1, max_length=64)
    role: Role | None = Field(
        default=None, description="rung of the escalation ladder; none: reached only as a "
                                  "team member or when everyone on duty is alerted")
    shift: str | None = Field(
        default=None, description="the shift this person works; none: always reachable "
                                  "(managers, on-call engineers)")
    teams: tuple[str, ...] = Field(
        default=(), description="teams this person belongs to, e.g. facilities, flood")
    contacts: dict[str, str] = Field(
        default_factory=dict,
        description="channel label → Apprise URL (dingtalk://, wecombot://, feishu://, "
                    "mailto://, mailtos://, json://, ntfy://, ...)")


class Step(StrictModel):
    """One rung of the escalation ladder: who, and how long after the alert was raised."""

    role: Role
    after_min: float = Field(ge=0, description="minutes after the raise (and after each "
                                               "repeat of the ladder)")


DEFAULT_STEPS: Final = (
    Step(role="guard", after_min=0),
    Step(role="squad_leader", after_min=5),
    Step(role="captain", after_min=10),
    Step(role="manager", after_min=15),
)


class AlertSettings(StrictModel):
    """The roster, the escalation ladder and the acknowledgement links."""

    timezone: TimeZoneName = Field(default="Asia/Shanghai",
                                   description="zone of the shift start times")
    shifts: tuple[Shift, ...] = Field(min_length=1, description="the shifts of a day")
    people: tuple[Person, ...] = Field(min_length=1)
    steps: tuple[Step, ...] = Field(default=DEFAULT_STEPS, min_length=1)
    repeat_min: float = Field(
        default=30, gt=0, description="the ladder starts again this often until acknowledged")
    ack_base_url: str = Field(
        default="http://localhost:8080/alerts/ack",
        description="dashboard page that takes `?t=<token>`; the link in every message")
    ack_link_ttl_min: int = Field(default=24 * 60, gt=0, le=14 * 24 * 60)
    ack_key_file: Path | None = Field(
        default=None, description="secret for the signed links (made 0600 if missing); none: "
                                  "a fresh key each start (old links stop working)")
    owner_message_url: str | None = Field(
        default=None, description="Apprise URL template with {phone} for messages to car "
                                  "owners (an SMS gateway); none: not sent")


    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [s.name for s in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError("shift names must be unique")
        if len({s.start for s in self.shifts}) != len(self.shifts):
            raise ValueError("two shifts start at the same time")
        ids = [p.id for p in self.people]
        if len(set(ids)) != len(ids):
            raise ValueError("person ids must be unique")
        for person in self.people:
            if person.shift is not None and person.shift not in names:
                raise ValueError(f"{person.id}: unknown shift {person.shift!r}")
        delays = [s.after_min for s in self.steps]
        if delays != sorted(delays):
            raise ValueError("escalation steps must come in order of after_min")
        if self.repeat_min <= delays[-1]:
            raise ValueError("repeat_min must be longer than the last step's after_min")
        return self

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def shift_at(self, moment: datetime) -> str:
        """The shift on duty at ``moment``: the one that started last, wrapping midnight."""
        local = moment.astimezone(self.zone()).time()
        ordered = sorted(self.shifts, key=lambda s: s.start)
        current = ordered[-1]  # before the first start of the day: yesterday's last shift
        for shift in ordered:
            if shift.start <= local:
                current = shift
        return current.name

    def on_duty(self, moment: datetime) -> list[Person]:
        shift = self.shift_at(moment)
        return [p for p in self.people if p.shift is None or p.shift == shift]


def load_or_create_key(path: Path) -> bytes:
    """The link-signing secret kept in ``path`` (32 random bytes, made 0600 if missing)."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    if len(key) < 16:
        raise AlertError(f"{path}: the ack key must be at least 16 bytes")
    return key


# --- channels ----------------------------------------------------------------------------------


class Notifier(Protocol):
    """Sends one message to one channel address; raises :class:`NotifyError` if refused."""

    def send(self, url: str, title: str, body: str) -> None: ...


class AppriseNotifier:
    """Any Apprise URL: ``dingtalk://``, ``wecombot://``, ``feishu://``, ``mailto://``,
    ``mailtos://``, ``json://``, ``ntfy://`` ..."""

    def send(self, url: str, title: str, body: str) -> None:
        import apprise  # a heavy import: only where messages leave

        sender = apprise.Apprise()
        if not sender.add(url):
            raise NotifyError(f"not a usable Apprise URL: {_redact(url)}")
        if not sender.notify(title=title, body=body):
            raise NotifyError(f"{_redact(url).split(':', 1)[0]} did not take the message")


class Publisher(Protocol):
    """What the desk needs of the bus (``MqttBus`` fits)."""

    def publish(self, topic: str, payload: bytes | WireMessage, *, qos: int = 1,
                retain: bool = False) -> object: ...


def _redact(url: str) -> str:
    """A channel URL fit for a log or a table: scheme and host, no tokens or passwords."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}" if rest else scheme


@dataclass(frozen=True, slots=True)
class _Outgoing:
    notification_id: int
    url: str
    title: str
    body: str


class _Courier:
    """Sends on a thread of its own, so a slow channel never holds the gateway's worker;
    each outcome is recorded through ``record`` (on the worker: ``Gateway.call``)."""

    def __init__(self, notifier: Notifier,
                 record: Callable[[int, str | None], None],
                 run_on_owner: Callable[[Callable[[], None]], object]) -> None:
        self._notifier = notifier
        self._record = record
        self._owner = run_on_owner
        self._queue: queue.Queue[_Outgoing | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-courier", daemon=True)
        self._thread.start()

    def submit(self, item: _Outgoing) -> None:
        self._queue.put(item)

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            error = _send(self._notifier, item)
            try:
                self._owner(partial(self._record, item.notification_id, error))
            except Exception:
                log.exception("alerts: outcome of notification %d not recorded",
                              item.notification_id)


def _send(notifier: Notifier, item: _Outgoing) -> str | None:
    try:
        notifier.send(item.url, item.title, item.body)
    except Exception as error:  # any channel failure is an outcome, never a crash
        log.warning("alerts: notification %d to %s failed: %s", item.notification_id,
                    _redact(item.url), error)
        return f"{type(error).__name__}: {error}"[:500]
    return None


# --- schema ------------------------------------------------------------------------------------

migrations = Migrations("parkguard.alerts")


@migrations()
def m001_alerts(db: sqlite_utils.Database) -> None:
    db.table("alerts").create(
        {
            "id": int, "alert_id": str, "key": str, "kind": str, "severity": str,
            "state": str, "title_zh": str, "title_en": str, "detail": str, "team": str,
            "all_at_once": int, "raised_at": str, "notified_at": str, "step": int,
            "round": int, "next_due": str, "acked_at": str, "acked_by": str,
            "acked_via": str, "resolved_at": str, "resolved_by": str, "resolve_reason": str,
            "updated_at": str,
        },
        pk="id",
        not_null=["alert_id", "key", "kind", "severity", "state", "title_zh", "title_en",
                  "detail", "all_at_once", "raised_at", "step", "round", "updated_at"],
        strict=True,
    )
    db.execute("CREATE UNIQUE INDEX alerts_alert_id ON alerts(alert_id)")
    # The dedup rule itself: one unresolved alert per condition.
    db.execute("CREATE UNIQUE INDEX alerts_open_key ON alerts(key) WHERE state <> 'resolved'")
    db.execute("CREATE INDEX alerts_due ON alerts(next_due) WHERE next_due IS NOT NULL")
    db.table("alert_events").create(
        {"id": int, "alert_id": str, "at": str, "event": str, "actor": str, "detail": str},
        pk="id", not_null=["alert_id", "at", "event", "actor"], strict=True,
    )
    db.execute("CREATE INDEX alert_events_alert ON alert_events(alert_id)")
    db.table("alert_notifications").create(
        {"id": int, "alert_id": str, "step": int, "round": int, "person": str,
         "channel": str, "target": str, "status": str, "error": str, "queued_at": str,
         "done_at": str},
        pk="id", not_null=["alert_id", "step", "round", "person", "channel", "target",
                           "status", "queued_at"], strict=True,
    )
    db.execute("CREATE INDEX alert_notifications_alert ON alert_notifications(alert_id)")
    # Owner messages ("please move your car") go once per alert and phone.
    db.execute("CREATE UNIQUE INDEX alert_notifications_owner ON "
               "alert_notifications(alert_id, target) WHERE channel = 'owner'")
    db.table("alert_ack_tokens").create(
        {"digest": str, "alert_id": str, "person": str, "used_at": str},
        pk="digest", not_null=["alert_id", "person", "used_at"], strict=True,
    )


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as the dashboard shows it."""

    alert_id: str
    key: str
    kind: str
    severity: Severity
    state: AlertState
    title_zh: str
    title_en: str
    detail: str
    team: str | None
    all_at_once: bool
    raised_at: str
    notified_at: str | None
    step: int
    """Highest ladder step reached so far (-1: nobody notified yet)."""
    round: int
    next_due: str | None
    acked_at: str | None
    acked_by: str | None
    acked_via: str | None
    resolved_at: str | None
    resolved_by: str | None
    resolve_reason: str | None

    @property
    def active(self) -> bool:
        return self.state != "resolved"

    @classmethod
    def of(cls, row: dict[str, Any]) -> AlertView:
        return cls(
            alert_id=row["alert_id"], key=row["key"], kind=row["kind"],
            severity=row["severity"], state=row["state"], title_zh=row["title_zh"],
            title_en=row["title_en"], detail=row["detail"], team=row["team"],
            all_at_once=bool(row["all_at_once"]), raised_at=row["raised_at"],
            notified_at=row["notified_at"], step=row["step"], round=row["round"],
            next_due=row["next_due"], acked_at=row["acked_at"], acked_by=row["acked_by"],
            acked_via=row["acked_via"], resolved_at=row["resolved_at"],
            resolved_by=row["resolved_by"], resolve_reason=row["resolve_reason"],
        )

    def wire(self, ts: datetime) -> Alert:
        """The ``alert/{id}`` message (``notified`` is still ``raised`` on the wire)."""
        state: Literal["raised", "acked", "resolved"] = (
            "raised" if self.state in _ACTIVE else self.state)  # type: ignore[assignment]
        return Alert(
            alert_id=self.alert_id, kind=self.kind[:32], severity=self.severity, state=state,
            escalation_step=max(self.step, 0), title_zh=self.title_zh[:128],
            title_en=self.title_en[:128], detail=self.detail[:1024],
            raised_at=datetime.fromisoformat(self.raised_at), acked_by=self.acked_by,
            ts=ts,
        )


@dataclass(frozen=True, slots=True)
class AckClaim:
    """What a valid signed link says: this person may acknowledge this alert until then."""

    alert_id: str
    person: str
    expires: datetime
    digest: str


class _AckMessage(StrictModel):
    """The staff app's acknowledgement on ``alert/{id}/ack/{staff}`` (who is in the topic).

    Not in the wire contract yet: see docs/alarms-and-alerts.md, "Contract additions".
    """

    v: Literal[1] = 1
    alert_id: str
    ts: datetime | None = None
    note: str = Field(default="", max_length=256)


# --- the desk ----------------------------------------------------------------------------------


class AlertDesk:
    """Raises, escalates, acknowledges and resolves alerts; keeps them in SQLite."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        *,
        site: str,
        clock: Clock,
        audit: AuditLog,
        settings: AlertSettings,
        notifier: Notifier,
        ack_key: bytes,
        publisher: Publisher | None = None,
        run_on_owner: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        """``run_on_owner``: when given (``Gateway.call``), messages leave from a courier
        thread and their outcomes are recorded through it; otherwise they leave inline."""
        if len(ack_key) < 16:
            raise AlertError("the ack key must be at least 16 bytes")
        self.db = db
        self.site = topics.check_segment(site, what="site")
        self._clock = clock
        self._audit = audit
        self.settings = settings
        self._notifier = notifier
        self._key = ack_key
        self._publisher = publisher
        self._people = {p.id: p for p in settings.people}
        self._courier = (_Courier(notifier, self.record_delivery, run_on_owner)
                         if run_on_owner is not None else None)
        self.sent = 0
        self.failed = 0
        self.first_dispatch: dict[str, float] = {}
        """alert id → ``time.perf_counter()`` when its first message went out (benchmarks)."""
        migrations.apply(db)

    def close(self) -> None:
        """Let the courier finish what it holds (in production before the bus stops)."""
        if self._courier is not None:
            self._courier.stop()

    # --- raising -------------------------------------------------------------------------

    def raise_alert(
        self,
        key: str,
        *,
        kind: str,
        severity: Severity,
        title_zh: str,
        title_en: str,
        detail: str = "",
        team: str | None = None,
        all_at_once: bool = False,
    ) -> tuple[AlertView, bool]:
        """The unresolved alert for ``key``, raising it (and sending its first step) if there
        is none; says whether it is new. A raise never downgrades or re-sends an alert."""
        if not key.strip():
            raise AlertError("an alert needs a key naming its condition")
        now = self._clock.now()
        with self.db.atomic():
            existing = self._open_row(key)
            if existing is not None:
                if existing["detail"] != detail and existing["state"] in _ACTIVE:
                    self.db.table("alerts").update(existing["id"], {
                        "detail": detail, "updated_at": utc_iso(now)})
                return self.view(existing["alert_id"]), False
            row = self.db.table("alerts").insert({
                "alert_id": "pending", "key": key, "kind": kind[:32], "severity": severity,
                "state": "raised", "title_zh": title_zh[:128], "title_en": title_en[:128],
                "detail": detail[:1024], "team": team, "all_at_once": int(all_at_once),
                "raised_at": utc_iso(now), "notified_at": None, "step": -1, "round": 0,
                "next_due": utc_iso(now), "updated_at": utc_iso(now),
            })
            pk = _pk(row.last_pk)
            alert_id = f"a-{pk:06d}"
            row.update(pk, {"alert_id": alert_id})
            self._event(alert_id, now, "raised", "gateway", f"{severity} {kind}: {detail}")
        log.warning("alerts: raised %s (%s) %s / %s", alert_id, key, title_zh, title_en)
        self.tick(now)  # the first step leaves at once
        return self.view(alert_id), True

    # --- escalation ----------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> int:
        """Send every step that is due at ``now`` (the clock's now by default); return how
        many messages were queued. Steps missed while the gateway was down go out at once."""
        now = now or self._clock.now()
        queued = 0
        due = self.db.query(
            "SELECT alert_id FROM alerts WHERE next_due IS NOT NULL AND next_due <= ? "
            "AND state IN ('raised', 'notified') ORDER BY next_due", [utc_iso(now)])
        for alert_id in [r["alert_id"] for r in due]:
            queued += self._escalate(alert_id, now)
        return queued

    def next_due(self) -> datetime | None:
        """When the next escalation step is due (for a ticker that sleeps until then)."""
        row = next(self.db.query(
            "SELECT min(next_due) AS due FROM alerts WHERE state IN ('raised', 'notified')"))
        return datetime.fromisoformat(row["due"]) if row["due"] else None

    def _schedule(self, raised: datetime, round_: int, step: int) -> datetime:
        return raised + timedelta(
            minutes=round_ * self.settings.repeat_min + self.settings.steps[step].after_min)

    def _escalate(self, alert_id: str, now: datetime) -> int:
        outgoing: list[_Outgoing] = []
        with self.db.atomic():
            row = self._row(alert_id)
            raised = datetime.fromisoformat(row["raised_at"])
            steps = self.settings.steps
            last = len(steps) - 1
            round_, step = row["round"], row["step"]
            while True:
                # the next (round, step) to send, and when it is due
                if row["all_at_once"]:
                    if step < 0:
                        nxt_round, nxt_step = round_, last
                        due = raised
                    else:
                        nxt_round, nxt_step = round_ + 1, last
                        due = raised + timedelta(minutes=nxt_round * self.settings.repeat_min)
                elif step < last:
                    nxt_round, nxt_step = round_, step + 1
                    due = self._schedule(raised, nxt_round, nxt_step)
                else:
                    nxt_round, nxt_step = round_ + 1, 0
                    due = self._schedule(raised, nxt_round, nxt_step)
                if due > now:
                    break
                round_, step = nxt_round, nxt_step
                people = self._recipients(row, step, now)
                outgoing += self._queue_step(row, people, step, round_, now)
            self.db.table("alerts").update(row["id"], {
                "round": round_, "step": step, "next_due": utc_iso(due),
                "updated_at": utc_iso(now)})
        self._publish(alert_id, now)
        self._dispatch(outgoing)
        return len(outgoing)

    def _recipients(self, row: dict[str, Any], step: int, now: datetime) -> list[Person]:
        on_duty = self.settings.on_duty(now)
        if row["all_at_once"]:
            chosen = list(on_duty)
            chosen += [p for p in self.settings.people if p.role == "manager"
                       and p not in chosen]
            return chosen
        role = self.settings.steps[step].role
        chosen = [p for p in on_duty if p.role == role]
        if step == 0 and row["team"]:
            chosen += [p for p in on_duty if row["team"] in p.teams and p not in chosen]
        return chosen

    def _queue_step(self, row: dict[str, Any], people: list[Person], step: int, round_: int,
                    now: datetime) -> list[_Outgoing]:
        alert_id = row["alert_id"]
        who = ", ".join(p.id for p in people) or "nobody on duty"
        self._event(alert_id, now, "escalated",
                    "gateway", f"round {round_} step {step}: {who}")
        if not people:
            log.error("alerts: %s step %d: nobody on duty to notify", alert_id, step)
        out = []
        for person in people:
            title, body = self._message(row, person, step, now)
            if not person.contacts:
                log.error("alerts: %s has no contact channel", person.id)
            for channel, url in person.contacts.items():
                pk = self.db.table("alert_notifications").insert({
                    "alert_id": alert_id, "step": step, "round": round_, "person": person.id,
                    "channel": channel, "target": _redact(url), "status": "queued",
                    "error": None, "queued_at": utc_iso(now), "done_at": None,
                }).last_pk
                out.append(_Outgoing(_pk(pk), url, title, body))
        return out

    def _message(self, row: dict[str, Any], person: Person, step: int,
                 now: datetime) -> tuple[str, str]:
        marks = {"critical": "【紧急 CRITICAL】", "warning": "【警告 WARNING】",
                 "info": "【通知 INFO】"}
        title = f"{marks.get(row['severity'], '')}{row['title_zh']} / {row['title_en']}"
        local = datetime.fromisoformat(row["raised_at"]).astimezone(self.settings.zone())
        lines = [
            f"{row['title_zh']}",
            f"{row['title_en']}",
        ]
        if row["detail"]:
            lines.append(row["detail"])
        lines += [
            f"发生时间 Raised: {local:%Y-%m-%d %H:%M:%S}  ({self.settings.timezone})",
            f"编号 Alert: {row['alert_id']} · 第{step + 1}级 step {step + 1}"
            + (" · 全员 all on duty" if row["all_at_once"] else ""),
            f"收到请确认 Acknowledge: {self.ack_url(row['alert_id'], person.id, now=now)}",
        ]
        return title, "\n".join(lines)

    def _dispatch(self, outgoing: list[_Outgoing]) -> None:
        for item in outgoing:
            if self._courier is not None:
                self._courier.submit(item)
            else:
                self.record_delivery(item.notification_id, _send(self._notifier, item))

    def record_delivery(self, notification_id: int, error: str | None) -> None:
        """A channel's outcome for one queued notification; the first success makes the
        alert ``notified``."""
        now = self._clock.now()
        table = self.db.table("alert_notifications")
        with self.db.atomic():
            note = table.get(notification_id)
            table.update(notification_id, {"status": "failed" if error else "sent",
                                           "error": error, "done_at": utc_iso(now)})
            if error:
                self.failed += 1
                return
            self.sent += 1
            alert_id = note["alert_id"]
            self.first_dispatch.setdefault(alert_id, perf_counter())
            if note["channel"] == "owner":
                return
            row = self._row(alert_id)
            if row["state"] == "raised":
                self.db.table("alerts").update(row["id"], {
                    "state": "notified", "notified_at": utc_iso(now),
                    "updated_at": utc_iso(now)})
                self._event(alert_id, now, "notified", "gateway",
                            f"{note['person']} via {note['channel']}")

    # --- messages to car owners ----------------------------------------------------------

    def message_owners(self, alert_id: str, phones: Iterable[str], text: str) -> int:
        """Send ``text`` once per phone for this alert (through ``owner_message_url``);
        return how many were new. Phones are stored masked."""
        template = self.settings.owner_message_url
        now = self._clock.now()
        out: list[_Outgoing] = []
        with self.db.atomic():
            self._row(alert_id)
            for phone in dict.fromkeys(p.strip() for p in phones if p and p.strip()):
                digest = hashlib.sha256(f"{alert_id}:{phone}".encode()).hexdigest()[:16]
                target = f"{mask_phone(phone)}#{digest}"
                exists = self.db.execute(
                    "SELECT 1 FROM alert_notifications WHERE alert_id = ? AND target = ? "
                    "AND channel = 'owner'", [alert_id, target]).fetchone()
                if exists:
                    continue
                status = "queued" if template else "skipped"
                pk = self.db.table("alert_notifications").insert({
                    "alert_id": alert_id, "step": 0, "round": 0, "person": "owner",
                    "channel": "owner", "target": target, "status": status,
                    "error": None if template else "no owner_message_url configured",
                    "queued_at": utc_iso(now), "done_at": None}).last_pk
                if template:
                    url = template.replace("{phone}", quote(phone, safe="+"))
                    out.append(_Outgoing(_pk(pk), url, "ParkGuard", text))
            self._event(alert_id, now, "owners_messaged", "gateway",
                        f"{len(out)} owner messages")
        self._dispatch(out)
        return len(out)

    # --- acknowledging -------------------------------------------------------------------

    def ack(self, alert_id: str, by: str, via: str) -> AlertView:
        """``by`` acknowledges the alert (``via`` dashboard, link, mqtt): escalation stops.
        Acknowledging an acknowledged alert changes nothing; a resolved one is refused."""
        if not by.strip() or not via.strip():
            raise AlertError("an acknowledgement needs who and how")
        now = self._clock.now()
        with self.db.atomic():
            row = self._row(alert_id)
            if row["state"] == "resolved":
                raise AlertError(f"alert {alert_id} is resolved already")
            if row["state"] == "acked":
                return AlertView.of(row)
            self.db.table("alerts").update(row["id"], {
                "state": "acked", "acked_at": utc_iso(now), "acked_by": by[:64],
                "acked_via": via, "next_due": None, "updated_at": utc_iso(now)})
            self._event(alert_id, now, "acked", by, f"via {via}")
            self._audit.record(
                actor=by, action="alert.ack", subject=f"alert:{alert_id}",
                reason=f"acknowledged via {via}",
                before={"state": row["state"], "step": row["step"], "round": row["round"]},
                after={"state": "acked", "key": row["key"], "kind": row["kind"]})
        log.warning("alerts: %s acknowledged by %s via %s", alert_id, by, via)
        self._publish(alert_id, now)
        return self.view(alert_id)

    def ack_url(self, alert_id: str, person: str, *, now: datetime | None = None) -> str:
        """The signed link for ``person`` to acknowledge ``alert_id`` (valid
        ``ack_link_ttl_min``)."""
        return f"{self.settings.ack_base_url}?t={self.ack_token(alert_id, person, now=now)}"

    def ack_token(self, alert_id: str, person: str, *, now: datetime | None = None) -> str:
        expires = (now or self._clock.now()) + timedelta(minutes=self.settings.ack_link_ttl_min)
        claim = json.dumps({"a": alert_id, "p": person, "e": int(expires.timestamp()),
                            "n": secrets.token_hex(4)}, separators=(",", ":"))
        body = _b64(claim.encode())
        return f"{body}.{_b64(self._sign(body))}"

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, f"parkguard-ack.{self.site}.{body}".encode(),
                        hashlib.sha256).digest()

    def verify_ack_token(self, token: str) -> AckClaim:
        """What a link says, if this gateway signed it and it has not expired; otherwise
        :class:`AckTokenError` (``malformed``, ``forged``, ``expired``)."""
        body, dot, signature = token.strip().partition(".")
        if not dot or not body or not signature:
            raise AckTokenError("malformed")
        try:
            given = _unb64(signature)
            claim = json.loads(_unb64(body))
            alert_id, person, expires_s = str(claim["a"]), str(claim["p"]), int(claim["e"])
        except (ValueError, KeyError, TypeError) as error:
            raise AckTokenError("malformed") from error
        if not hmac.compare_digest(given, self._sign(body)):
            raise AckTokenError("forged")
        expires = datetime.fromtimestamp(expires_s, tz=self._clock.now().tzinfo)
        if self._clock.now() >= expires:
            raise AckTokenError("expired", f"expired at {utc_iso(expires)}")
        digest = hashlib.sha256(token.encode()).hexdigest()
        return AckClaim(alert_id, person, expires, digest)

    def ack_with_token(self, token: str) -> AlertView:
        """Acknowledge from a signed link: once per link; forged, expired or reused links
        are refused with :class:`AckTokenError`."""
        claim = self.verify_ack_token(token)
        with self.db.atomic():
            if self.db.execute("SELECT 1 FROM alert_ack_tokens WHERE digest = ?",
                               [claim.digest]).fetchone():
                raise AckTokenError("used")
            self.db.table("alert_ack_tokens").insert({
                "digest": claim.digest, "alert_id": claim.alert_id, "person": claim.person,
                "used_at": utc_iso(self._clock.now())})
            return self.ack(claim.alert_id, f"staff:{claim.person}", "link")

    def ack_filter(self) -> str:
        """Subscription filter for the staff app's acks: ``alert/+/ack/+``."""
        return f"{topics.all_alerts(self.site)}{ACK_TOPIC_SUFFIX}+"

    def handle_ack_message(self, topic: str, payload: bytes) -> AlertView:
        """An ack from the staff app on ``alert/{id}/ack/{staff}``: the broker's ACL lets
        staff member X publish only under ``ack/X``, so the topic says who. Raises
        :class:`ContractError` for a bad topic or payload (dead-letter it), and
        :class:`AlertError` if the sender is not on the roster or the alert is unknown."""
        where = topics.parse_topic(topic)
        if where.kind != "alert_ack" or where.site != self.site:
            raise ContractError(f"{topic!r} is not an alert acknowledgement of {self.site}")
        staff = topic.rsplit("/", 1)[1]
        try:
            message = _AckMessage.model_validate_json(payload or b"{}")
        except Exception as error:
            raise ContractError(f"alert ack on {topic}: {error}") from error
        if message.alert_id != where.node:
            raise ContractError(f"alert ack on {topic}: payload alert_id="
                                f"{message.alert_id!r} does not match the topic")
        if staff not in self._people:
            raise AlertError(f"staff {staff!r} is not on the roster")
        return self.ack(where.node, f"staff:{staff}", "mqtt")

    # --- resolving -----------------------------------------------------------------------

    def resolve(self, alert_id: str, by: str, reason: str) -> AlertView:
        """The condition is over: the alert leaves the topic and escalation stops (audited)."""
        if not by.strip() or not reason.strip():
            raise AlertError("resolving an alert needs who and why")
        now = self._clock.now()
        with self.db.atomic():
            row = self._row(alert_id)
            if row["state"] == "resolved":
                return AlertView.of(row)
            self.db.table("alerts").update(row["id"], {
                "state": "resolved", "resolved_at": utc_iso(now), "resolved_by": by[:64],
                "resolve_reason": reason[:256], "next_due": None, "updated_at": utc_iso(now)})
            self._event(alert_id, now, "resolved", by, reason)
            self._audit.record(
                actor=by, action="alert.resolve", subject=f"alert:{alert_id}", reason=reason,
                before={"state": row["state"], "acked_by": row["acked_by"]},
                after={"state": "resolved", "key": row["key"], "kind": row["kind"]})
        log.warning("alerts: %s resolved by %s: %s", alert_id, by, reason)
        self._publish(alert_id, now)
        return self.view(alert_id)

    def resolve_key(self, key: str, by: str, reason: str) -> AlertView | None:
        """Resolve the unresolved alert for ``key``, if there is one."""
        row = self._open_row(key)
        return self.resolve(row["alert_id"], by, reason) if row else None

    # --- reading -------------------------------------------------------------------------

    def view(self, alert_id: str) -> AlertView:
        return AlertView.of(self._row(alert_id))

    def open_alert(self, key: str) -> AlertView | None:
        row = self._open_row(key)
        return AlertView.of(row) if row else None

    def active(self) -> list[AlertView]:
        """Unresolved alerts, the most severe and then the oldest first (dashboard banner)."""
        rows = self.db.query(
            "SELECT * FROM alerts WHERE state <> 'resolved' ORDER BY CASE severity "
            "WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id")
        return [AlertView.of(r) for r in rows]

    def notifications(self, alert_id: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM alert_notifications WHERE alert_id = ? ORDER BY id", [alert_id]))

    def events(self, alert_id: str) -> list[dict[str, Any]]:
        return list(self.db.query(
            "SELECT * FROM alert_events WHERE alert_id = ? ORDER BY id", [alert_id]))

    def republish(self) -> None:
        """Publish every active alert again (after a reconnect: the broker may have lost
        its retained copies)."""
        now = self._clock.now()
        for view in self.active():
            self._publish(view.alert_id, now)

    def _row(self, alert_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM alerts WHERE alert_id = ?", [alert_id]))
        if not rows:
            raise UnknownAlertError(f"no alert {alert_id!r}")
        return rows[0]

    def _open_row(self, key: str) -> dict[str, Any] | None:
        rows = list(self.db.query(
            "SELECT * FROM alerts WHERE key = ? AND state <> 'resolved'", [key]))
        return rows[0] if rows else None

    def _event(self, alert_id: str, at: datetime, event: str, actor: str, detail: str) -> None:
        self.db.table("alert_events").insert({
            "alert_id": alert_id, "at": utc_iso(at), "event": event, "actor": actor,
            "detail": detail[:1024]})

    def _publish(self, alert_id: str, now: datetime) -> None:
        if self._publisher is None:
            return
        view = self.view(alert_id)
        topic = topics.alert(self.site, alert_id)
        try:
            if view.state == "resolved":
                self._publisher.publish(topic, view.wire(now), qos=1, retain=False)
                self._publisher.publish(topic, b"", qos=1, retain=True)  # clears the retained
            else:
                self._publisher.publish(topic, view.wire(now), qos=1, retain=True)
        except Exception:
            log.exception("alerts: %s not published", alert_id)


def _pk(value: object) -> int:
    if not isinstance(value, int):
        raise AlertError(f"unexpected primary key {value!r}")
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the ticker --------------------------------------------------------------------------------


class Ticker:
    """Calls ``work(now)`` every ``period_s`` of the clock's time on a thread of its own (in
    production ``work`` hands the tick to the gateway's worker through ``Gateway.call``)."""

    def __init__(self, clock: Clock, work: Callable[[datetime], object], *,
                 period_s: float = 1.0) -> None:
        self._clock = clock
        self._work = work
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._clock.wait(self._stop, self._period):
            try:
                self._work(self._clock.now())
            except Exception:
                log.exception("alerts: tick failed")
