"""The fleet service's writer: a process of its own that reads and writes each batch.

Why a process: the service's event loop spends most of its time in nats-py's fetch (a task per
message, the same cost its bare consumer pays) and, before this, as long again reading the
batch (the contract's pydantic check, building the rows) and dumping it for PostgreSQL, all
under one GIL. The fetch of the next batch waited for that reading (docs/fleet.md, "Scale",
third round). Here the loop only fetches and acknowledges; this process reads the raw
messages with the same ``fleet.store.prepare`` and commits them with the same
``write_prepared``, one batch at a time, and answers with the counts. The service
acknowledges a batch only after this answer, so a commit still comes before every ack.

Only plain values cross the pipe: the messages as ``(subject, payload, stream sequence)`` and
the counts back. A database that is away is :class:`DatabaseUnavailable` (psycopg's own errors
carry a connection and are not sent across); any other database error is :class:`WriteFailed`,
which stops the service as it did when the write ran in a thread.
"""

from __future__ import annotations

import os
import threading
import time

import psycopg

from fleet.rows import Delivered
from fleet.store import prepare, write_prepared

#: A message as the service sends it: subject (the site's), payload, stream sequence.
Raw = tuple[str, bytes, int]
#: How often the writer checks that the service that started it is still there.
_PARENT_CHECK_S = 0.5

_conn: psycopg.Connection[tuple[object, ...]] | None = None


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached or went away mid-batch: nothing of the batch is kept."""


class WriteFailed(Exception):
    """PostgreSQL refused the batch for another reason (its message, as text)."""


def start(parent: int) -> None:
    """Process initializer: leave when the service does. A SIGKILLed service cannot stop its
    pool, and the pool's pipes stay open in the worker itself, so it would never notice."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def connect(dsn: str) -> None:
    """Open the connection now (the service does it before it starts consuming)."""
    _connection(dsn)


def write(dsn: str, messages: list[Raw]) -> tuple[int, int, int]:
    """Read and write one batch in one transaction: (new, repeated, dead letters)."""
    batch = prepare([Delivered(subject, payload, seq) for subject, payload, seq in messages])
    conn = _connection(dsn)
    try:
        result = write_prepared(conn, batch)
    except psycopg.OperationalError as error:
        _drop()
        raise DatabaseUnavailable(str(error)) from None
    except psycopg.Error as error:
        _drop()
        raise WriteFailed(f"{type(error).__name__}: {error}") from None
    return result.new, result.repeated, result.dead


def _connection(dsn: str) -> psycopg.Connection[tuple[object, ...]]:
    global _conn  # one connection per writer process, kept between batches
    if _conn is None or _conn.closed:
        try:
            _conn = psycopg.connect(dsn)
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(str(error)) from None
    return _conn


def _drop() -> None:
    global _conn
    if _conn is not None:
        _conn.close()
    _conn = None
