"""The audit chain: an intact log verifies; any edit, deletion, reorder or truncation is named."""

from __future__ import annotations

import doctest
import hashlib
import json
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import gateway.records.audit
from gateway.records.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    AuditReport,
    IncompleteEntryError,
    NoAuditLogError,
    UnserialisableValueError,
    verify,
)
from gateway.storage.database import open_database
from parkguard.clock import ManualClock
from parkguard.errors import AuditError

START = datetime(2026, 5, 1, 9, 30, tzinfo=UTC)
ROWS = 5
FIELDS = ("ts", "actor", "action", "subject", "reason", "before", "after", "prev_hash", "hash")
TRIGGERS = ("audit_log_no_update", "audit_log_no_delete", "audit_head_no_delete",
            "audit_head_no_shrink")


def _open_log(path: Path, clock: ManualClock | None = None) -> AuditLog:
    return AuditLog(open_database(path), clock=clock or ManualClock(START))


def _write_log(path: Path, count: int = ROWS) -> list[AuditEntry]:
    """A small realistic log: a manager waiving fees at lane A1, a minute apart."""
    clock = ManualClock(START)
    log = _open_log(path, clock)
    entries = []
    for n in range(1, count + 1):
        clock.advance(timedelta(minutes=1))
        entries.append(log.record(
            actor=f"manager:{n:03d}",
            action="fee.override",
            subject=f"session:{8800 + n}",
            reason=f"道闸故障 barrier fault #{n}",
            before={"fee_fen": 1500 + n},
            after={"fee_fen": 0},
        ))
    log.db.close()
    return entries


def _tamper(path: Path, *statements: str | tuple[str, list[object]]) -> None:
    """Edit the file the way someone with the sqlite3 shell would: triggers first."""
    conn = sqlite3.connect(path)
    try:
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for statement in statements:
            if isinstance(statement, str):
                conn.execute(statement)
            else:
                conn.execute(*statement)
        conn.commit()
    finally:
        conn.close()


def _verify(path: Path) -> AuditReport:
    db = sqlite_utils.Database(path)
    try:
        return verify(db)
    finally:
        db.close()


def _problem(path: Path) -> tuple[int, str]:
    report = _verify(path)
    assert not report.ok
    assert report.problem is not None
    assert report.head_hash is None
    return report.problem.seq, report.problem.kind


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    _write_log(path)
    return path


# --- writing ---------------------------------------------------------------------------------


def test_untouched_log_verifies_and_reports_its_head_hash(db_path: Path) -> None:
    last = list(_open_log(db_path).entries())[-1]
    assert _verify(db_path) == AuditReport(ok=True, checked=ROWS, problem=None,
                                           head_hash=last.hash)


def test_an_empty_log_verifies_with_the_genesis_hash(tmp_path: Path) -> None:
    log = _open_log(tmp_path / "gateway.db")
    assert log.verify() == AuditReport(ok=True, checked=0, problem=None, head_hash=GENESIS_HASH)


def test_entries_are_numbered_from_one_and_each_chains_to_the_one_before(db_path: Path) -> None:
    entries = list(_open_log(db_path).entries())
    assert [e.seq for e in entries] == list(range(1, ROWS + 1))
    assert entries[0].prev_hash == GENESIS_HASH
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert entries[0].ts == "2026-05-01T09:31:00.000Z"


def test_record_returns_exactly_what_entries_reads_back(tmp_path: Path) -> None:
    log = _open_log(tmp_path / "gateway.db")
    written = log.record(actor="guard:7", action="coupon.issue", subject="merchant:星巴克",
                         reason="顾客消费满88元", before=None,
                         after={"minutes": 120, "codes": ("A", "B"), "note": "满88免2小时"})
    assert written.after == {"minutes": 120, "codes": ["A", "B"], "note": "满88免2小时"}
    assert list(log.entries()) == [written]


def test_before_and_after_are_stored_as_canonical_json(db_path: Path, tmp_path: Path) -> None:
    log = _open_log(tmp_path / "other.db")
    log.record(actor="a", action="tariff.change", subject="tariff:day", reason="new year",
               before={"b": 1, "a": [1, 2]}, after={"名": "日间"})
    stored = log.db.execute("SELECT before, after FROM audit_log").fetchone()
    assert stored == ('{"a":[1,2],"b":1}', '{"名":"日间"}')


