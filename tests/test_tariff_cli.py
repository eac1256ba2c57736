"""``parkguard tariff quote`` and ``check`` through click's CliRunner: output, JSON, exit codes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from cli.tariff import tariff

MALL = Path(__file__).resolve().parents[1] / "docs/examples/tariff-mall.toml"


def _quote(*extra: str) -> tuple[int, str]:
    done = CliRunner().invoke(tariff, ["quote", "--tariff", str(MALL), "--plate", "粤B12345",
                                       *extra])
    return done.exit_code, done.output


def test_quote_prints_an_itemised_bilingual_receipt() -> None:
    code, out = _quote("--in", "2026-03-02T21:00", "--out", "2026-03-02T23:00")
    assert code == 0, out
    assert "日间 day" in out and "夜间 night" in out
    assert "¥5.00" in out and "¥10.00" in out
    assert out.rstrip().endswith("应付 total: ¥15.00")


def test_quote_with_a_coupon_class_and_json() -> None:
    code, out = _quote("--in", "2026-10-02T10:00+08:00", "--out", "2026-10-02T05:00:00Z",
                       "--coupon", "rule:spend_88", "--class", "large", "--json")
    assert code == 0, out
    receipt = json.loads(out)
    assert receipt["minutes"] == 180 and receipt["vehicle_class"] == "large"
    assert receipt["charged_fen"] == 1300 and receipt["class_fen"] == 1300
    assert receipt["discounts"] == [{"code": "spend_88", "label_zh": "消费满88元免费停车",
                                     "label_en": "spend ¥88, park free",
                                     "reason": "coupon:free_minutes", "fen": 2600,
                                     "ref": None}]
    assert receipt["total_fen"] == 0


def test_quote_takes_a_percent_coupon() -> None:
    code, out = _quote("--in", "2026-03-02T10:00", "--out", "2026-03-02T11:10",
                       "--coupon", "percent_off:20")
    assert code == 0, out
    assert "折扣减免 percent off [coupon:percent_off]" in out and "-¥1.40" in out
    assert out.rstrip().endswith("应付 total: ¥5.60")
    code, out = _quote("--in", "2026-03-02T10:00", "--out", "2026-03-02T11:10",
                       "--coupon", "percent_off:120")
    assert code == 2 and "--coupon" in out and "from 1 to 100" in out


def test_quote_shows_the_exemption_reason_and_unused_coupons() -> None:
    done = CliRunner().invoke(tariff, [
        "quote", "--tariff", str(MALL), "--plate", "粤B1234警", "--in", "2026-03-02T10:00",
        "--out", "2026-03-02T12:00", "--coupon", "amount_off:100"])
    assert done.exit_code == 0, done.output
    assert "执勤车辆免费 duty vehicle, free [duty_vehicle]" in done.output
    assert "未使用 not used: amount_off:100 — exempt: not needed" in done.output
    assert "应付 total: ¥0.00" in done.output


def test_quote_refuses_bad_input_with_the_option_named() -> None:
    code, out = _quote("--in", "yesterday", "--out", "2026-03-02T12:00")
    assert code == 2 and "--in" in out and "not an ISO date-time" in out
    code, out = _quote("--in", "2026-03-02T10:00", "--out", "2026-03-02T12:00",
                       "--coupon", "amount_off:lots")
    assert code == 2 and "--coupon" in out and "positive whole number" in out
    code, out = _quote("--in", "2026-03-02T12:00", "--out", "2026-03-02T10:00")
    assert code == 1 and "before entry" in out
    code, out = _quote("--in", "2026-03-02T10:00", "--out", "2026-03-02T12:00", "--class", "bus")
    assert code == 1 and "vehicle_class 'bus'" in out


def test_check_passes_the_mall_file() -> None:
    done = CliRunner().invoke(tariff, ["check", str(MALL)])
    assert done.exit_code == 0, done.output
    assert "ok   police car parks free" in done.output
    assert "24/24 vectors pass" in done.output


def test_check_fails_a_wrong_vector_and_names_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(MALL.read_text("utf-8").replace("expect_fen = 1500", "expect_fen = 1400"),
                      encoding="utf-8")
    done = CliRunner().invoke(tariff, ["check", str(broken)])
    assert done.exit_code == 1
    assert ("FAIL evening into night: day hour plus night flat — expected 1400 fen, quoted 1500"
            in done.output)


def test_check_names_file_and_field_of_an_invalid_tariff(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(MALL.read_text("utf-8").replace('mode = "threshold"', 'mode = "maybe"'),
                      encoding="utf-8")
    done = CliRunner().invoke(tariff, ["check", str(broken)])
    assert done.exit_code == 1
    assert f"{broken}: invalid tariff" in done.output
    assert "tariffs.0.free.mode" in done.output


def test_check_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    done = CliRunner().invoke(tariff, ["check", str(tmp_path / "nope.toml")])
    assert done.exit_code == 2 and "cannot read tariff file" in done.output


def test_quote_picks_the_vehicle_class_as_the_gateway_does() -> None:
    """A new-energy plate is priced new_energy, as the gateway prices it (it was `small`
    here before), and the class adjustment is a line of the printed bill."""
    from gateway.money.pricing import SitePricing

    done = CliRunner().invoke(tariff, [
        "quote", "--tariff", str(MALL), "--plate", "沪AD12345", "--in", "2026-03-02T21:00",
        "--out", "2026-03-02T23:00", "--json"])
    assert done.exit_code == 0, done.output
    receipt = json.loads(done.output)
    gateway = SitePricing.from_file(MALL).quote(
        plate="沪AD12345", entry=datetime.fromisoformat(receipt["entry"]),
        exit=datetime.fromisoformat(receipt["exit"]))
    assert receipt["vehicle_class"] == gateway.vehicle_class == "new_energy"
    assert receipt["total_fen"] == gateway.total_fen == 750
    assert [(line["kind"], line["fen"]) for line in receipt["bill_lines"]] == [
        ("period", 500), ("period", 1000), ("class", -750)]
    code, out = _quote("--in", "2026-03-02T21:00", "--out", "2026-03-02T23:00", "--class",
                       "large")
    assert code == 0 and "车型 class: large" in out and out.rstrip().endswith("¥30.00")


def test_quote_lines_sum_to_the_printed_total() -> None:
    code, out = _quote("--in", "2026-03-02T07:00", "--out", "2026-03-03T09:40",
                       "--coupon", "amount_off:300")
    assert code == 0, out
    amounts = [line.rsplit(maxsplit=1)[-1] for line in out.splitlines()[2:-1]]
    fen = sum(int(a.replace("¥", "").replace(".", "")) for a in amounts)
    assert out.rstrip().endswith(f"应付 total: ¥{fen // 100}.{fen % 100:02d}")
    assert "单日封顶 calendar-day cap" in out


def test_quote_refuses_an_invalid_plate() -> None:
    done = CliRunner().invoke(tariff, [
        "quote", "--tariff", str(MALL), "--plate", "粤B1234", "--in", "2026-03-02T10:00",
        "--out", "2026-03-02T12:00"])
    assert done.exit_code == 2
    assert "--plate" in done.output and "not a valid plate" in done.output
    assert "5 serial characters" in done.output
