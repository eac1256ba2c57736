"""The alert desk: raises, escalates, acknowledges and resolves alerts, and keeps them in
SQLite; the retained ``alert/{id}`` topic follows every change."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any, Final
from urllib.parse import quote

import sqlite_utils

from gateway.records.audit import AuditLog
from gateway.records.reports import mask_phone
from gateway.safety.alerts.channels import (
    Notifier,
    Publisher,
    _Courier,
    _Outgoing,
    _redact,
    _send,
)
from gateway.safety.alerts.errors import AckTokenError, AlertError, UnknownAlertError
from gateway.safety.alerts.settings import AlertSettings, Person, Role, Severity
from gateway.safety.alerts.tokens import AckSigner
from gateway.safety.alerts.values import _ACTIVE, AckClaim, AlertView, _AckMessage
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import reveal
from parkguard.errors import ContractError
from wire.contract import topics

log = logging.getLogger(__name__)


ACK_TOPIC_SUFFIX: Final = "/ack/"


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
        self._signer = AckSigner(ack_key, site=self.site, clock=clock,
                                 ttl_min=settings.ack_link_ttl_min)
        self._publisher = publisher
        self._people = {p.id: p for p in settings.people}
        self._courier = (_Courier(notifier, self.record_delivery, run_on_owner)
                         if run_on_owner is not None else None)
        self.sent = 0
        self.failed = 0
        self.first_dispatch: dict[str, float] = {}
        """alert id → ``time.perf_counter()`` when its first message went out (benchmarks)."""

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
        also_roles: tuple[Role, ...] = (),
    ) -> tuple[AlertView, bool]:
        """The unresolved alert for ``key``, raising it (and sending its first step) if there
        is none; says whether it is new. A raise never downgrades or re-sends an alert.
        ``also_roles``: roles on duty told at the first step besides the ladder's (a lane
        fault goes to the squad leader at once, not after five minutes)."""
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
            # The first step is queued in the same transaction: one commit (an fsync) before
            # the first message leaves, not two.
            outgoing = self._queue_due(alert_id, now, also_roles=also_roles)
        self._publish(alert_id, now)
        self._dispatch(outgoing)  # the first step leaves at once
        log.warning("alerts: raised %s (%s) %s / %s", alert_id, key, title_zh, title_en)
        self.tick(now)  # any other alert whose step is due
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
        outgoing = self._queue_due(alert_id, now)
        self._publish(alert_id, now)
        self._dispatch(outgoing)
        return len(outgoing)

    def _queue_due(self, alert_id: str, now: datetime,
                   also_roles: tuple[Role, ...] = ()) -> list[_Outgoing]:
        """Record every step of ``alert_id`` due at ``now`` and return its messages, to be
        dispatched once the transaction (this one, or the caller's) has committed."""
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
                if round_ == 0 and step == 0 and also_roles:
                    people += [p for p in self.settings.on_duty(now)
                               if p.role in also_roles and p not in people]
                outgoing += self._queue_step(row, people, step, round_, now)
            self.db.table("alerts").update(row["id"], {
                "round": round_, "step": step, "next_due": utc_iso(due),
                "updated_at": utc_iso(now)})
        return outgoing

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
            for channel, secret_url in person.contacts.items():
                url = secret_url.get_secret_value()
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
        template = reveal(self.settings.owner_message_url)
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
        return self._signer.token(alert_id, person, now=now)

    def verify_ack_token(self, token: str) -> AckClaim:
        """What a link says, if this gateway signed it and it has not expired; otherwise
        :class:`AckTokenError` (``malformed``, ``forged``, ``expired``)."""
        return self._signer.verify(token)

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
