"""Read models: the questions the dashboard asks of the gateway's SQLite file, one named
function each.

Every function takes a connection (the web reads through ``GatewayStore.reader()``, a
read-only connection of the request's own) and writes nothing, so a page can never
interleave with an exit being billed. Writes go through the desks on the gateway's worker.
Rows are returned as typed dicts: the templates and the JSON API show them as they come.
Every table they read exists once the file is open (``gateway.storage.database`` applies
every migration set at open), so none of them asks whether a table is there yet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias, TypedDict, cast

import sqlite_utils

from gateway.records.audit import AuditEntry, read_entries

Row: TypeAlias = dict[str, Any]
"""A whole row (``SELECT *``), for screens that show whatever the table holds."""


# --- lanes ------------------------------------------------------------------------------------


class LaneRead(TypedDict):
    event_id: str
    ts: str
    plate: str | None
    confidence: float | None


@dataclass(frozen=True, slots=True)
class PlateRead:
    """One plate read event: when, and what the camera read (None: nothing legible)."""

    ts: str
    plate: str | None


def lane_reads(db: sqlite_utils.Database, lane: str, limit: int = 5) -> list[LaneRead]:
    """The lane card (lanes page, ``/api/lanes``): the lane's latest plate reads, newest
    first."""
    reads: list[LaneRead] = []
    for row in db.query(
            "SELECT event_id, ts, payload FROM events WHERE lane = ? AND type = 'plate_read' "
            "ORDER BY ts DESC, seq DESC LIMIT ?", [lane, limit]):
        payload = json.loads(row["payload"])
        reads.append({"event_id": row["event_id"], "ts": row["ts"],
                      "plate": payload.get("plate"), "confidence": payload.get("confidence")})
    return reads


def known_lanes(db: sqlite_utils.Database) -> list[str]:
    """The lanes page: every lane that ever reported an event (beside those on the bus)."""
    return [row["lane"] for row in db.query("SELECT DISTINCT lane FROM events ORDER BY lane")]


def plate_read(db: sqlite_utils.Database, event_id: str) -> PlateRead | None:
    """The lane card's snapshot picture of one read."""
    rows = list(db.query("SELECT ts, payload FROM events WHERE event_id = ? "
                         "AND type = 'plate_read'", [event_id]))
    if not rows:
        return None
    return PlateRead(rows[0]["ts"], json.loads(rows[0]["payload"]).get("plate"))


# --- sessions ---------------------------------------------------------------------------------


class SessionRow(TypedDict):
    session_id: str
    plate: str
    state: str
    entry_lane: str
    entry_at: str
    exit_lane: str | None
    exit_at: str | None
    fee_fen: int
    access: str | None
    review: str | None


_SESSION_COLUMNS = ("session_id, plate, state, entry_lane, entry_at, exit_lane, exit_at, "
                    "fee_fen, access, review")


def sessions_inside(db: sqlite_utils.Database, limit: int = 200) -> list[SessionRow]:
    """The sessions page with no query: the cars inside, latest entry first."""
    return cast(list[SessionRow], list(db.query(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE state = 'open' "  # noqa: S608 - constant
        "ORDER BY entry_at DESC LIMIT ?", [limit])))


def plate_history(db: sqlite_utils.Database, plate: str, limit: int = 200) -> list[SessionRow]:
    """The sessions page for one plate: its visits, latest first."""
    return cast(list[SessionRow], list(db.query(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE plate = ? "  # noqa: S608 - constant
        "ORDER BY entry_at DESC LIMIT ?", [plate, limit])))


def seen_plates(db: sqlite_utils.Database) -> list[str]:
    """The sessions search: every plate ever seen, to match a dirty query against."""
    return [row["plate"] for row in db.query(
        "SELECT DISTINCT plate FROM sessions WHERE plate != '' LIMIT 100000")]


def plate_visits(db: sqlite_utils.Database) -> dict[str, tuple[int, int]]:
    """The sessions search's candidates: per plate, its visits and how many are inside."""
    return {row["plate"]: (row["n"], row["inside"]) for row in db.query(
        "SELECT plate, count(*) AS n, sum(state = 'open') AS inside FROM sessions "
        "GROUP BY plate")}


def session_row(db: sqlite_utils.Database, session_id: str) -> Row | None:
    """The session page: the whole session."""
    rows = list(db.query("SELECT * FROM sessions WHERE session_id = ?", [session_id]))
    return rows[0] if rows else None


class DecisionRow(TypedDict):
    correlation_id: str
    lane: str
    direction: str
    plate: str | None
    action: str
    reason: str
    fee_fen: int
    answered_at: str
    match: Any
    bill: Any


def session_decisions(db: sqlite_utils.Database, session_id: str) -> list[DecisionRow]:
    """The session page: what the gateway answered each lane about this stay, with the
    match evidence and the bill it showed (parsed from their JSON)."""
    decisions = cast(list[DecisionRow], list(db.query(
        "SELECT correlation_id, lane, direction, plate, action, reason, fee_fen, answered_at, "
        "match, bill FROM decisions WHERE session_id = ? ORDER BY answered_at", [session_id])))
    for decision in decisions:
        decision["match"] = json.loads(decision["match"]) if decision.get("match") else None
        decision["bill"] = json.loads(decision["bill"]) if decision.get("bill") else None
    return decisions


