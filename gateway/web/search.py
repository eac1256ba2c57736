"""Finding cars: the cars inside, a plate's history, and fuzzy search over every plate seen."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from parkguard.core.plates import MatchPolicy, OcrRead, PlateError, PlateIndex, match

_COLUMNS = ("session_id, plate, state, entry_lane, entry_at, exit_lane, exit_at, fee_fen, "
            "access, review")


def search_sessions(db: sqlite_utils.Database, *, q: str = "", plate: str = "",
                    policy: MatchPolicy | None = None, limit: int = 200) -> dict[str, Any]:
    """The cars inside (no query), the plates close to ``q`` (fuzzy, as the exit matcher
    reads a dirty plate, plus plates containing ``q``), and ``plate``'s history."""
    result: dict[str, Any] = {"inside": [], "candidates": [], "history": [], "note": None}
    result["inside"] = list(db.query(
        f"SELECT {_COLUMNS} FROM sessions WHERE state = 'open' "  # noqa: S608 - constant
        "ORDER BY entry_at DESC LIMIT ?", [limit]))
    q = q.strip()
    if q:
        result["candidates"], result["note"] = _candidates(db, q, policy or MatchPolicy())
        if not plate and result["candidates"] and result["candidates"][0]["score"] == 0:
            plate = result["candidates"][0]["plate"]
    if plate:
        result["plate"] = plate
        result["history"] = list(db.query(
            f"SELECT {_COLUMNS} FROM sessions WHERE plate = ? "  # noqa: S608 - constant
            "ORDER BY entry_at DESC LIMIT ?", [plate, limit]))
    return result


def _candidates(db: sqlite_utils.Database, q: str,
                policy: MatchPolicy) -> tuple[list[dict[str, Any]], str | None]:
    plates = [row["plate"] for row in db.query(
        "SELECT DISTINCT plate FROM sessions WHERE plate != '' LIMIT 100000")]
    by_key: dict[str, str] = {}
    index = PlateIndex()
    for plate in plates:
        try:
            by_key[index.add(plate)] = plate
        except PlateError:
            continue
    found: dict[str, float] = {}
    note = None
    try:
        verdict = match(OcrRead(q), index, policy)
        for candidate in verdict.candidates:
            found[by_key.get(candidate.plate, candidate.plate)] = candidate.score
    except PlateError as error:
        note = f"not read as a plate ({error}); showing plates that contain it"
    needle = q.upper().replace("·", "").replace(" ", "")
    for plate in plates:
        if needle and needle in plate.upper() and plate not in found:
            found[plate] = 0.0 if plate.upper() == needle else 99.0
    ranked = sorted(found.items(), key=lambda item: (item[1], item[0]))[:20]
    counts = {row["plate"]: (row["n"], row["inside"]) for row in db.query(
        "SELECT plate, count(*) AS n, sum(state = 'open') AS inside FROM sessions "
        "GROUP BY plate")} if ranked else {}
    return [{"plate": plate, "score": score, "visits": counts.get(plate, (0, 0))[0],
             "inside": bool(counts.get(plate, (0, 0))[1])} for plate, score in ranked], note


def session_detail(db: sqlite_utils.Database, session_id: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM sessions WHERE session_id = ?", [session_id]))
    if not rows:
        return None
    session = rows[0]
    decisions = list(db.query(
        "SELECT correlation_id, lane, direction, plate, action, reason, fee_fen, answered_at, "
        "match, bill FROM decisions WHERE session_id = ? ORDER BY answered_at", [session_id]))
    for decision in decisions:
        decision["match"] = json.loads(decision["match"]) if decision.get("match") else None
        decision["bill"] = json.loads(decision["bill"]) if decision.get("bill") else None
    payments = list(db.query(
        "SELECT payment_id, method, amount_fen, refunded_fen, state, paid_at FROM payments "
        "WHERE session_id = ? ORDER BY created_at", [session_id])) \
        if db.table("payments").exists() else []
    overrides = list(db.query(
        "SELECT fee_fen, quoted_fen, actor, reason, created_at FROM fee_overrides "
        "WHERE session_id = ? ORDER BY id", [session_id])) \
        if db.table("fee_overrides").exists() else []
    return {"session": session, "decisions": decisions, "payments": payments,
            "overrides": overrides}
