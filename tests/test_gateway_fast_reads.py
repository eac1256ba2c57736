"""The gateway's database runs plain SELECTs without sqlite-utils' savepoint and must give
the same rows as sqlite-utils does; anything else still goes through sqlite-utils' guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlite_utils

from gateway.storage.database import open_database
from gateway.storage.fast_reads import GatewayDatabase


@pytest.fixture
def db(tmp_path: Path) -> GatewayDatabase:
    opened = open_database(tmp_path / "gateway.db")
    assert isinstance(opened, GatewayDatabase)
    opened.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, plate TEXT, fee INTEGER)")
    opened.table("t").insert_all([{"id": 1, "plate": "粤B12345", "fee": 500},
                                  {"id": 2, "plate": "粤B67890", "fee": 0}])
    return opened


@pytest.mark.parametrize("sql, params", [
    ("SELECT * FROM t WHERE plate = ?", ["粤B12345"]),
    ("  select id, plate AS id, fee FROM t ORDER BY id", None),  # a duplicate column name
    ("SELECT count(*) AS n FROM t WHERE fee > :fee", {"fee": 100}),
    ("SELECT * FROM t WHERE id = ?", [99]),
])
def test_a_select_gives_the_rows_sqlite_utils_gives(db: GatewayDatabase, sql: str,
                                                    params: list[object] | None) -> None:
    plain = sqlite_utils.Database(db.conn)
    assert list(db.query(sql, params)) == list(plain.query(sql, params))


def test_a_statement_that_is_not_a_select_still_meets_sqlite_utils_guard(
    db: GatewayDatabase,
) -> None:
    with pytest.raises(ValueError, match="returns rows"):
        list(db.query("DELETE FROM t WHERE id = 1"))
    assert db.table("t").count == 2  # rejected without running
    with_cte = list(db.query("WITH f AS (SELECT fee FROM t) SELECT sum(fee) AS s FROM f"))
    assert with_cte == [{"s": 500}]


def test_traced_like_any_query(db: GatewayDatabase) -> None:
    seen: list[str] = []
    db._tracer = lambda sql, _params: seen.append(sql)
    list(db.query("SELECT 1 AS one"))
    assert seen == ["SELECT 1 AS one"]
