"""``parkguard plate check`` and ``parkguard plate match``: output, JSON and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.plate import plate


def run(*args: str) -> Result:
    return CliRunner().invoke(plate, list(args))


@pytest.fixture
def inside(tmp_path: Path) -> Path:
    path = tmp_path / "inside.txt"
    path.write_text("粤B12345\n粤B12846\n\n沪AD12345\n粤B1?999\n", encoding="utf-8")
    return path


# check -----------------------------------------------------------------------------------------


def test_check_prints_each_plate_normalised_with_series_and_colour() -> None:
    result = run("check", "粤b·12345", "浙O1234警", "沪AD12345")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "粤b·12345 → 粤B·12345  ordinary 普通  blue_or_yellow 蓝牌/黄牌",
        "浙O·1234警  police 警车  white 白牌  (duty vehicle)",
        "沪A·D12345  new_energy_small 小型新能源  gradient_green 渐变绿牌",
    ]


def test_check_shows_corrections_and_warnings() -> None:
    result = run("check", "京AI2345", "京AABC12")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "京AI2345 → 京A·12345  ordinary 普通  blue_or_yellow 蓝牌/黄牌",
        "  corrected position 3: I → 1 (I is never used after the 2nd character)",
        "京A·ABC12  ordinary 普通  blue_or_yellow 蓝牌/黄牌",
        "  warning: serial has 3 letters; ordinary plates rarely have more than 2",
    ]


def test_check_names_what_is_wrong_and_exits_1() -> None:
    result = run("check", "京A12345", "沪AZ12345")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1] == (
        "沪AZ12345  INVALID  '沪AZ12345': position 3: 'Z' is not a new-energy letter: small "
        "new-energy plates have D A B C E (electric) or F G H J K (hybrid) here")


def test_check_strict_takes_letters_and_digits_as_written() -> None:
    result = run("check", "--strict", "京AI2345")
    assert result.exit_code == 1
    assert "position 3: 'I' is never used in a serial" in result.stdout


def test_check_json() -> None:
    result = run("check", "--json", "粤B12345D", "苏EA123")
    assert result.exit_code == 1
    good, bad = json.loads(result.stdout)
    assert good == {
        "input": "粤B12345D", "valid": True, "plate": "粤B12345D", "display": "粤B·12345D",
        "series": "new_energy_large", "series_zh": "大型新能源", "colour": "yellow_green",
        "colour_zh": "黄绿牌", "province": "粤", "authority": "B", "serial": "12345D",
        "energy": "electric", "duty_vehicle": False, "corrections": [], "warnings": [],
    }
    assert bad["valid"] is False and bad["normalised"] == "苏EA123"
    assert bad["error"] == {"position": 7, "reason": "missing: ordinary plates have 7 "
                            "characters (province, authority letter, 5 serial characters)"}


def test_check_needs_a_text() -> None:
    assert run("check").exit_code == 2


# match -----------------------------------------------------------------------------------------


def test_match_prints_the_plate_the_score_and_the_runner_up(inside: Path) -> None:
    result = run("match", "粤B1234S", "--inside", str(inside))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "match  粤B12345  score 0.25",
        "  read       粤B1234S",
        "  why        closest car inside is 0.25 away (position 7: read 'S' for '5' (0.25)); "
        "next closest 粤B12846 (1.5)",
        "  runner-up  粤B12846 (1.5)",
    ]
    assert "粤B1?999 is not a valid plate; matched as written" in result.stderr


def test_match_ambiguous_exits_1_and_lists_the_candidates(inside: Path) -> None:
    result = run("match", "粤B12?4?", "--inside", str(inside))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ambiguous  a guard must choose"
    assert lines[-1] == "  closest    粤B12345 (1), 粤B12846 (1)"


def test_match_none_says_why(inside: Path) -> None:
    result = run("match", "京Q77777", "--inside", str(inside))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "none", "  read       京Q77777", "  why        no car inside is within 2 of the read"]


def test_match_json_keeps_raw_read_plate_score_and_runner_up(inside: Path) -> None:
    result = run("match", "B12345", "--json", "--inside", str(inside))
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["outcome"], report["plate"], report["score"]) == ("match", "粤B12345", 0.5)
    assert report["raw_read"] == "B12345" and report["inside"] == 4
    assert report["runner_up"] == {"plate": "粤B12846", "score": 2.0}
    assert report["edits"] == ["position 1: '粤' missing from the read (0.5)"]


def test_match_uses_confidences_and_thresholds(inside: Path) -> None:
    far = run("match", "粤B12399", "--inside", str(inside))
    assert far.exit_code == 1  # 2.0 from 粤B12345
    unsure = run("match", "粤B12399", "--confidences", "1,1,1,1,1,0.1,0.1",
                 "--inside", str(inside))
    assert unsure.exit_code == 0 and "score 1" in unsure.stdout
    strict = run("match", "粤B12399", "--confidences", "1,1,1,1,1,0.1,0.1",
                 "--max-distance", "0.5", "--inside", str(inside))
    assert strict.exit_code == 1


def test_match_no_plate_identity(tmp_path: Path) -> None:
    path = tmp_path / "inside.txt"
    path.write_text("粤B12345\n#QPG18F2K31QZ\n", encoding="utf-8")
    assert run("match", "#QPG18F2K31QZ", "--inside", str(path)).exit_code == 0
    assert run("match", "#QPG18F2K31QX", "--inside", str(path)).exit_code == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--confidences", "1,x"], "give numbers between 0 and 1"),
    (["--confidences", "1,1"], "has 7 characters but 2 confidences"),
    (["--max-distance", "0.3"], "max_distance: Input should be a multiple of 0.25"),
    (["--min-margin", "0"], "min_margin: Input should be greater than or equal to 0.25"),
])
def test_match_usage_errors_exit_2(inside: Path, args: list[str], message: str) -> None:
    result = run("match", "粤B12345", "--inside", str(inside), *args)
    assert result.exit_code == 2
    assert message in result.output


def test_match_unreadable_files_exit_2(tmp_path: Path) -> None:
    missing = run("match", "粤B12345", "--inside", str(tmp_path / "nope.txt"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = run("match", "粤B12345", "--inside", str(binary))
    assert result.exit_code == 2 and "cannot read the list of cars inside" in result.output
    bad_line = tmp_path / "bad.txt"
    bad_line.write_text("粤B12345\n#Xwhatever\n", encoding="utf-8")
    result = run("match", "粤B12345", "--inside", str(bad_line))
    assert result.exit_code == 2 and "bad.txt:2:" in result.output
    assert run("match", "粤B12345", "--inside", str(tmp_path)).exit_code == 2  # a directory


def test_an_empty_inside_file_is_no_match(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("", encoding="utf-8")
    result = run("match", "粤B12345", "--inside", str(path))
    assert result.exit_code == 1 and "no car inside" in result.stdout
