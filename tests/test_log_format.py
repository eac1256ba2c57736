"""``--log-format json`` (issue 26): one JSON object per line for journald and Loki, with
``ts`` (UTC), ``level``, ``logger``, ``message`` and the call's extra fields; nothing that
names a secret is written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from cli.main import main
from parkguard.logformat import REDACTED, UtcJsonFormatter, configure


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines_of(emit: object) -> list[dict[str, object]]:
    """What ``emit(logger)`` writes through the JSON formatter, parsed line by line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(UtcJsonFormatter())
    logger = logging.getLogger("gateway.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        emit(logger)  # type: ignore[operator]
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_object_per_line_with_the_fields_loki_indexes() -> None:
    before = datetime.now(UTC)
    [line] = lines_of(lambda log: log.info("car %s in at %s", "粤B12345", "in1",
                                           extra={"lane": "in1", "fee_fen": 700}))
    assert list(line)[:4] == ["ts", "level", "logger", "message"]
    assert line["level"] == "INFO" and line["logger"] == "gateway.test"
    assert line["message"] == "car 粤B12345 in at in1"  # Chinese as it is, not \\u escapes
    assert line["lane"] == "in1" and line["fee_fen"] == 700
    ts = str(line["ts"])
    assert ts.endswith("Z") and len(ts) == len("2026-12-07T13:14:25.359Z")
    stamped = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert before.replace(microsecond=0) <= stamped <= datetime.now(UTC)


def test_secret_named_fields_are_never_written() -> None:
    secret = "s3cret-value-never-logged"
    [line] = lines_of(lambda log: log.warning("login", extra={
        "password": secret, "lane_key": secret, "api_token": secret, "authorization": secret,
        "session_cookie": secret, "nested": {"secret": secret, "ok": 1},
        "config_value": SecretStr(secret)}))
    assert secret not in json.dumps(line)
    assert line["password"] == REDACTED and line["lane_key"] == REDACTED
    assert line["nested"] == {"secret": REDACTED, "ok": 1}


def test_an_exception_is_one_line_too() -> None:
    def fail(log: logging.Logger) -> None:
        try:
            raise ValueError("bad tariff")
        except ValueError:
            log.exception("tariff refused")

    [line] = lines_of(fail)
    assert line["level"] == "ERROR" and "ValueError: bad tariff" in str(line["exc_info"])


def test_the_command_takes_log_format_json(restore_logging: None) -> None:
    result = CliRunner().invoke(main, ["--log-format", "json", "plate", "check", "粤B12345"])
    assert result.exit_code == 0, result.output
    [handler] = logging.getLogger().handlers
    assert isinstance(handler.formatter, UtcJsonFormatter)
    result = CliRunner().invoke(main, ["--log-format", "xml", "plate", "check", "粤B12345"])
    assert result.exit_code == 2 and "xml" in result.output


def test_text_stays_the_default(restore_logging: None) -> None:
    configure("INFO")
    [handler] = logging.getLogger().handlers
    assert not isinstance(handler.formatter, UtcJsonFormatter)
