"""The dashboard's one translation table (gateway/web/words.py) covers every machine value a
page can show: each ``Literal`` of the wire contract, the lane event types, the decision
reasons the gateway and the lanes send and the lanes' fault codes (found in their source,
so a new code without words fails here, not on a guard's screen at 3 a.m.)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

import wire.contract
from gateway.web.words import WORDS, lookup, say
from parkguard.core.access import AccessReason
from wire.contract.messages import LANE_EVENT_TYPES

ROOT = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def _literals(annotation: object) -> set[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return {value for value in typing.get_args(annotation) if isinstance(value, str)}
    found: set[str] = set()
    for argument in typing.get_args(annotation):
        found |= _literals(argument)
    return found


def _contract_values() -> set[tuple[str, str]]:
    """(field name, value) for every string Literal of every contract model."""
    values: set[tuple[str, str]] = set()
    for info in pkgutil.iter_modules(wire.contract.__path__):
        module = importlib.import_module(f"wire.contract.{info.name}")
        for model in vars(module).values():
            if not (inspect.isclass(model) and issubclass(model, BaseModel)):
                continue
            for name, field in model.model_fields.items():
                if name in ("v", "type"):
                    continue
                values |= {(name, value) for value in _literals(field.annotation)}
    values |= {("type", model.model_fields["type"].default) for model in LANE_EVENT_TYPES}
    return values


def _codes(pattern: str, *folders: str) -> set[str]:
    found: set[str] = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(re.findall(pattern, path.read_text(encoding="utf-8")))
    return found


def test_the_contract_walk_finds_the_values_the_lanes_page_shows() -> None:
    values = _contract_values()
    assert {("barrier", "closed"), ("mode", "normal"), ("settled", "guard_open"),
            ("type", "help_pressed"), ("direction", "exit")} <= values


@pytest.mark.parametrize(("domain", "value"), sorted(_contract_values()))
def test_every_contract_value_has_words(domain: str, value: str) -> None:
    assert lookup(value, domain) is not None, f"{domain}={value!r} has no translation"


def test_every_fault_code_a_lane_sends_has_words() -> None:
    codes = _codes(r"\b_?fault\(\s*\"([a-z_]+)\"", "firmware/lane")
    codes |= _codes(r"fault = \"([a-z_]+)\" if .* else \"[a-z_]+\"", "firmware/lane")
    codes |= _codes(r"fault = \"[a-z_]+\" if .* else \"([a-z_]+)\"", "firmware/lane")
    codes |= _codes(r"HealthSignal\([^,]+,\s*\"([a-z_]+)\"", "firmware/lane")  # device health
    codes |= _codes(r"(?:LOST|BACK): Final = \"([a-z_]+)\"", "firmware/lane/devices")
    assert {"barrier_limit_timeout", "pass_timeout", "kiosk_device_lost"} <= codes
    missing = sorted(code for code in codes if lookup(code, "fault") is None)
    assert not missing, f"fault codes without words: {missing}"


def test_every_decision_reason_has_words() -> None:
    reasons = _codes(r"reply\(\"(?:open|refuse)\", \"([a-z_]+)\"", "gateway")
    reasons |= _codes(r"Verdict\(\"(?:open|refuse)\", \"([a-z_]+)\"", "firmware/lane")
    reasons |= _codes(r"\"[a-z]+\": \"([a-z]+_entry)\"", "gateway/runtime")
    reasons |= {f"offline_{reason}" for reason in typing.get_args(AccessReason)}
    reasons |= {"payment_due", "pass", "whitelisted", "exempt", "prepaid", "free"}  # billing
    assert {"plate_unread", "offline_lot_full", "visitor_entry", "fire_open"} <= reasons
    missing = sorted(reason for reason in reasons if lookup(reason, "reason") is None)
    assert not missing, f"decision reasons without words: {missing}"


def test_every_entry_is_chinese_with_english_beside() -> None:
    for domain, words in WORDS.items():
        for value, text in words.items():
            assert CJK.search(text) and LATIN.search(text), f"{domain}={value}: {text!r}"
            assert " " in text, f"{domain}={value}: Chinese, a space, then English"


def test_an_unknown_value_is_shown_as_it_is_and_nothing_as_a_dash() -> None:
    assert say("closed", "barrier") == "已落杆 closed"
    assert say("offline_lot_full", "reason") == "脱机·车位已满 lot full (offline)"
    assert say("brand_new_code", "fault") == "brand_new_code"
    assert say(None, "mode") == "—"