def test_hash_follows_the_recipe_in_the_module_docstring(db_path: Path) -> None:
    """An outside tool re-checking the log needs only hashlib and json: pin the recipe."""
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row
    for row in conn.execute("SELECT * FROM audit_log ORDER BY seq"):
        fields = {key: row[key] for key in row.keys() if key != "hash"}
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == row["hash"]
    conn.close()


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_an_empty_reason_is_refused_and_nothing_is_written(tmp_path: Path, reason: str) -> None:
    log = _open_log(tmp_path / "gateway.db")
    with pytest.raises(IncompleteEntryError, match="reason must be a non-empty string"):
        log.record(actor="guard:7", action="lane.manual_open", subject="lane:A1", reason=reason)
    assert list(log.entries()) == []
    assert log.verify().ok


@pytest.mark.parametrize("field", ["actor", "action", "subject"])
def test_a_blank_actor_action_or_subject_is_refused(tmp_path: Path, field: str) -> None:
    log = _open_log(tmp_path / "gateway.db")
    values = {"actor": "guard:7", "action": "lane.manual_open", "subject": "lane:A1", field: ""}
    with pytest.raises(IncompleteEntryError, match=field):
        log.record(reason="help button", **values)


def test_incomplete_entry_error_is_both_an_audit_error_and_a_value_error() -> None:
    assert issubclass(IncompleteEntryError, AuditError)
    assert issubclass(IncompleteEntryError, ValueError)


@pytest.mark.parametrize("value", [object(), {"fee": float("nan")}, {1: {2, 3}}])
def test_a_value_that_is_not_json_is_refused(tmp_path: Path, value: object) -> None:
    log = _open_log(tmp_path / "gateway.db")
    with pytest.raises(UnserialisableValueError, match="before value"):
        log.record(actor="a", action="b", subject="c", reason="d", before=value)
    assert list(log.entries()) == []


def test_an_entry_recorded_in_a_rolled_back_transaction_leaves_no_trace(db_path: Path) -> None:
    log = _open_log(db_path)
    with pytest.raises(RuntimeError, match="refund failed"), log.db.atomic():
        log.record(actor="cashier:2", action="refund", subject="payment:77", reason="double pay")
        raise RuntimeError("refund failed")
    assert len(list(log.entries())) == ROWS
    assert log.verify().ok
    assert log.record(actor="a", action="b", subject="c", reason="d").seq == ROWS + 1


def test_reopening_the_database_continues_the_same_chain(db_path: Path) -> None:
    log = _open_log(db_path)
    entry = log.record(actor="a", action="b", subject="c", reason="d")
    assert entry.seq == ROWS + 1
    assert log.verify() == AuditReport(ok=True, checked=ROWS + 1, problem=None,
                                       head_hash=entry.hash)
    applied = [m.name for m in gateway.records.audit.migrations.applied(log.db)]
    assert applied == ["m001_create_audit_log"]


def test_the_last_few_entries_can_be_read_alone(db_path: Path) -> None:
    assert [e.seq for e in _open_log(db_path).entries(last=2)] == [ROWS - 1, ROWS]


