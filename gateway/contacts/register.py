"""The register itself: consent in, masked views out, reveal with a reason, deletion on
request and by retention, and texts to the owners of cars inside.

Runs on the gateway's worker (it writes the gateway's SQLite file); texts leave on a courier
thread of its own, so a slow SMS gateway never holds the worker, and each outcome comes back
through ``run_on_owner``. Every change that touches a person's number is in the audit log,
with the number masked.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Literal
from urllib.parse import quote

import sqlite_utils

from gateway.contacts.settings import (
    CONCERNS,
    CONSENT_WORDING,
    CURRENT_WORDING,
    INCIDENT_CONCERNS,
    ContactSettings,
    concern_text,
)
from gateway.contacts.vault import PhoneVault
from gateway.records.audit import AuditLog
from gateway.safety.alerts.channels import Notifier
from parkguard.clock import Clock, utc_iso
from parkguard.configfile import reveal
from parkguard.core.privacy import mask_phone
from parkguard.errors import ParkGuardError

log = logging.getLogger(__name__)

Source = Literal["pay_page", "kiosk"]
MIN_REASON = 4


class ContactError(ParkGuardError, ValueError):
    """A register action was refused (no consent, no reason, unknown contact...)."""


def clean_phone(phone: str) -> str:
    """A mainland mobile number as 11 digits, or :class:`ContactError` (never echoing it)."""
    digits = "".join(c for c in phone if c.isdigit())
    if digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if len(digits) != 11 or digits[0] != "1" or digits[1] not in "3456789":
        raise ContactError("phone: a mainland mobile number has 11 digits and starts 13-19")
    return digits


@dataclass(frozen=True, slots=True)
class ContactView:
    """A contact as every screen shows it: the number masked."""

    contact_id: str
    phone_masked: str
    plate: str
    source: str
    consent_at: str
    wording_version: str
    state: str
    inside: bool


@dataclass(frozen=True, slots=True)
class _Text:
    row_id: int
    url: str
    body: str


class ContactRegister:
    """Consent, masked views, reveal, deletion and owner texts over the ``contacts`` table."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 settings: ContactSettings, vault: PhoneVault, notifier: Notifier,
                 sms_url: str | None,
                 run_on_owner: Callable[[Callable[[], None]], object] | None = None) -> None:
        """``sms_url``: the Apprise template with ``{phone}`` (``[contacts] sms_url`` or
        ``[otp] sms_url``); None: texts are recorded ``skipped``. ``run_on_owner``: when
        given, texts leave from a courier thread; otherwise inline (tests of the core)."""
        self.db = db
        self._clock = clock
        self._audit = audit
        self.settings = settings
        self._vault = vault
        self._notifier = notifier
        self._sms_url = sms_url
        self._owner = run_on_owner
        self._outbox: queue.Queue[_Text | None] = queue.Queue()
        self._courier: threading.Thread | None = None
        if run_on_owner is not None:
            self._courier = threading.Thread(target=self._send_loop, name="contact-courier",
                                             daemon=True)
            self._courier.start()

    @classmethod
    def sms_url_of(cls, settings: ContactSettings, otp_url: object) -> str | None:
        own = reveal(settings.sms_url)
        if own:
            return own
        return otp_url if isinstance(otp_url, str) else None

    def close(self) -> None:
        if self._courier is not None:
            self._outbox.put(None)
            self._courier.join(timeout=10)

    # consent ------------------------------------------------------------------------------

    def consent(self, phone: str, *, plate: str, source: Source, wording_version: str,
                actor: str = "driver") -> str:
        """The driver agreed (an explicit tick or key press) to be reached about ``plate``
        (a plate, or the no-plate identity the kiosk made): stored encrypted with the time
        and the wording's version. Agreeing again renews the time; returns the contact id."""
        if wording_version not in CONSENT_WORDING:
            raise ContactError(f"wording_version: unknown consent wording {wording_version!r}")
        digits = clean_phone(phone)
        plate = plate.strip()
        if not plate or len(plate) > 40:
            raise ContactError("plate: which car the driver agreed to be reached about")
        now = utc_iso(self._clock.now())
        index = self._vault.index(digits)
        with self.db.atomic():
            row = self.db.execute(
                "SELECT id, contact_id FROM contacts WHERE phone_index = ? AND plate = ? "
                "AND state = 'active'", [index, plate]).fetchone()
            if row is not None:
                self.db.table("contacts").update(row[0], {
                    "consent_at": now, "wording_version": wording_version, "source": source})
                contact_id = str(row[1])
            else:
                pk = self.db.table("contacts").insert({
                    "contact_id": "pending", "phone_token": self._vault.seal(digits),
                    "phone_index": index, "phone_masked": mask_phone(digits), "plate": plate,
                    "source": source, "consent_at": now, "wording_version": wording_version,
                    "state": "active"}).last_pk or 0
                contact_id = f"c-{int(str(pk)):06d}"
                self.db.table("contacts").update(pk, {"contact_id": contact_id})
            self._audit.record(
                actor=actor, action="contact.consent", subject=f"contact:{contact_id}",
                reason=f"agreed on the {source.replace('_', ' ')} to wording {wording_version}",
                after={"phone": mask_phone(digits), "plate": plate,
                       "wording_version": wording_version, "consent_at": now})
        return contact_id

    # reading ------------------------------------------------------------------------------

    def contacts(self, *, include_deleted: bool = False) -> list[ContactView]:
        where = "" if include_deleted else "WHERE state = 'active'"
        rows = self.db.query(
            f"SELECT c.*, EXISTS (SELECT 1 FROM sessions s WHERE s.plate = c.plate "  # noqa: S608
            f"AND s.state = 'open') AS inside FROM contacts c {where} ORDER BY c.id DESC")
        return [ContactView(r["contact_id"], r["phone_masked"], r["plate"], r["source"],
                            r["consent_at"], r["wording_version"], r["state"],
                            bool(r["inside"])) for r in rows]

    def reveal(self, contact_id: str, *, actor: str, reason: str) -> str:
        """The whole number, for a supervisor who says why (audited before it is shown)."""
        if len(reason.strip()) < MIN_REASON:
            raise ContactError(f"reason: say why you need the number (at least {MIN_REASON} "
                               "characters)")
        row = self._active(contact_id)
        phone = self._vault.open(row["phone_token"])
        with self.db.atomic():
            self._audit.record(actor=actor, action="contact.reveal",
                               subject=f"contact:{contact_id}", reason=reason.strip(),
                               after={"phone": row["phone_masked"], "plate": row["plate"]})
        log.info("contacts: %s revealed %s", actor, contact_id)
        return phone

    def phones_inside(self) -> list[str]:
        """Numbers of consenting owners whose car is inside now (flood and fire messages)."""
        rows = self.db.query(
            "SELECT phone_token FROM contacts c WHERE state = 'active' AND EXISTS "
            "(SELECT 1 FROM sessions s WHERE s.plate = c.plate AND s.state = 'open')")
        return list(dict.fromkeys(self._vault.open(r["phone_token"]) for r in rows))

    # deletion -----------------------------------------------------------------------------

    def delete(self, contact_id: str, *, actor: str, reason: str) -> None:
        """Delete on request: the ciphertext and the digest go, a tombstone says when, by whom
        and why (audited)."""
        if len(reason.strip()) < MIN_REASON:
            raise ContactError(f"reason: say why (at least {MIN_REASON} characters)")
        row = self._active(contact_id)
        with self.db.atomic():
            self._erase(row, actor=actor, reason=reason.strip())

    def count_phone(self, phone: str) -> int:
        """How many contacts are under this number (the page's confirmation step, before
        :meth:`delete_phone`); says nothing else about them."""
        index = self._vault.index(clean_phone(phone))
        found = self.db.execute("SELECT count(*) FROM contacts WHERE phone_index = ? "
                                "AND state = 'active'", [index]).fetchone()
        return int(found[0]) if found else 0

    def delete_phone(self, phone: str, *, actor: str, reason: str) -> int:
        """A driver asks: every contact under this number goes, each audited with the
        reason (4 characters or more); returns how many."""
        if len(reason.strip()) < MIN_REASON:
            raise ContactError(f"reason: say why (at least {MIN_REASON} characters)")
        index = self._vault.index(clean_phone(phone))
        rows = list(self.db.query(
            "SELECT * FROM contacts WHERE phone_index = ? AND state = 'active'", [index]))
        with self.db.atomic():
            for row in rows:
                self._erase(row, actor=actor, reason=reason.strip())
        return len(rows)

    def purge(self, now: datetime | None = None) -> int:
        """Retention: delete each number whose car has been gone ``retention_days`` (a
        car never seen since the consent counts from the consent). Returns how many."""
        now = now or self._clock.now()
        limit = utc_iso(now - timedelta(days=self.settings.retention_days))
        rows = list(self.db.query(
            "SELECT c.* FROM contacts c WHERE c.state = 'active' "
            "AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.plate = c.plate "
            "AND s.state = 'open') "
            "AND max(c.consent_at, coalesce((SELECT max(s.exit_at) FROM sessions s "
            "WHERE s.plate = c.plate), '')) < ?", [limit]))
        if rows:
            with self.db.atomic():
                for row in rows:
                    self._erase(row, actor="gateway", reason=(
                        f"retention: car gone {self.settings.retention_days} days"))
        return len(rows)

    def _erase(self, row: dict[str, Any], *, actor: str, reason: str) -> None:
        now = utc_iso(self._clock.now())
        self.db.table("contacts").update(row["id"], {
            "phone_token": "", "phone_index": "", "phone_masked": "", "state": "deleted",
            "deleted_at": now, "deleted_by": actor[:64], "delete_reason": reason[:256]})
        self._audit.record(actor=actor, action="contact.delete",
                           subject=f"contact:{row['contact_id']}", reason=reason,
                           before={"phone": row["phone_masked"], "plate": row["plate"]},
                           after={"state": "deleted"})

    # texts --------------------------------------------------------------------------------

    def tell_owner(self, plate: str, concern: str, *, actor: str, note: str = "",
                   incident_id: str | None = None) -> int:
        """A guard's "your car needs attention" to the consenting owners of ``plate`` while
        it is inside; returns how many texts were queued. Audited.

        ``incident_id``: about that incident (an accident's other owner, the only way to
        send an :data:`INCIDENT_CONCERNS` concern): the car need not be inside any more,
        each text is kinded ``incident:<id>`` and the audit entry names the incident. The
        caller checks the plate is on the incident and records the contact there, in one
        transaction around this call (gateway/web/routers/incidents.py)."""
        if concern not in CONCERNS:
            raise ContactError(f"concern: one of {', '.join(CONCERNS)}")
        if concern in INCIDENT_CONCERNS and incident_id is None:
            raise ContactError(f"concern: {concern} is sent from its incident's page")
        if len(note) > 60:
            raise ContactError("note: at most 60 characters")
        plate = plate.strip()
        inside = self.db.execute("SELECT 1 FROM sessions WHERE plate = ? AND state = 'open'",
                                 [plate]).fetchone()
        if inside is None and incident_id is None:
            raise ContactError(f"plate: {plate or '?'} is not inside now")
        rows = list(self.db.query("SELECT * FROM contacts WHERE plate = ? AND state = 'active'",
                                  [plate]))
        if not rows:
            raise ContactError(f"联系不到 nobody agreed to be reached about {plate}: ask at "
                               "the booth")
        body = concern_text(self.settings.signature, concern, plate, note)
        kind = f"concern:{concern}" if incident_id is None else f"incident:{incident_id}"
        with self.db.atomic():
            queued = self.send_texts(rows, kind=kind, body=body, actor=actor)
            about = {} if incident_id is None else {"incident_id": incident_id}
            self._audit.record(actor=actor, action="contact.message", subject=f"plate:{plate}",
                               reason=f"car needs attention: {concern}",
                               after={"contacts": [r["contact_id"] for r in rows],
                                      "note": note, **about})
        return queued

    def tell_inside(self, kind: str, body: str, *, actor: str,
                    entered_by: Callable[[str], bool] | None = None) -> int:
        """One text to every consenting owner whose car is inside (a flood or fire plan);
        with ``entered_by``, only those whose car came in by a lane it accepts (the lane of
        the plate's earliest open session, as capacity counts it). Returns texts queued."""
        rows = list(self.db.query(
            "SELECT c.*, (SELECT s.entry_lane FROM sessions s WHERE s.plate = c.plate AND "
            "s.state = 'open' ORDER BY s.entry_at, s.rowid LIMIT 1) AS entry_lane "
            "FROM contacts c WHERE state = 'active' AND EXISTS (SELECT 1 FROM "
            "sessions s WHERE s.plate = c.plate AND s.state = 'open')"))
        if entered_by is not None:
            rows = [r for r in rows if entered_by(str(r["entry_lane"]))]
        return self.send_texts(rows, kind=kind, body=body, actor=actor)

    def send_texts(self, rows: list[dict[str, Any]], *, kind: str, body: str,
                   actor: str) -> int:
        now = utc_iso(self._clock.now())
        out: list[_Text] = []
        with self.db.atomic():
            for row in rows:
                status = "queued" if self._sms_url else "skipped"
                pk = self.db.table("contact_messages").insert({
                    "contact_id": row["contact_id"], "kind": kind[:40], "actor": actor[:64],
                    "target": row["phone_masked"], "status": status,
                    "error": None if self._sms_url else "no SMS channel configured",
                    "queued_at": now, "done_at": None}).last_pk or 0
                if self._sms_url:
                    phone = self._vault.open(row["phone_token"])
                    out.append(_Text(int(str(pk)), self._sms_url.replace(
                        "{phone}", quote(phone, safe="+")), body))
        for text in out:
            if self._owner is None:
                self._record(text.row_id, self._send(text))
            else:
                self._outbox.put(text)
        return len(out)

    def messages(self) -> list[dict[str, Any]]:
        return list(self.db.query("SELECT * FROM contact_messages ORDER BY id"))

    def _send(self, text: _Text) -> str | None:
        try:
            self._notifier.send(text.url, "", text.body)
        except Exception as failure:  # a refused text is an outcome, never a crash
            log.warning("contacts: the SMS channel refused a text: %s", type(failure).__name__)
            return type(failure).__name__
        return None

    def _send_loop(self) -> None:
        while (text := self._outbox.get()) is not None:
            error = self._send(text)
            try:
                if self._owner is not None:
                    self._owner(partial(self._record, text.row_id, error))
            except Exception:
                log.exception("contacts: outcome of a text not recorded")

    def _record(self, row_id: int, error: str | None) -> None:
        with self.db.atomic():
            self.db.table("contact_messages").update(row_id, {
                "status": "failed" if error else "sent", "error": error,
                "done_at": utc_iso(self._clock.now())})

    def _active(self, contact_id: str) -> dict[str, Any]:
        rows = list(self.db.query(
            "SELECT * FROM contacts WHERE contact_id = ? AND state = 'active'", [contact_id]))
        if not rows:
            raise ContactError(f"no contact {contact_id!r} on the register")
        return rows[0]


__all__ = ["CURRENT_WORDING", "ContactError", "ContactRegister", "ContactView", "clean_phone"]
