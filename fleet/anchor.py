"""Check a site's audit chain against the heads the fleet kept (``audit_heads``).

A site's chain has no secret key, so whoever can write its SQLite file can rewrite every
entry and every hash after it and ``parkguard audit verify`` still says OK. The fleet holds
each (length, hash) the site published; a rewritten chain no longer has that hash at that
length, and a shortened one no longer reaches it. Only hashes are compared: the fleet never
needs the entries themselves.

The site's file is read with ``sqlite3``, read-only, by the table and columns of the audit
recipe in docs/audit.md (``audit_log``: ``seq``, ``hash``): the fleet does not import the
gateway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    length: int
    kind: Literal["rewritten", "truncated"]
    detail: str


def check_anchors(anchors: Sequence[tuple[int, str]], hash_at: Mapping[int, str],
                  chain_length: int) -> list[AnchorProblem]:
    """Every anchor the chain no longer matches, shortest first (pure)."""
    problems = []
    for length, expected in sorted(anchors):
        if length == 0:
            continue  # the empty chain: nothing to compare
        if length > chain_length:
            problems.append(AnchorProblem(length, "truncated",
                                          f"the fleet saw {length} entries, the site has "
                                          f"{chain_length}"))
        elif hash_at.get(length) != expected:
            problems.append(AnchorProblem(length, "rewritten",
                                          f"entry {length}: the fleet kept {expected[:12]}…, "
                                          f"the site has {(hash_at.get(length) or '-')[:12]}…"))
    return problems


def fleet_anchors(conn: psycopg.Connection[tuple[object, ...]], site: str) -> list[tuple[int, str]]:
    rows = conn.execute("SELECT length, head_hash FROM audit_heads WHERE site = %s",
                        (site,)).fetchall()
    return [(int(str(length)), str(head)) for length, head in rows]


def site_chain(db_path: Path, lengths: Sequence[int]) -> tuple[dict[int, str], int]:
    """(hash at each asked length, chain length) from a site's gateway database, read-only."""
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = conn.execute("SELECT max(seq) FROM audit_log").fetchone()
        chain_length = int(found[0] or 0)
        hashes = {}
        for length in lengths:
            row = conn.execute("SELECT hash FROM audit_log WHERE seq = ?", (length,)).fetchone()
            if row is not None:
                hashes[length] = str(row[0])
        return hashes, chain_length
    finally:
        conn.close()


def check_site(conn: psycopg.Connection[tuple[object, ...]], site: str,
               db_path: Path) -> tuple[int, list[AnchorProblem]]:
    """(anchors compared, problems) for ``site``'s chain in ``db_path``."""
    anchors = fleet_anchors(conn, site)
    hashes, chain_length = site_chain(db_path, [length for length, _ in anchors])
    return len(anchors), check_anchors(anchors, hashes, chain_length)
