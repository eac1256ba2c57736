"""The chain's canonical form: how an entry is stored as JSON, how its hash is taken, and
how a stored row is read back and checked on its own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.records.audit.values import AuditEntry, JSONValue, UnserialisableValueError

_TEXT_COLUMNS = ("ts", "actor", "action", "subject", "reason", "prev_hash", "hash")
_JSON_COLUMNS = ("before", "after")
_COLUMNS = ("seq", "ts", "actor", "action", "subject", "reason", "before", "after", "prev_hash",
            "hash")
_SELECT = (
    "SELECT seq, ts, actor, action, subject, reason, before, after, prev_hash, hash FROM audit_log"
)


def canonical_json(value: object) -> str:
    """The one JSON spelling of ``value``: sorted keys, no spaces, UTF-8 text, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _to_stored_json(field: str, value: object) -> str | None:
    if value is None:
        return None
    try:
        return canonical_json(value)
    except (TypeError, ValueError) as error:
        raise UnserialisableValueError(
            f"audit {field} value {value!r} is not JSON-serialisable: {error}"
        ) from error


def _entry_hash(fields: Mapping[str, object]) -> str:
    """SHA-256 over the canonical JSON of everything in a row except its own hash."""
    payload = json.dumps(
        {name: fields[name] for name in _COLUMNS if name != "hash"},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        # Only a hand-edited row can hold something JSON cannot spell; spell it anyway
        # (it will not match) rather than let a tampered file crash verify().
        default=repr,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class _Row:
    """A raw ``audit_log`` row as read back, trusted for nothing until it is checked."""

    fields: Mapping[str, Any]

    @property
    def seq(self) -> int:
        return int(self.fields["seq"])

    @property
    def hash(self) -> object:
        return self.fields["hash"]

    @property
    def prev_hash(self) -> object:
        return self.fields["prev_hash"]

    def well_typed(self) -> bool:
        """True if every column holds the type the writer stores (STRICT can be dropped)."""
        return all(isinstance(self.fields[name], str) for name in _TEXT_COLUMNS) and all(
            self.fields[name] is None or isinstance(self.fields[name], str)
            for name in _JSON_COLUMNS
        )

    def hash_as(self, seq: int) -> str | None:
        """The hash these contents would have if they had been written as entry ``seq``."""
        if not self.well_typed():
            return None
        return _entry_hash({**self.fields, "seq": seq})

    def is_sound(self) -> bool:
        return self.hash_as(self.seq) == self.hash


def _entry_from(row: _Row) -> AuditEntry:
    def parsed(name: str) -> JSONValue:
        text = row.fields[name]
        if text is None:
            return None
        try:
            value: JSONValue = json.loads(text)
        except (TypeError, ValueError):
            # Only a hand-edited row gets here; show what is there rather than fail to
            # show the very entry someone is investigating (verify() reports the edit).
            return str(text)
        return value

    return AuditEntry(
        seq=row.seq,
        ts=row.fields["ts"],
        actor=row.fields["actor"],
        action=row.fields["action"],
        subject=row.fields["subject"],
        reason=row.fields["reason"],
        before=parsed("before"),
        after=parsed("after"),
        prev_hash=row.fields["prev_hash"],
        hash=row.fields["hash"],
    )
