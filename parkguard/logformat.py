"""How every ``parkguard`` command logs: plain lines for a person at a terminal, or one JSON
object per line for journald and Loki (``parkguard --log-format json …``).

A JSON line carries ``ts`` (UTC, ISO 8601 with milliseconds and ``Z``), ``level``, ``logger``
and ``message``, then whatever the call passed as ``extra={…}`` and, for an exception, its
traceback as ``exc_info``. An extra field whose name says it holds a secret (password,
token, key, secret, cookie, authorization) is written as ``[redacted]``: a log shipped to a
central Loki must not carry what opens a lane or a payment account. The formatter is
python-json-logger's, so quoting, non-ASCII text (plates, Chinese) and odd values are its
well-tested business, not ours.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED: Final = "[redacted]"
#: Extra field names that hold a secret, whatever the prefix (``lane_key``, ``api_token``).
SECRET_NAME: Final = re.compile(r"pass(word)?|secret|token|key|cookie|authori[sz]ation|sig$",
                                re.IGNORECASE)
#: The first fields of every line, in this order.
LEADING: Final = ("ts", "level", "logger", "message")


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """The same fields with every secret-named value replaced, nested dicts included."""
    clean: dict[str, Any] = {}
    for name, value in fields.items():
        if SECRET_NAME.search(name) and name not in LEADING:
            clean[name] = REDACTED
        elif isinstance(value, dict):
            clean[name] = redact(value)
        else:
            clean[name] = value
    return clean


class UtcJsonFormatter(JsonFormatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, extras."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"},
                         json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["ts"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        ordered: dict[str, Any] = {name: log_data[name] for name in LEADING if name in log_data}
        ordered.update(redact({k: v for k, v in log_data.items() if k not in ordered}))
        return ordered


def formatter(kind: LogFormat) -> logging.Formatter:
    return UtcJsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, kind: LogFormat = "text") -> None:
    """Log to stderr at ``level`` in ``kind``: the root handler, replacing any before."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(kind))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