def test_application_code_cannot_update_or_delete_entries(db_path: Path) -> None:
    db = sqlite_utils.Database(db_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit_log SET reason = 'oops' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_log WHERE seq = 5")
    with pytest.raises(sqlite3.IntegrityError, match="cannot go down"):
        db.execute("UPDATE audit_head SET count = 0")
    db.close()
    assert _verify(db_path).ok


def _append_from_another_process(path: str, writer: int) -> None:
    log = AuditLog(open_database(Path(path)), clock=ManualClock(START))
    for n in range(15):
        log.record(actor=f"writer:{writer}", action="test", subject=str(n), reason="load")
    log.db.close()


def test_appends_from_several_processes_keep_one_unbroken_chain(db_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_from_another_process, args=(str(db_path), n))
               for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert _verify(db_path).checked == ROWS + 45
    assert _verify(db_path).ok


# --- what verify catches ---------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seq", [1, 3, ROWS])
def test_editing_any_field_of_any_row_fails_naming_that_row(
    db_path: Path, seq: int, field: str
) -> None:
    new = '{"fee_fen":1}' if field in ("before", "after") else "x"
    _tamper(db_path, f"UPDATE audit_log SET {field} = '{new}' WHERE seq = {seq}")  # noqa: S608
    assert _problem(db_path) == (seq, "tampered")
    assert _verify(db_path).checked == seq - 1


@pytest.mark.parametrize("field", ["before", "after"])
def test_clearing_a_before_or_after_value_fails_naming_that_row(db_path: Path, field: str) -> None:
    _tamper(db_path, f"UPDATE audit_log SET {field} = NULL WHERE seq = 2")  # noqa: S608
    assert _problem(db_path) == (2, "tampered")


def test_a_cosmetic_edit_of_the_stored_json_is_still_an_edit(db_path: Path) -> None:
    _tamper(db_path, """UPDATE audit_log SET before = '{"fee_fen": 1502}' WHERE seq = 2""")
    assert _problem(db_path) == (2, "tampered")


def test_deleting_a_middle_row_fails_naming_it_missing(db_path: Path) -> None:
    _tamper(db_path, "DELETE FROM audit_log WHERE seq = 2")
    assert _problem(db_path) == (2, "missing")
    assert "entry 2 is missing" in str(_verify(db_path).problem)


def test_deleting_a_row_and_renumbering_the_rest_to_close_the_gap_fails_naming_it_missing(
    db_path: Path,
) -> None:
    _tamper(db_path, "DELETE FROM audit_log WHERE seq = 2",
            "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    assert _problem(db_path) == (2, "missing")


def test_deleting_the_last_row_fails_as_truncated(db_path: Path) -> None:
    _tamper(db_path, ("DELETE FROM audit_log WHERE seq = ?", [ROWS]))
    assert _problem(db_path) == (ROWS, "truncated")


def test_deleting_every_row_fails_as_truncated(db_path: Path) -> None:
    _tamper(db_path, "DELETE FROM audit_log")
    assert _problem(db_path) == (1, "truncated")


def test_deleting_the_head_record_fails_as_truncated(db_path: Path) -> None:
    _tamper(db_path, "DELETE FROM audit_head")
    assert _problem(db_path) == (ROWS + 1, "truncated")


def test_hiding_a_truncation_by_winding_back_the_head_count_alone_fails(db_path: Path) -> None:
    _tamper(db_path, ("DELETE FROM audit_log WHERE seq = ?", [ROWS]),
            ("UPDATE audit_head SET count = ?", [ROWS - 1]))
    assert _problem(db_path) == (ROWS - 1, "tampered")


def test_appending_after_a_truncation_does_not_hide_it(db_path: Path) -> None:
    _tamper(db_path, ("DELETE FROM audit_log WHERE seq = ?", [ROWS]))
    _open_log(db_path).record(actor="a", action="b", subject="c", reason="d")
    assert _problem(db_path) == (ROWS, "missing")


def test_swapping_two_rows_contents_fails_naming_the_first_as_reordered(db_path: Path) -> None:
    columns = ", ".join(FIELDS)
    _tamper(
        db_path,
        "CREATE TEMP TABLE keep AS SELECT * FROM audit_log WHERE seq IN (3, 4)",
        f"UPDATE audit_log SET ({columns}) = (SELECT {columns} FROM keep "  # noqa: S608
        "WHERE keep.seq = 7 - audit_log.seq) WHERE seq IN (3, 4)",
    )
    assert _problem(db_path) == (3, "reordered")
    assert "written as entry 3 is now stored as entry 4" in str(_verify(db_path).problem)


@pytest.mark.parametrize(
    ("statements", "first"),
    [
        pytest.param(["UPDATE audit_log SET seq = -3 WHERE seq = 3",
                      "UPDATE audit_log SET seq = 3 WHERE seq = 4",
                      "UPDATE audit_log SET seq = 4 WHERE seq = -3"], 3, id="swap-3-and-4"),
        pytest.param(["UPDATE audit_log SET seq = 0 WHERE seq = 2"], 2, id="2-to-0"),
        pytest.param(["UPDATE audit_log SET seq = 99 WHERE seq = 2"], 2, id="2-to-99"),
        pytest.param(["UPDATE audit_log SET seq = 99 WHERE seq = 5"], 5, id="last-to-99"),
        pytest.param(["UPDATE audit_log SET seq = seq + 10"], 1, id="shift-all"),
    ],
)
def test_renumbering_seq_fails_naming_the_first_affected_row_as_reordered(
    db_path: Path, statements: list[str], first: int
) -> None:
    _tamper(db_path, *statements)
    assert _problem(db_path) == (first, "reordered")


def test_a_row_copied_over_another_fails_naming_the_overwritten_row(db_path: Path) -> None:
    columns = ", ".join(FIELDS)
    _tamper(db_path, f"UPDATE audit_log SET ({columns}) = (SELECT {columns} FROM audit_log "  # noqa: S608
                     "WHERE seq = 1) WHERE seq = 4")
    assert _problem(db_path) == (4, "tampered")


def test_a_row_inserted_before_the_start_fails_naming_it(db_path: Path) -> None:
    _tamper(db_path, "INSERT INTO audit_log SELECT 0, ts, actor, action, subject, reason, "
                     "before, after, prev_hash, hash FROM audit_log WHERE seq = 1")
    assert _problem(db_path) == (0, "tampered")


def test_a_row_appended_behind_the_heads_back_fails_naming_it(db_path: Path) -> None:
    _tamper(db_path, f"INSERT INTO audit_log SELECT {ROWS + 1}, ts, actor, action, subject, "  # noqa: S608
                     f"reason, before, after, prev_hash, hash FROM audit_log WHERE seq = {ROWS}")
    assert _problem(db_path) == (ROWS + 1, "tampered")


def test_a_dropped_log_table_fails_as_missing(db_path: Path) -> None:
    _tamper(db_path, "DROP TABLE audit_log")
    assert _problem(db_path) == (1, "missing")


def test_a_database_that_never_had_an_audit_log_raises(tmp_path: Path) -> None:
    db = sqlite_utils.Database(tmp_path / "other.db")
    db.table("sessions").insert({"id": 1})
    with pytest.raises(NoAuditLogError, match="no audit_log table"):
        verify(db)


# --- someone who knows the recipe ------------------------------------------------------------


def _recipe_hash(row: dict[str, object]) -> str:
    fields = {key: value for key, value in row.items() if key != "hash"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _rewrite(path: Path, seq: int, *, rehash_rest: bool, update_head: bool) -> None:
    """Change one reason and recompute that row's hash, as a forger who knows the recipe."""
    _tamper(path)
    db = sqlite_utils.Database(path)
    rows = list(db.query("SELECT * FROM audit_log ORDER BY seq"))
    rows[seq - 1]["reason"] = "nothing happened here"
    for index in range(seq - 1, len(rows) if rehash_rest else seq):
        if index > 0:
            rows[index]["prev_hash"] = rows[index - 1]["hash"]
        rows[index]["hash"] = _recipe_hash(rows[index])
        db.table("audit_log").update(rows[index]["seq"], rows[index])
    if update_head:
        db.execute("UPDATE audit_head SET last_hash = ?", [rows[-1]["hash"]])
    db.close()


def test_a_row_rewritten_with_a_fresh_hash_is_caught_by_the_next_link(db_path: Path) -> None:
    _rewrite(db_path, 2, rehash_rest=False, update_head=False)
    assert _problem(db_path) == (2, "tampered")


def test_the_last_row_rewritten_with_a_fresh_hash_is_caught_by_the_head(db_path: Path) -> None:
    _rewrite(db_path, ROWS, rehash_rest=False, update_head=False)
    assert _problem(db_path) == (ROWS, "tampered")


def test_a_chain_rewritten_to_its_end_with_the_head_passes_so_keep_the_head_hash_elsewhere(
    db_path: Path,
) -> None:
    """The documented limit: without a key or an outside anchor, a full rewrite is invisible.

    The head hash printed by ``verify`` changes, which is what an off-site copy detects.
    """
    before = _verify(db_path).head_hash
    _rewrite(db_path, 2, rehash_rest=True, update_head=True)
    after = _verify(db_path)
    assert after.ok
    assert after.head_hash != before


# --- property --------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
_entry = st.fixed_dictionaries({
    "actor": st.text(min_size=1, max_size=12).filter(str.strip),
    "action": st.sampled_from(["lane.manual_open", "fee.override", "refund", "coupon.issue",
                               "tariff.change"]),
    "subject": st.text(min_size=1, max_size=12).filter(str.strip),
    "reason": st.text(min_size=1, max_size=20).filter(str.strip),
    "before": _json,
    "after": _json,
})
_new_value = {
    "seq": st.integers(min_value=-3, max_value=40),
    "ts": st.text(max_size=30),
    "actor": st.text(max_size=12),
    "action": st.text(max_size=12),
    "subject": st.text(max_size=12),
    "reason": st.text(max_size=20),
    "before": st.none() | _json.map(json.dumps),
    "after": st.none() | _json.map(json.dumps),
    "prev_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    "hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(_entry, min_size=1, max_size=6),
    data=st.data(),
    column=st.sampled_from(sorted(_new_value)),
)
def test_any_single_row_update_of_any_column_fails_naming_that_row(
    entries: list[dict[str, object]], data: st.DataObject, column: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "gateway.db"
        clock = ManualClock(START)
        log = _open_log(path, clock)
        for fields in entries:
            clock.advance(timedelta(seconds=7))
            log.record(**fields)  # type: ignore[arg-type]
        log.db.close()
        seq = data.draw(st.integers(min_value=1, max_value=len(entries)), label="row")
        value = data.draw(_new_value[column], label="new value")

        conn = sqlite3.connect(path)
        old = conn.execute(f"SELECT {column} FROM audit_log WHERE seq = ?", [seq]).fetchone()[0]  # noqa: S608
        taken = conn.execute("SELECT 1 FROM audit_log WHERE seq = ?", [value]).fetchone()
        conn.close()
        assume(value != old)
        assume(not (column == "seq" and taken))
        _tamper(path, (f"UPDATE audit_log SET {column} = ? WHERE seq = ?", [value, seq]))  # noqa: S608

        report = _verify(path)
        assert not report.ok
        assert report.problem is not None
        assert report.problem.seq == seq, report.problem


# --- the CLI, as a real process --------------------------------------------------------------


def _parkguard(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = shutil.which("parkguard", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.fail("the parkguard console script is not installed: run pip install -e '.[dev]'")
    return subprocess.run([script, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_verify_exits_0_on_a_good_log_and_prints_the_head(db_path: Path) -> None:
    head = _verify(db_path).head_hash
    assert head is not None
    done = _parkguard("audit", "verify", db_path, cwd=db_path.parent)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"audit log OK: {ROWS} entries, head {head[:12]}…\n"


def test_cli_verify_exits_1_naming_the_tampered_row(db_path: Path) -> None:
    _tamper(db_path, "UPDATE audit_log SET after = '{\"fee_fen\":1}' WHERE seq = 3")
    done = _parkguard("audit", "verify", db_path, cwd=db_path.parent)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("audit log FAILED at entry 3 (tampered): entry 3 has been ")


def test_cli_verify_exits_2_on_a_missing_file_without_creating_it(tmp_path: Path) -> None:
    done = _parkguard("audit", "verify", "nowhere.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "nowhere.db: no such database file" in done.stderr
    assert not (tmp_path / "nowhere.db").exists()


def test_cli_verify_exits_2_on_a_database_without_an_audit_log(tmp_path: Path) -> None:
    sqlite_utils.Database(tmp_path / "other.db").table("sessions").insert({"id": 1})
    done = _parkguard("audit", "verify", "other.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "no audit_log table" in done.stderr


def test_cli_verify_exits_2_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("not sqlite " * 100)
    done = _parkguard("audit", "verify", "notes.db", cwd=tmp_path)
    assert done.returncode == 2
    assert "not a readable SQLite database" in done.stderr


def test_cli_show_prints_the_last_entries_with_their_reasons(db_path: Path) -> None:
    done = _parkguard("audit", "show", db_path, "--last", "2", cwd=db_path.parent)
    assert done.returncode == 0, done.stderr
    assert "#4 " in done.stdout and "#5 " in done.stdout and "#3 " not in done.stdout
    assert "reason: 道闸故障 barrier fault #5" in done.stdout
    assert 'before: {"fee_fen":1505}' in done.stdout


def test_cli_show_keeps_a_multi_line_reason_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    log = _open_log(path)
    log.record(actor="a", action="b", subject="c", reason="line one\n#2 fake entry")
    log.db.close()
    done = _parkguard("audit", "show", path, cwd=tmp_path)
    assert "reason: line one\\n#2 fake entry" in done.stdout
    assert "\n#2" not in done.stdout


# --- docs ------------------------------------------------------------------------------------


def test_the_module_docstring_example_runs() -> None:
    assert doctest.testmod(gateway.records.audit).failed == 0
