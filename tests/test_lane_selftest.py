"""``parkguard lane selftest --script`` on MockFactory pins."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from firmware.lane.selftest import selftest

LANE = ('site = "mall-b2"\nlane = "in1"\ndirection = "entry"\n[pins]\nfire_input = 23\n'
        '[camera]\ntype = "simulated"\n')


def _run(tmp_path: Path, answers: list[str]) -> tuple[int, str]:
    config = tmp_path / "lane.toml"
    config.write_text(LANE, encoding="utf-8")
    script = tmp_path / "answers.txt"
    script.write_text("\n".join(answers) + "\n", encoding="utf-8")
    result = CliRunner().invoke(selftest, ["-c", str(config), "--mock-pins", "--script",
                                           str(script), "--wait", "0.2"])
    return result.exit_code, result.output


OUTPUTS = ["", "y", "", "y", "", "y", "y"]


def test_every_input_and_output_passes_when_each_is_triggered(tmp_path: Path) -> None:
    code, output = _run(tmp_path, OUTPUTS + ["trigger"] * 6)
    assert code == 0, output
    for name in ("barrier raise", "barrier lower", "light green", "light red", "arming_loop",
                 "safety_loop", "up_limit", "down_limit", "help_button", "fire_input"):
        assert f"PASS  {name}" in output
    assert "all checks passed" in output


def test_an_input_that_never_comes_and_a_boom_that_did_not_move_fail(tmp_path: Path) -> None:
    answers = ["", "n", "", "y", "", "y", "y", "trigger", "", "trigger", "trigger",
               "trigger", "trigger"]
    code, output = _run(tmp_path, answers)
    assert code == 1
    assert "FAIL  barrier raise" in output and "FAIL  safety_loop" in output
    assert "PASS  arming_loop" in output
