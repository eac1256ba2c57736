"""The cars inside: which open session each plate (or no-plate identity) belongs to.

Kept in memory by the gateway's worker for fast fuzzy matching at the exit, and rebuilt
from the open sessions in SQLite when the gateway starts, so a restart forgets nobody.
"""

from __future__ import annotations

import logging
from typing import Any

from parkguard.core.plates import (
    MatchPolicy,
    MatchResult,
    NoPlateId,
    OcrRead,
    PlateError,
    PlateIndex,
    match,
    stored_spelling,
)

log = logging.getLogger(__name__)


class CarsInside:
    """Open sessions by plate, with the confusion-aware matcher over them."""

    def __init__(self, policy: MatchPolicy) -> None:
        self.policy = policy
        self._index = PlateIndex()
        self._session_by_key: dict[str, str] = {}
        self._key_by_session: dict[str, str] = {}

    def reload(self, open_sessions: list[dict[str, Any]]) -> None:
        """Forget everything and index these open sessions (at start, or after a rollback
        left memory ahead of the file)."""
        self._index = PlateIndex()
        self._session_by_key.clear()
        self._key_by_session.clear()
        for row in open_sessions:
            self.enter(row["plate"], row["session_id"])

    def __len__(self) -> int:
        return len(self._session_by_key)

    #: The one spelling a plate is stored under (see :func:`stored_spelling`).
    spelling = staticmethod(stored_spelling)

    def enter(self, plate: str, session_id: str) -> bool:
        """A car is inside under ``plate`` (as stored); say whether it can be matched.

        An empty or malformed plate cannot be indexed: the session exists, unmatched.
        """
        if not plate:
            return False
        try:
            key = self._index.add(plate)
        except PlateError as error:
            log.warning("gateway: session %s cannot be matched by plate: %s", session_id, error)
            return False
        self._session_by_key[key] = session_id
        self._key_by_session[session_id] = key
        return True

    def leave(self, session_id: str) -> None:
        key = self._key_by_session.pop(session_id, None)
        if key is not None and self._session_by_key.get(key) == session_id:
            del self._session_by_key[key]
            self._index.discard(key)

    def session_of(self, read: str) -> str | None:
        """The session of a car inside whose plate is exactly this read (after spelling)."""
        try:
            key = PlateIndex.key(self.spelling(read))
        except PlateError:
            return None
        return self._session_by_key.get(key)

    def match(self, read: OcrRead | NoPlateId) -> tuple[MatchResult, str | None]:
        """The matcher's verdict and, when it found a car, that car's session."""
        try:
            result = match(read, self._index, self.policy)
        except PlateError as error:  # e.g. a malformed no-plate identity
            result = MatchResult("none", read.text, read.text, None, None,
                                 f"unreadable identity: {error}", None, ())
        session = self._session_by_key.get(result.plate) if result.plate else None
        return result, session
