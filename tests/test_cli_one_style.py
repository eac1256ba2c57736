"""Every ``parkguard`` error is said ``error: ...`` in lower case, also through click's
``CliRunner`` (which calls a command's standalone ``main``, where click would print its
own ``Error:``): the top-level group and each subgroup a test or a script may invoke alone."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cli.audit import audit
from cli.errors import OneStyle
from cli.main import main
from cli.payments import payments
from cli.plate import plate
from cli.read import read
from cli.tariff import tariff
from cli.users import users
from parkguard.errors import ParkGuardError


def said_one_way(command: click.Command, args: list[str]) -> str:
    done = CliRunner().invoke(command, args)
    assert done.exit_code != 0, done.output
    assert not isinstance(done.exception, Exception) or isinstance(
        done.exception, SystemExit), done.exception  # no traceback
    assert "Error:" not in done.output, done.output
    assert "Errno" not in done.output, done.output
    assert "error: " in done.stderr, done.output
    return done.stderr


@pytest.mark.parametrize(("command", "args", "named"), [
    (main, ["no-such-command"], "no such command"),
    (main, ["--log-level", "LOUD"], "invalid value"),
    (main, ["tariff", "check", "missing.toml"], "missing.toml: no such file or directory"),
    (tariff, ["check", "missing.toml"], "missing.toml"),
    (tariff, ["quote", "--bogus"], "no such option"),
    (plate, ["nothing-here"], "no such command"),
    (users, ["list", "-c", "missing.toml"], "missing.toml"),
    (audit, ["verify"], "missing argument"),
    (payments, ["reconcile"], "missing"),
    (read, [], "missing argument"),
])
def test_every_command_says_errors_in_lower_case(command: click.Command, args: list[str],
                                                 named: str) -> None:
    assert named in said_one_way(command, args).lower()


def test_a_usage_error_keeps_the_usage_line_and_the_help_hint() -> None:
    text = said_one_way(main, ["tariff", "quote", "--bogus"])
    assert text.startswith("Usage: ") and "Try '" in text and "--help' for help." in text


def test_a_domain_error_and_an_unreadable_file_in_a_command_of_ours(tmp_path: Path) -> None:
    @click.command(cls=OneStyle)
    @click.argument("path", type=click.Path(path_type=Path))
    def opens(path: Path) -> None:
        path.read_text(encoding="utf-8")

    @click.command(cls=OneStyle)
    def refuses() -> None:
        raise ParkGuardError("the tariff has no rule for this stay")

    text = said_one_way(opens, [str(tmp_path / "gone.txt")])
    assert text == f"error: {tmp_path / 'gone.txt'}: no such file or directory\n"
    assert said_one_way(refuses, []) == "error: the tariff has no rule for this stay\n"
    assert CliRunner().invoke(refuses, []).exit_code == 2
    ok = CliRunner().invoke(main, ["--version"])
    assert ok.exit_code == 0 and "parkguard" in ok.output


def test_a_bare_group_shows_its_help_without_an_error_line() -> None:
    done = CliRunner().invoke(main, [])
    assert done.exit_code == 2
    assert done.stderr.startswith("Usage: ") and "ParkGuard" in done.stderr
    assert "error:" not in done.stderr and "Error:" not in done.stderr
