"""Incidents: accidents, damage and fee disputes, recorded with the evidence to answer them.

A complaint about a fee is answered with what the system saw and charged, not from memory:
when an incident is opened for a session, the desk copies in the camera's plate reads at
the entry and exit lanes around the passages, the exit decision's bill (the itemised quote,
coupons, payments, debts) and the plate matcher's evidence, and the session's payments and
fee overrides. The copy is taken once, at opening, and kept with the incident as JSON, so
what the complainant was shown stays what the file says even after a refund or an override
changes the live rows. ``snapshots`` lists the evidence images of those reads (the plate
crop and the whole view each lane keeps, docs/evidence.md) as ``{lane, event_id, image,
url}``; the dashboard copies them from the lanes into the gateway's kept store when the
incident opens, and the page shows them, or says a lane could not give one.

Every open, note and close is audited (``incident.open``, ``incident.note``,
``incident.close``) in the same transaction as the row it writes. A contact phone is stored
(the car park may need to call back) but shown only masked; :meth:`IncidentDesk.contact_phone`
reveals it and audits who asked.

An ``accident`` calls people at once: the guard on duty (the alert ladder's first step) and
the squad leader, with the plates involved and a link to the incident
(:func:`gateway.safety.accidents.alert_accident`). The plates named at opening are kept in
``evidence["plates"]`` beside the session's. Photos of the scene are
:mod:`gateway.safety.incident_photos`.

``db`` is the gateway worker's connection: the dashboard runs these writes through
``Gateway.call`` so they never interleave with an exit being billed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import sqlite_utils

from gateway.records.audit import AuditLog
from gateway.records.reports import mask_phone
from gateway.safety.accidents import alert_accident, resolve_accident
from parkguard.clock import Clock, utc_iso
from parkguard.core.access import require_plate
from parkguard.errors import ParkGuardError

if TYPE_CHECKING:
    from gateway.safety.alerts import AlertDesk

__all__ = [
    "READ_WINDOW",
    "Incident",
    "IncidentDesk",
    "IncidentError",
    "IncidentKind",
    "IncidentState",
    "Note",
    "UnknownIncidentError",
]

IncidentKind: TypeAlias = Literal["accident", "damage", "fee_dispute", "complaint", "other"]
IncidentState: TypeAlias = Literal["open", "closed"]
KIND_LABELS: dict[str, str] = {"accident": "事故 accident", "damage": "损坏 damage",
                               "fee_dispute": "收费争议 fee dispute",
                               "complaint": "投诉 complaint", "other": "其他 other"}

READ_WINDOW = timedelta(minutes=5)
"""How far before a passage a plate read at its lane still counts as that car's read."""
_MAX_READS = 3


class IncidentError(ParkGuardError, ValueError):
    """An incident action was refused: a bad kind, blank text, an unknown session or
    reference, or a change to a closed incident."""


class UnknownIncidentError(IncidentError, LookupError):
    """No incident has that id."""


