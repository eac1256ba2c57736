"""The one migration registry of the gateway's SQLite file.

Every table the gateway keeps belongs to one migration set here, and
:func:`gateway.storage.database.open_database` applies them all, in :data:`REGISTRY` order,
every time the file is opened: once it returns, every table exists, whichever desk or page
touches the file first. The sets keep the names and migration names they always had (the
``_sqlite_migrations`` table records them), so files made by earlier versions upgrade in
place. A new migration is added at the end of its set; a new set at the end of the registry.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from gateway.storage.migrations import (
    alerts,
    audit,
    core,
    duties,
    incidents,
    ledger,
    merchants,
    operations,
    otp,
    passes,
    patrols,
    payments,
    reconcile,
    site_plans,
    users,
)

#: Every migration set, in the order they are applied: the ledger before the merchants and
#: drivers' money that post to it, the rest in the order the gateway has always opened them.
REGISTRY: tuple[Migrations, ...] = (
    core.migrations,       # parkguard.gateway: events, decisions, sessions, dead letters
    audit.migrations,      # audit: the hash-chained audit log
    ledger.migrations,     # parkguard.books: the double-entry ledger
    merchants.migrations,  # parkguard.merchants: merchant accounts and coupons
    passes.migrations,     # parkguard.passes: passes and the white and black lists
    payments.migrations,   # parkguard.payments: payments, refunds, debts, overrides
    incidents.migrations,  # parkguard.incidents: incidents and notes
    reconcile.migrations,  # parkguard.reconcile: offline conflicts
    alerts.migrations,     # parkguard.alerts: alerts and their notifications
    patrols.migrations,    # parkguard.patrols: taps and rounds
    users.migrations,      # parkguard.web: dashboard users
    otp.migrations,        # parkguard.otp: one-time codes for the no-plate kiosk
    operations.migrations,  # parkguard.operations: exit holds, handovers, complaint times
    site_plans.migrations,  # parkguard.site_plans: owner contacts, drills, flood readiness
    duties.migrations,     # parkguard.duties: cleaning ticks, short-roster warnings
)


def migrate(db: sqlite_utils.Database) -> sqlite_utils.Database:
    """Apply every registered set not yet applied to ``db`` (an in-memory database, or a
    connection :func:`~gateway.storage.database.open_database` did not make); return it."""
    for migrations in REGISTRY:
        migrations.apply(db)
    return db
