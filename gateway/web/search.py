"""Finding cars: the cars inside, a plate's history, and fuzzy search over every plate seen."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from gateway.storage import queries
from parkguard.core.plates import MatchPolicy, OcrRead, PlateError, PlateIndex, match


def search_sessions(db: sqlite_utils.Database, *, q: str = "", plate: str = "",
                    policy: MatchPolicy | None = None, limit: int = 200) -> dict[str, Any]:
    """The cars inside (no query), the plates close to ``q`` (fuzzy, as the exit matcher
    reads a dirty plate, plus plates containing ``q``), and ``plate``'s history."""
    result: dict[str, Any] = {"inside": [], "candidates": [], "history": [], "note": None}
    result["inside"] = queries.sessions_inside(db, limit)
    q = q.strip()
    if q:
        result["candidates"], result["note"] = _candidates(db, q, policy or MatchPolicy())
        if not plate and result["candidates"] and result["candidates"][0]["score"] == 0:
            plate = result["candidates"][0]["plate"]
    if plate:
        result["plate"] = plate
        result["history"] = queries.plate_history(db, plate, limit)
    return result


def _candidates(db: sqlite_utils.Database, q: str,
                policy: MatchPolicy) -> tuple[list[dict[str, Any]], str | None]:
    plates = queries.seen_plates(db)
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
    counts = queries.plate_visits(db) if ranked else {}
    return [{"plate": plate, "score": score, "visits": counts.get(plate, (0, 0))[0],
             "inside": bool(counts.get(plate, (0, 0))[1])} for plate, score in ranked], note


def session_detail(db: sqlite_utils.Database, session_id: str) -> dict[str, Any] | None:
    """The session page: the stay, the decisions taken on it, its payments and overrides."""
    session = queries.session_row(db, session_id)
    if session is None:
        return None
    return {"session": session, "decisions": queries.session_decisions(db, session_id),
            "payments": queries.session_payments(db, session_id),
            "overrides": queries.session_overrides(db, session_id)}
