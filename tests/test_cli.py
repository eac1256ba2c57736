"""The ``parkguard`` command as a user runs it: a real subprocess of the installed script."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PARKGUARD = str(Path(sys.executable).with_name("parkguard"))


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PARKGUARD, *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.mark.parametrize(
    "command",
    [(), ("demo",), ("sim",), ("gateway",), ("lane",), ("broker", "run"), ("audit", "verify"),
     ("contract", "docs"), ("plate", "check"), ("plate", "match"), ("broker", "init"),
     ("broker", "rotate"), ("tariff", "quote"), ("tariff", "check"), ("read",),
     ("users", "add"), ("lane", "selftest")],
    ids=lambda c: " ".join(c) or "top",
)
def test_every_command_explains_itself(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: parkguard" in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_the_top_level_help_lists_the_main_subcommands() -> None:
    out = run("--help").stdout
    for name in ("demo", "gateway", "lane", "sim", "audit"):
        assert f"parkguard {name}" in out


def test_the_protocol_reference_is_current() -> None:
    result = run("contract", "docs", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_config_file_fails_with_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    result = run("gateway", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "config file not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_the_demo_balances_its_day_and_leaves_a_verifiable_audit_log(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run("demo", "--cars", "30", "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "30 of 30" in result.stdout  # read by the TFLite reader, the demo's default
    # Played as the demo scenario (docs/examples/scenarios/demo.toml), its invariants held.
    assert "场景 scenario demo" in result.stdout and "通过 PASSED" in result.stdout
    assert "gateway_kill 10 min" in result.stdout
    assert "alarms acted on within the" in result.stdout
    logged = (out / "demo.log").read_text(encoding="utf-8")  # the site's lines, off screen
    assert "FIRE at fire1" in logged and "flood level 0 -> 2" in logged
    assert "XNNPACK" not in result.stderr + result.stdout  # no runtime chatter
    assert "decide p50 / p99" in result.stdout
    assert "出场方式 exits by" in result.stdout and "扫码 QR" in result.stdout  # paid at the exit
    assert (out / "demo-day.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with sqlite3.connect(out / "gateway.db") as db:  # fees booked = money taken + debts
        (fees,), (taken,), (owed,) = (db.execute(sql).fetchone() for sql in (
            "SELECT coalesce(sum(fee_fen), 0) FROM sessions WHERE state = 'closed'",
            "SELECT coalesce(sum(amount_fen - refunded_fen), 0) FROM payments "
            "WHERE state = 'paid' AND purpose = 'fee'",
            "SELECT coalesce(sum(amount_fen), 0) FROM debts"))
    assert fees == taken + owed, (fees, taken, owed)
    verify = run("audit", "verify", str(out / "gateway.db"))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK" in verify.stdout