@dataclass(frozen=True, slots=True)
class Note:
    """Something a person added to an incident (a call made, a photo taken, a decision)."""

    at: str
    author: str
    text: str


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident as stored. Times are UTC ISO text; the phone is only ever masked here.

    ``evidence`` (see ``docs/incidents.md``) has ``session``, ``entry_reads``,
    ``exit_reads``, ``exit_decision`` (with ``bill`` and ``match``), ``payments``,
    ``fee_overrides``, ``lane_reads``, ``snapshots`` and ``plates`` (the cars involved);
    absent parts are empty or None.
    """

    incident_id: str
    kind: IncidentKind
    state: IncidentState
    lane: str | None
    session_id: str | None
    description: str
    reported_by: str
    contact_phone_masked: str
    opened_at: str
    evidence: dict[str, Any]
    notes: tuple[Note, ...]
    closed_at: str | None
    closed_by: str | None
    outcome: str | None
    refund_id: str | None
    fee_override_id: int | None

    @property
    def kind_label(self) -> str:
        """The kind in Chinese with English beside it."""
        return KIND_LABELS[self.kind]


class IncidentDesk:
    """Opens, annotates and closes incidents, each with its evidence and an audit trail."""

    def __init__(self, db: sqlite_utils.Database, *, clock: Clock, audit: AuditLog,
                 alerts: AlertDesk | None = None) -> None:
        """``alerts``: who an accident calls (none: an accident is only recorded)."""
        self.db = db
        self._clock = clock
        self._audit = audit
        self.alerts = alerts

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def audit(self) -> AuditLog:
        return self._audit

    # --- writing ---------------------------------------------------------------------------

    def open(self, kind: IncidentKind, *, description: str, reported_by: str,
             lane: str | None = None, session_id: str | None = None,
             contact_phone: str | None = None, plates: Sequence[str] = ()) -> Incident:
        """Record an incident and attach the evidence the database holds for it now;
        ``plates``: the cars involved, as the guard names them (an accident alerts with
        them)."""
        if kind not in get_args(IncidentKind):
            raise IncidentError(f"kind must be one of {get_args(IncidentKind)}, got {kind!r}")
        _require_text("description", description)
        _require_text("reported_by", reported_by)
        named = _plates(plates)
        phone = contact_phone.strip() if contact_phone else None
        now = self._clock.now()
        incident_id = f"inc-{uuid.uuid4().hex[:16]}"
        with self.db.atomic():
            evidence = self._evidence(session_id, lane, now)
            session_plate = (evidence["session"] or {}).get("plate")
            evidence["plates"] = list(dict.fromkeys(
                [*named, *([session_plate] if session_plate else [])]))
            self.db.table("incidents").insert({
                "incident_id": incident_id, "kind": kind, "state": "open", "lane": lane,
                "session_id": session_id, "description": description,
                "reported_by": reported_by, "contact_phone": phone, "opened_at": utc_iso(now),
                "evidence": json.dumps(evidence, ensure_ascii=False, sort_keys=True),
            })
            self._audit.record(
                actor=reported_by, action="incident.open", subject=f"incident:{incident_id}",
                reason=description,
                after={"kind": kind, "lane": lane, "session_id": session_id,
                       "contact_phone": mask_phone(phone) or None,
                       "plates": evidence["plates"],
                       "evidence": _evidence_summary(evidence)})
        opened = self.incident(incident_id)
        if kind == "accident" and self.alerts is not None:
            alert_accident(self.alerts, incident_id, description=description,
                           plates=opened.evidence["plates"], lane=lane)
        return opened

    def add_note(self, incident_id: str, text: str, *, author: str) -> Incident:
        """Add a note to an open incident."""
        _require_text("text", text)
        _require_text("author", author)
        with self.db.atomic():
            self._require_open(incident_id)
            now = utc_iso(self._clock.now())
            self.db.table("incident_notes").insert(
                {"incident_id": incident_id, "at": now, "author": author, "text": text})
            self._audit.record(actor=author, action="incident.note",
                               subject=f"incident:{incident_id}", reason=text)
        return self.incident(incident_id)

    def close(self, incident_id: str, *, outcome: str, actor: str,
              refund_id: str | None = None, fee_override_id: int | None = None) -> Incident:
        """Close an incident with what was done, optionally naming the refund
        (``refunds.refund_id``) or fee override (``fee_overrides.id``) that settled it."""
        _require_text("outcome", outcome)
        _require_text("actor", actor)
        with self.db.atomic():
            row = self._require_open(incident_id)
            self._require_reference("refunds", "refund_id", refund_id)
            self._require_reference("fee_overrides", "id", fee_override_id)
            now = utc_iso(self._clock.now())
            self.db.table("incidents").update(incident_id, {
                "state": "closed", "closed_at": now, "closed_by": actor, "outcome": outcome,
                "refund_id": refund_id, "fee_override_id": fee_override_id,
            })
            self._audit.record(actor=actor, action="incident.close",
                               subject=f"incident:{incident_id}", reason=outcome,
                               before={"state": row["state"]},
                               after={"state": "closed", "refund_id": refund_id,
                                      "fee_override_id": fee_override_id})
        if row["kind"] == "accident" and self.alerts is not None:
            resolve_accident(self.alerts, incident_id, actor, outcome)
        return self.incident(incident_id)

    def contact_phone(self, incident_id: str, *, actor: str, reason: str) -> str | None:
        """The unmasked contact phone, for calling the driver back; the look-up is audited."""
        _require_text("actor", actor)
        _require_text("reason", reason)
        row = self._row(incident_id)
        phone = row["contact_phone"]
        if phone:
            self._audit.record(actor=actor, action="incident.contact_reveal",
                               subject=f"incident:{incident_id}", reason=reason)
        return str(phone) if phone else None

    # --- reading ---------------------------------------------------------------------------

    def incident(self, incident_id: str) -> Incident:
        """One incident with its evidence and notes, or :class:`UnknownIncidentError`."""
        return self._incident_from(self._row(incident_id))

    def incidents(self, *, state: IncidentState | None = None,
                  kind: IncidentKind | None = None) -> list[Incident]:
        """Incidents, newest first, optionally only those in ``state`` or of ``kind``."""
        where: list[str] = ["1 = 1"]
        params: list[str] = []
        if state is not None:
            where.append("state = ?")
            params.append(state)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = (f"SELECT * FROM incidents WHERE {' AND '.join(where)} "  # noqa: S608 - fixed
               "ORDER BY opened_at DESC, incident_id")
        return [self._incident_from(row) for row in self.db.query(sql, params)]

    # --- evidence --------------------------------------------------------------------------

    def _evidence(self, session_id: str | None, lane: str | None,
                  now: datetime) -> dict[str, Any]:
        evidence: dict[str, Any] = {
            "session": None, "entry_reads": [], "exit_reads": [], "exit_decision": None,
            "payments": [], "fee_overrides": [], "lane_reads": [], "snapshots": [],
        }
        if session_id is None:
            if lane is not None:  # an accident at a lane just now: what it saw
                evidence["lane_reads"] = self._reads(lane, utc_iso(now))
                evidence["snapshots"] = [ref for read in evidence["lane_reads"]
                                         for ref in read["snapshots"]]
            return evidence
        rows = list(self.db.query("SELECT * FROM sessions WHERE session_id = ?", [session_id]))
        if not rows:
            raise IncidentError(f"no session {session_id!r} to attach to the incident")
        session = rows[0]
        evidence["session"] = {key: session.get(key) for key in (
            "session_id", "plate", "state", "access", "pass_id", "entry_lane", "entry_at",
            "entry_read", "exit_lane", "exit_at", "exit_read", "fee_fen", "tariff", "review")}
        evidence["entry_reads"] = self._reads(session["entry_lane"], session["entry_at"])
        if session.get("exit_lane") and session.get("exit_at"):
            evidence["exit_reads"] = self._reads(session["exit_lane"], session["exit_at"])
        evidence["exit_decision"] = self._exit_decision(session)
        evidence["payments"] = list(self.db.query(
            "SELECT payment_id, purpose, method, amount_fen, refunded_fen, state, paid_at, "
            "failure FROM payments WHERE session_id = ? ORDER BY created_at, payment_id",
            [session_id]))
        evidence["fee_overrides"] = list(self.db.query(
            "SELECT id, quoted_fen, fee_fen, actor, reason, created_at FROM fee_overrides "
            "WHERE session_id = ? ORDER BY id", [session_id]))
        evidence["snapshots"] = [ref for read in (*evidence["entry_reads"],
                                                  *evidence["exit_reads"])
                                 for ref in read["snapshots"]]
        return evidence

    def _reads(self, lane: str, until: str) -> list[dict[str, Any]]:
        """The lane's last few plate reads up to ``until`` (a passage's time), newest first."""
        since = utc_iso(_parse(until) - READ_WINDOW)
        reads = []
        for row in self.db.query(
                "SELECT event_id, ts, payload FROM events WHERE lane = ? AND type = 'plate_read' "
                "AND ts >= ? AND ts <= ? ORDER BY ts DESC, seq DESC LIMIT ?",
                [lane, since, until, _MAX_READS]):
            payload = json.loads(row["payload"])
            reads.append({"event_id": row["event_id"], "ts": row["ts"], "lane": lane,
                          "plate": payload.get("plate"), "confidence": payload.get("confidence"),
                          "char_confidences": payload.get("char_confidences", []),
                          "reader": payload.get("reader"),
                          "snapshots": [
                              {"lane": lane, "event_id": row["event_id"], "image": image,
                               "url": f"/evidence/{row['event_id']}/{image}.jpg"}
                              for image in ("plate", "car")]})
        return reads

    def _exit_decision(self, session: dict[str, Any]) -> dict[str, Any] | None:
        """The decision that let the car out (by the exit passage's correlation id), else the
        session's latest exit decision; for an exit the lane decided alone, the match the
        gateway made when the passage arrived (no quote was shown at the lane)."""
        decision = None
        if session.get("exit_event_id"):
            passed = self.db.execute("SELECT payload FROM events WHERE event_id = ?",
                                     [session["exit_event_id"]]).fetchone()
            correlation = json.loads(passed[0]).get("correlation_id") if passed else None
            found = list(self.db.query("SELECT * FROM decisions WHERE correlation_id = ?",
                                       [correlation]))
            decision = found[0] if found else None
        if decision is None:
            found = list(self.db.query(
                "SELECT * FROM decisions WHERE session_id = ? AND direction = 'exit' "
                "ORDER BY answered_at DESC LIMIT 1", [session["session_id"]]))
            decision = found[0] if found else None
        if decision is None:
            if not session.get("exit_match"):
                return None
            return {"correlation_id": None, "decided_by": "lane", "bill": None,
                    "match": _json(session["exit_match"])}
        return {"correlation_id": decision["correlation_id"], "decided_by": "gateway",
                "lane": decision["lane"], "plate": decision["plate"],
                "action": decision["action"], "reason": decision["reason"],
                "fee_fen": decision["fee_fen"], "answered_at": decision["answered_at"],
                "bill": _json(decision.get("bill")), "match": _json(decision.get("match"))}

    # --- helpers ---------------------------------------------------------------------------

    def _row(self, incident_id: str) -> dict[str, Any]:
        rows = list(self.db.query("SELECT * FROM incidents WHERE incident_id = ?",
                                  [incident_id]))
        if not rows:
            raise UnknownIncidentError(f"no incident {incident_id!r}")
        return rows[0]

    def _require_open(self, incident_id: str) -> dict[str, Any]:
        row = self._row(incident_id)
        if row["state"] != "open":
            raise IncidentError(f"incident {incident_id} is closed: it cannot be changed")
        return row

    def _require_reference(self, table: str, column: str, value: object) -> None:
        if value is None:
            return
        found = self.db.execute(
            f"SELECT 1 FROM [{table}] WHERE [{column}] = ?", [value]).fetchone()  # noqa: S608
        if not found:
            raise IncidentError(f"no {table} row {value!r} to close the incident with")

    def _incident_from(self, row: dict[str, Any]) -> Incident:
        notes = tuple(Note(n["at"], n["author"], n["text"]) for n in self.db.query(
            "SELECT at, author, text FROM incident_notes WHERE incident_id = ? ORDER BY id",
            [row["incident_id"]]))
        return Incident(
            row["incident_id"], row["kind"], row["state"], row["lane"], row["session_id"],
            row["description"], row["reported_by"], mask_phone(row["contact_phone"]),
            row["opened_at"], json.loads(row["evidence"]), notes, row["closed_at"],
            row["closed_by"], row["outcome"], row["refund_id"], row["fee_override_id"])


def _evidence_summary(evidence: dict[str, Any]) -> dict[str, Any]:
    """What the audit entry says was attached (counts, not the evidence itself)."""
    decision = evidence["exit_decision"] or {}
    return {"entry_reads": len(evidence["entry_reads"]),
            "exit_reads": len(evidence["exit_reads"]),
            "lane_reads": len(evidence["lane_reads"]),
            "bill": decision.get("bill") is not None, "match": decision.get("match") is not None,
            "payments": len(evidence["payments"])}


def _plates(plates: Sequence[str]) -> list[str]:
    if isinstance(plates, str):
        raise IncidentError("plates must be a list of plates, not one string")
    if len(plates) > 8:
        raise IncidentError(f"plates: at most 8 cars, got {len(plates)}")
    try:
        return list(dict.fromkeys(require_plate("plates", p) for p in plates if p.strip()))
    except ParkGuardError as error:
        raise IncidentError(str(error)) from error


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise IncidentError(f"{name} must be a non-empty string, got {value!r}")
