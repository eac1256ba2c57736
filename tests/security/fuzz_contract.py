"""Coverage-guided fuzzing of the wire contract with atheris: ``make fuzz``.

    .venv/bin/python tests/security/fuzz_contract.py -max_total_time=60 var/fuzz/contract

The invariant: every payload on every topic either is refused with ``ContractError`` (any
other exception is a crash) or is accepted, and then it round-trips through ``to_json``, its
integers fit SQLite and JavaScript (within 2^53), its floats are finite, and every time in it
converts to the site zones at both ends of the UTC offsets and renders. Half the inputs are
a known-good example with one field replaced by a fuzzed JSON value, so the fuzzer reaches
the accepting paths (where issue 22's year-9999 and 2^64 values hid) and not only the parser's
refusals.

``check`` is plain Python: tests/security/test_contract_fuzz.py runs it under hypothesis, so
the target keeps working where atheris is not installed (it is the ``fuzz`` extra).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from pydantic import BaseModel


def _instrumented() -> AbstractContextManager[Any]:
    """Run by ``make fuzz``: atheris records coverage of our own modules only (instrumenting
    every loaded module takes minutes and pydantic-core is native anyway)."""
    if __name__ != "__main__":
        return nullcontext()
    import atheris  # the `fuzz` extra: pip install -e '.[fuzz]'

    context: AbstractContextManager[Any] = atheris.instrument_imports(
        include=["wire", "parkguard"])
    return context


with _instrumented():
    from parkguard.errors import ContractError
    from wire.contract import messages as m
    from wire.contract import reference
    from wire.contract.examples import EXAMPLES

SITE: Final = "mall-b2"
# UTC+14 and UTC-12 (and a zone with history): the furthest a site's clock can be from UTC.
ZONES: Final = (ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12"),
                ZoneInfo("Asia/Shanghai"))
PLACEHOLDERS: Final = {"lane": "lane", "node": "node", "reader": "reader", "kind": "kind",
                       "id": "alert_id"}


def _topics() -> list[tuple[str, str]]:
    """(example name, the concrete topic it travels on), from the reference's topic table."""
    found = []
    for template, _route, _qos, models, _what in reference.TOPIC_TABLE:
        for model in models:
            example = EXAMPLES[model.__name__]
            values = {slot: str(example.get(field, "in1")) for slot, field in
                      PLACEHOLDERS.items()}
            found.append((model.__name__,
                          f"parkguard/v1/{SITE}/{template.format(**values)}"))
    return found


TOPICS: Final = _topics()


class Bytes:
    """Reads choices off the fuzzer's bytes (atheris's FuzzedDataProvider, in plain Python so
    hypothesis can drive the same target)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, count: int) -> bytes:
        chunk = self.data[self.at:self.at + count]
        self.at += len(chunk)
        return chunk

    def number(self, count: int) -> int:
        return int.from_bytes(self.take(count).ljust(count, b"\0"), "little")

    def pick(self, options: int) -> int:
        return self.number(2) % options

    def rest(self) -> bytes:
        return self.take(len(self.data))


def _json_value(source: Bytes) -> Any:
    """A fuzzed JSON value of any type: the bounds live at the edges of each."""
    kind = source.pick(9)
    raw = source.number(9)
    if kind == 0:
        return raw - 2**71  # any 72-bit integer, both signs
    if kind == 1:
        return 2 ** (raw % 70) + (raw >> 64) - 8  # near a power of two
    if kind == 2:
        return [math.inf, -math.inf, math.nan, 1e308, -0.0, 5e-324, 0.5][raw % 7]
    if kind == 3:
        return raw / 7.0 - 2**70
    if kind == 4:
        return source.take(raw % 40).decode("utf-8", "replace")
    if kind == 5:
        return [True, False, None, [], {}, "1", "inf", "NaN", "-1"][raw % 9]
    if kind == 6:
        year = raw % 10_000 or 1
        return f"{year:04d}-12-31T23:59:59.999{['Z', '+14:00', '-12:00', ''][raw % 4]}"
    if kind == 7:
        return str(raw - 2**71)  # a numeric string
    return [_json_value(source)] if raw % 2 else {"x": _json_value(source)}


def _payload(source: Bytes) -> tuple[str, str, bytes]:
    name, topic = TOPICS[source.pick(len(TOPICS))]
    if source.pick(2):  # raw bytes on the topic
        return name, topic, source.rest()
    example: dict[str, Any] = dict(EXAMPLES[name])
    fields = sorted(example)
    field = fields[source.pick(len(fields))]
    example[field] = _json_value(source)
    text = json.dumps(example, ensure_ascii=False, allow_nan=True)
    return name, topic, text.encode("utf-8", "surrogatepass")


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def check(data: bytes) -> None:
    """One input: refused with ContractError, or accepted and then safe to use everywhere."""
    name, topic, payload = _payload(Bytes(data))
    try:
        value = m.decode(topic, payload)
    except ContractError:
        return
    assert type(value).from_json(value.to_json()) == value, (name, payload)
    assert m.decode(topic, value.to_json()) == value, (name, payload)
    for leaf in _leaves(value):
        if isinstance(leaf, bool):
            continue
        if isinstance(leaf, int):
            assert -m.MAX_INT <= leaf <= m.MAX_INT, (name, leaf)
        elif isinstance(leaf, float):
            assert math.isfinite(leaf), (name, leaf)
        elif isinstance(leaf, datetime):
            for zone in ZONES:
                shown = leaf.astimezone(zone) if leaf.tzinfo else leaf.replace(tzinfo=zone)
                shown.strftime("%Y-%m-%d %H:%M:%S")


def seeds() -> Iterator[bytes]:
    """Inputs that start the fuzzer at every example, mutated and raw."""
    for index, (name, _topic) in enumerate(TOPICS):
        pick = index.to_bytes(2, "little")
        yield pick + b"\1\0" + json.dumps(EXAMPLES[name], ensure_ascii=False).encode()
        yield pick + b"\0\0" + b"\0\0" * 4


def main(argv: list[str]) -> None:
    import atheris

    corpus = next((Path(a) for a in argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not any(corpus.glob("*")):
        corpus.mkdir(parents=True, exist_ok=True)
        for number, seed in enumerate(seeds()):
            (corpus / f"seed-{number:03d}").write_bytes(seed)
    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
