"""The site's double-entry ledger tables (set ``parkguard.books``), shared by merchant money
and drivers' money so one trial balance covers the whole car park.

Files made before this set existed got the tables from "parkguard.merchants" ``m001``:
:func:`create_ledger_tables` creates only what is missing, so those open unchanged. The
registry applies this set before the merchants', so on a new file it makes them.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("parkguard.books")


def create_ledger_tables(db: sqlite_utils.Database) -> None:
    """Create ``ledger_entries`` and ``ledger_postings`` (and their indexes) unless present:
    exactly the schema "parkguard.merchants" ``m001`` once created."""
    if not db.table("ledger_entries").exists():
        db.create_table(
            "ledger_entries",
            {"entry_id": str, "ts": str, "memo": str, "merchant_id": str, "kind": str},
            pk="entry_id", not_null={"ts", "memo", "kind"}, strict=True,
        )
    db.table("ledger_entries").create_index(["merchant_id", "ts"], if_not_exists=True)
    if not db.table("ledger_postings").exists():
        db.create_table(
            "ledger_postings",
            {"id": int, "entry_id": str, "account": str, "debit_fen": int, "credit_fen": int},
            pk="id", not_null={"entry_id", "account", "debit_fen", "credit_fen"},
            foreign_keys=[("entry_id", "ledger_entries", "entry_id")], strict=True,
        )
    db.table("ledger_postings").create_index(["account"], if_not_exists=True)
    db.table("ledger_postings").create_index(["entry_id"], if_not_exists=True)


@migrations()
def m001_ledger_tables(db: sqlite_utils.Database) -> None:
    """The ledger tables, if "parkguard.merchants" has not created them already."""
    create_ledger_tables(db)


@migrations()
def m002_ledger_entries_by_kind(db: sqlite_utils.Database) -> None:
    """Revenue reports pick entries by kind and time (payments, debts, refunds)."""
    db.table("ledger_entries").create_index(["kind", "ts"], if_not_exists=True)
