"""What the gateway's worker has done, counted once committed (what the database holds)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Tally:
    dead_letters: int = 0
    duplicates: int = 0
    events_stored: int = 0
    batches: int = 0
    decides_answered: int = 0
    late_decisions_ignored: int = 0  # answers a lane had already decided without
    commit_failures: int = 0
