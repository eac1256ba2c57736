"""What the gateway tells the lanes and the lot-full sign once a batch has committed.

A session opened or closed, a fresh replica snapshot, a help alert: each is noted while the
batch is being stored and told only after its transaction commits, so nobody hears of a car
the database would forget in a rollback. A step that fails is logged: a replica or a sign is
late, never the books.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class AfterCommit:
    """Steps noted during a transaction, run (or dropped) once it ends."""

    def __init__(self) -> None:
        self._steps: list[Callable[[], object]] = []

    def later(self, step: Callable[[], object]) -> None:
        self._steps.append(step)

    def run(self) -> None:
        """The transaction committed: tell everyone, in the order noted."""
        steps, self._steps = self._steps, []
        for step in steps:
            try:
                step()
            except Exception:  # a lane replica or sign is late, never the books
                log.exception("gateway: could not publish a replica or capacity change")

    def drop(self) -> None:
        """The transaction rolled back: nothing it noted happened."""
        self._steps.clear()