class SessionPayment(TypedDict):
    payment_id: str
    method: str
    amount_fen: int
    refunded_fen: int
    state: str
    paid_at: str | None


def session_payments(db: sqlite_utils.Database, session_id: str) -> list[SessionPayment]:
    """The session page: the stay's payments, oldest first."""
    return cast(list[SessionPayment], list(db.query(
        "SELECT payment_id, method, amount_fen, refunded_fen, state, paid_at FROM payments "
        "WHERE session_id = ? ORDER BY created_at", [session_id])))


class FeeOverride(TypedDict):
    fee_fen: int
    quoted_fen: int
    actor: str
    reason: str
    created_at: str


def session_overrides(db: sqlite_utils.Database, session_id: str) -> list[FeeOverride]:
    """The session page: fees a supervisor set by hand for this stay, oldest first."""
    return cast(list[FeeOverride], list(db.query(
        "SELECT fee_fen, quoted_fen, actor, reason, created_at FROM fee_overrides "
        "WHERE session_id = ? ORDER BY id", [session_id])))


# --- money ------------------------------------------------------------------------------------


class PaymentOrder(TypedDict):
    plate: str
    amount_fen: int
    state: str


def payment_order(db: sqlite_utils.Database, provider_ref: str) -> PaymentOrder | None:
    """The simulated wallet page: the order a driver is about to pay."""
    rows = list(db.query("SELECT plate, amount_fen, state FROM payments "
                         "WHERE provider_ref = ?", [provider_ref]))
    return cast(PaymentOrder, rows[0]) if rows else None


class RefundablePayment(TypedDict):
    payment_id: str
    session_id: str | None
    plate: str
    method: str
    amount_fen: int
    refunded_fen: int
    state: str
    paid_at: str | None


def refundable_payments(db: sqlite_utils.Database, limit: int = 100) -> list[RefundablePayment]:
    """The refunds page: the latest payments that took money (paid or partly refunded)."""
    return cast(list[RefundablePayment], list(db.query(
        "SELECT payment_id, session_id, plate, method, amount_fen, refunded_fen, state, "
        "paid_at FROM payments WHERE state IN ('paid', 'partly_refunded', 'refunded') "
        "ORDER BY paid_at DESC LIMIT ?", [limit])))


def merchants(db: sqlite_utils.Database) -> list[Row]:
    """The merchants page: every merchant account, by id."""
    return list(db.query("SELECT * FROM merchants ORDER BY merchant_id"))


class CouponRow(TypedDict):
    coupon_id: str
    plate: str
    kind: str
    rule: str | None
    minutes: int | None
    fen: int | None
    cap_fen: int | None
    issued_at: str
    expires_at: str
    state: str
    applied_fen: int | None
    charged_fen: int | None


def merchant_coupons(db: sqlite_utils.Database, merchant_id: str,
                     limit: int = 50) -> list[CouponRow]:
    """The merchant's own page and ``/api/merchant``: its latest coupons."""
    return cast(list[CouponRow], list(db.query(
        "SELECT coupon_id, plate, kind, rule, minutes, fen, cap_fen, issued_at, expires_at, "
        "state, applied_fen, charged_fen FROM merchant_coupons WHERE merchant_id = ? "
        "ORDER BY issued_at DESC LIMIT ?", [merchant_id, limit])))


def passes(db: sqlite_utils.Database, limit: int = 200) -> list[Row]:
    """The passes page: the latest passes issued, each with its plates (space-separated)."""
    return list(db.query(
        "SELECT p.*, group_concat(pp.plate, ' ') AS plates FROM passes p "
        "LEFT JOIN pass_plates pp USING (pass_id) GROUP BY p.pass_id "
        "ORDER BY p.issued_at_ms DESC LIMIT ?", [limit]))


def access_lists(db: sqlite_utils.Database) -> list[Row]:
    """The passes page: the white and black lists, plate by plate."""
    return list(db.query("SELECT * FROM access_lists ORDER BY list_name, plate"))


# --- safety and records -----------------------------------------------------------------------


def active_alerts(db: sqlite_utils.Database) -> list[Row]:
    """The alert banner and the alerts page: alerts not resolved yet, most severe first,
    then oldest first."""
    return list(db.query(
        "SELECT * FROM alerts WHERE state <> 'resolved' ORDER BY CASE severity "
        "WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, id"))


def resolved_alerts(db: sqlite_utils.Database, limit: int) -> list[Row]:
    """The alerts page: the latest resolved alerts, newest first."""
    return list(db.query("SELECT * FROM alerts WHERE state = 'resolved' "
                         "ORDER BY id DESC LIMIT ?", [limit]))


def alert(db: sqlite_utils.Database, alert_id: str) -> Row | None:
    """The signed acknowledge link's page: the alert it is for."""
    rows = list(db.query("SELECT * FROM alerts WHERE alert_id = ?", [alert_id]))
    return rows[0] if rows else None


def ack_token_used(db: sqlite_utils.Database, digest: str) -> bool:
    """The signed acknowledge link's page: whether this link has acknowledged already."""
    return db.execute("SELECT 1 FROM alert_ack_tokens WHERE digest = ?",
                      [digest]).fetchone() is not None


def audit_entries(db: sqlite_utils.Database, last: int) -> list[AuditEntry]:
    """The audit page and ``/api/audit``: the latest ``last`` entries, oldest first."""
    return list(read_entries(db, last=last))
