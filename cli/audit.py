"""``parkguard audit``: check and read the hash-chained audit log of a gateway database.

Both subcommands open the file read-only, so inspecting evidence never changes it.
Exit codes of ``verify``: 0 the chain is intact, 1 it is not (the first affected entry
is named on stderr) or an incident photo is not the file the chain recorded, 2 the file
could not be read as an audit log at all.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlite_utils import Database

from cli.errors import OneStyleGroup
from gateway.records.audit import AuditEntry, NoAuditLogError, canonical_json, read_entries
from gateway.records.audit import verify as verify_log

_HASH_SHOWN = 12


class _Unreadable(click.ClickException):
    """The database is missing or holds no audit log: a usage problem, not a failed check."""

    exit_code = 2


@contextmanager
def _reading(db_path: Path) -> Iterator[Database]:
    """The audit log opened read-only; unreadable or absent logs become one clear error."""
    db = _open_read_only(db_path)
    try:
        yield db
    except NoAuditLogError as error:
        raise _Unreadable(f"{db_path}: {error}") from error
    except sqlite3.DatabaseError as error:
        raise _Unreadable(f"{db_path}: cannot read the audit log ({error})") from error
    finally:
        db.close()


def _open_read_only(db_path: Path) -> Database:
    """Open an existing SQLite file without creating it or taking a write lock."""
    if not db_path.is_file():
        raise _Unreadable(f"{db_path}: no such database file")
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        # Reading the schema is the first thing that touches the file: a non-database
        # fails here rather than halfway through a report.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as error:
        conn.close()
        raise _Unreadable(f"{db_path}: not a readable SQLite database ({error})") from error
    return Database(conn)


@click.group(name="audit", cls=OneStyleGroup)
def audit() -> None:
    """Check and read the hash-chained audit log (manual opens, overrides, refunds ...)."""


@audit.command(name="verify")
@click.argument("db_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--photos", "photos", type=click.Path(file_okay=False, path_type=Path),
              default=None, metavar="DIR",
              help="Incident photos' directory (default: evidence/photos beside DB_PATH).")
def verify_command(db_path: Path, photos: Path | None) -> None:
    """Check every entry of the audit log in DB_PATH and name the first one tampered with;
    then hash every incident photo the log recorded and name any missing or swapped.

    Copy the head hash it prints somewhere off this machine: a chain rewritten from
    the start, head included, can only be caught by comparing with such a copy.
    """
    from gateway.safety.incident_photos import DirectoryPhotos, check_photos, photo_root

    with _reading(db_path) as db:
        report = verify_log(db)
        bad_photos = check_photos(db, DirectoryPhotos(
            photos or photo_root(None, db_path))) if report.problem is None else []
    if report.problem is not None:
        problem = report.problem
        click.echo(
            f"audit log FAILED at entry {problem.seq} ({problem.kind}): {problem.detail}",
            err=True,
        )
        click.echo(f"{report.checked} entries before it are intact.", err=True)
        # sys.exit, not ctx.exit: click returns (rather than raises) an Exit's code when
        # run with standalone_mode=False, and a failed check must never exit 0.
        sys.exit(1)
    for bad in bad_photos:
        click.echo(f"incident photo FAILED ({bad.kind}): {_one_line(bad.detail)}", err=True)
    if bad_photos:
        click.echo(f"audit log chain intact ({report.checked} entries); "
                   f"{len(bad_photos)} photo(s) are not what it recorded.", err=True)
        sys.exit(1)
    head = report.head_hash or ""
    noun = "entry" if report.checked == 1 else "entries"
    click.echo(f"audit log OK: {report.checked} {noun}, head {head[:_HASH_SHOWN]}…")


def _one_line(text: str) -> str:
    """Escape line breaks and other control characters, so no entry can fake another's lines."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _format_entry(entry: AuditEntry) -> list[str]:
    """One entry as a short block: a heading line, then why and what changed, indented."""
    lines = [
        _one_line(f"#{entry.seq:<5} {entry.ts}  {entry.actor}  {entry.action}  {entry.subject}"),
        f"       reason: {_one_line(entry.reason)}",
    ]
    if entry.before is not None:
        lines.append(f"       before: {canonical_json(entry.before)}")
    if entry.after is not None:
        lines.append(f"       after:  {canonical_json(entry.after)}")
    lines.append(f"       hash {entry.hash[:_HASH_SHOWN]}…  prev {entry.prev_hash[:_HASH_SHOWN]}…")
    return lines


@audit.command(name="show")
@click.argument("db_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--last", "last", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show only the last N entries.")
def show_command(db_path: Path, last: int | None) -> None:
    """Print the audit log in DB_PATH, oldest first, times in UTC. Does not check the chain.

    One block per entry rather than a table: reasons and before/after values are long,
    and a block stays readable in a narrow terminal, a pipe or a printed report.
    """
    with _reading(db_path) as db:
        entries = list(read_entries(db, last=last))
    if not entries:
        click.echo("audit log is empty")
        return
    for entry in entries:
        click.echo("\n".join(_format_entry(entry)))
