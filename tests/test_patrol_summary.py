"""The patrol summary (docs/patrols.md): one pure function, ``patrol_summary``, behind the
dashboard's patrol page, its JSON API and ``parkguard patrol report``; the three must say the
same figures. The day (tests/patrol_day_data.py) is tapped into a real SQLite gateway
database through the patrol desk, as readers' taps arrive."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.patrol import patrol, table
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.patrols.desk import PatrolDesk, read_taps
from gateway.patrols.summary import PatrolSummary, patrol_summary, summary_span
from gateway.web import WebSettings, create_web_app
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from tests.patrol_day_data import AFTER, CONFIG, DAY, EXAMPLE, MIDNIGHT, tap_the_day
from tests.test_web_auth import add_people, login


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayApp]:
    """A built, unstarted gateway with the example regime, the day tapped in."""
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1),
                           patrol_file=EXAMPLE)
    app = GatewayApp(config, clock=ManualClock(AFTER))
    assert app.patrols is not None
    tap_the_day(app.patrols)
    try:
        yield app
    finally:
        app.store.close()


def summary_of(desk: PatrolDesk, first: date = DAY, last: date = DAY) -> PatrolSummary:
    stored = list(read_taps(desk.db, *summary_span(CONFIG, first, last)))
    return patrol_summary(CONFIG, stored, first, last, now=AFTER)


def without_clock(report: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in report.items() if k != "generated_at"}


# --- the pure summary --------------------------------------------------------------------------


def test_each_round_of_the_day_by_person_and_route_with_what_went_wrong(
        gateway: GatewayApp) -> None:
    assert gateway.patrols is not None
    summary = summary_of(gateway.patrols)
    rounds = {(r.subject, r.start.strftime("%H:%M") if r.start else None): r
              for r in summary.rounds}
    zhao = rounds[("zhao", "01:00")]
    assert (zhao.status, zhao.route, zhao.compliance_pct) == ("done", "b1-loop", 100)
    assert [(f.reason, f.checkpoint, f"{f.at:%H:%M}") for f in zhao.tag_flags] == [
        ("cloned", "b1-booth", "01:05")]
    assert zhao.start is not None and zhao.start.utcoffset() == timedelta(hours=8)  # local
    wang = rounds[("wang", "08:30")]
    assert wang.status == "late" and wang.late and wang.minutes == 45
    li = rounds[("li", "17:00")]
    assert (li.status, li.missed, li.visited, li.needed, li.compliance_pct) == (
        "missed", ("b2-east",), 3, 4, 75)
    chen_ok, chen_fast = rounds[("chen", "10:00")], rounds[("chen", "13:00")]
    assert chen_ok.status == "done" and not chen_ok.flagged
    assert chen_fast.status == "impossible"
    assert chen_fast.too_fast == ("b1-pump→b2-west 10 s < 47 s",)
    assert rounds[("zhou", "14:00")].status == "done"
    floor = rounds[("cleaner+guard+squad_leader", None)]
    assert (floor.status, floor.route, floor.missed) == ("not_walked", "booth-floor",
                                                         ("b1-booth",))
    assert [f.reason for f in summary.tag_flags] == ["cloned"]


def test_each_persons_compliance_counts_the_duties_due_that_day(gateway: GatewayApp) -> None:
    assert gateway.patrols is not None
    people = {g.subject: g for g in summary_of(gateway.patrols).guards}
    figures = {s: (g.due, g.met, g.late, g.missed, g.compliance_pct)
               for s, g in people.items()}
    assert figures == {
        "zhao": (1, 1, 0, 0, 100), "wang": (1, 0, 1, 0, 100), "li": (1, 0, 0, 1, 0),
        "chen": (1, 0, 0, 1, 0),  # one good round of the two a day: the other too fast
        "zhou": (1, 1, 0, 0, 100),  # the team: booth floor and barriers, daily, not cleaned
        "cleaner+guard+squad_leader": (2, 0, 0, 2, 0)}
    assert (people["chen"].rounds, people["chen"].flagged_rounds) == (2, 1)


def test_during_the_day_a_shift_not_yet_due_is_pending_not_missed(gateway: GatewayApp) -> None:
    assert gateway.patrols is not None
    noon = MIDNIGHT + timedelta(hours=12)
    stored = [t for t in read_taps(gateway.patrols.db, *summary_span(CONFIG, DAY, DAY))
              if t.tapped_at < noon]
    people = {g.subject: g for g in patrol_summary(CONFIG, stored, DAY, DAY,
                                                   now=noon).guards}
    assert (people["li"].pending, people["li"].due, people["li"].compliance_pct) == (
        1, 0, None)
    assert not any(r.subject == "li" for r in patrol_summary(
        CONFIG, stored, DAY, DAY, now=noon).rounds if r.status != "not_walked")


def test_a_range_of_days_and_a_day_without_taps(gateway: GatewayApp) -> None:
    assert gateway.patrols is not None
    quiet = summary_of(gateway.patrols, DAY + timedelta(days=1), DAY + timedelta(days=1))
    assert quiet.tag_flags == () and all(r.status == "not_walked" for r in quiet.rounds)
    both = summary_of(gateway.patrols, DAY, DAY + timedelta(days=1))
    zhao = {g.subject: g for g in both.guards}["zhao"]
    assert (zhao.due, zhao.pending, zhao.met) == (1, 1, 1)  # the next day has only begun
    with pytest.raises(ValueError, match="before the first"):
        summary_of(gateway.patrols, DAY, DAY - timedelta(days=1))


def test_the_summary_is_pure_the_same_taps_give_the_same_figures(
        gateway: GatewayApp) -> None:
    assert gateway.patrols is not None
    stored = list(read_taps(gateway.patrols.db, *summary_span(CONFIG, DAY, DAY)))
    once = patrol_summary(CONFIG, stored, DAY, DAY, now=AFTER)
    assert patrol_summary(CONFIG, list(reversed(stored)), DAY, DAY, now=AFTER) == once


# --- the CLI ------------------------------------------------------------------------------------


def config_file(gateway: GatewayApp, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(f'site = "test"\ndatabase = "{gateway.config.database}"\n'
                    f'patrol_file = "{EXAMPLE}"\n', encoding="utf-8")
    return path


def test_the_cli_says_the_same_figures_as_the_summary(gateway: GatewayApp,
                                                      tmp_path: Path) -> None:
    assert gateway.patrols is not None
    config = config_file(gateway, tmp_path)
    done = CliRunner().invoke(patrol, ["report", "-c", str(config), "--day", str(DAY),
                                       "--json"])
    assert done.exit_code == 0, done.output
    said = json.loads(done.stdout)
    assert without_clock(said) == without_clock(summary_of(gateway.patrols).as_json())
    ranged = CliRunner().invoke(patrol, ["report", "-c", str(config), "--from", str(DAY),
                                         "--to", str(DAY + timedelta(days=1)), "--json"])
    assert ranged.exit_code == 0, ranged.output
    assert json.loads(ranged.stdout)["last"] == str(DAY + timedelta(days=1))

    text = CliRunner().invoke(patrol, ["report", "-c", str(config), "--day", str(DAY)])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"巡查 Patrols {DAY} (Asia/Shanghai)")
    li = next(line for line in lines if line.startswith("李明") and "b2-loop" in line)
    assert "未完成 missed" in li and "3/4 75%" in li and "b2-east" in li
    assert any("b1-pump→b2-west 10 s < 47 s" in line for line in lines)
    assert any("01:05 b1-booth cloned" in line for line in lines)


def test_cli_errors_name_what_is_wrong(gateway: GatewayApp, tmp_path: Path) -> None:
    config = config_file(gateway, tmp_path)
    both = CliRunner().invoke(patrol, ["report", "-c", str(config), "--day", str(DAY),
                                       "--from", str(DAY), "--to", str(DAY)])
    assert both.exit_code == 2 and "error: give --day or --from/--to" in both.stderr
    half = CliRunner().invoke(patrol, ["report", "-c", str(config), "--from", str(DAY)])
    assert half.exit_code == 2 and "--from and --to go together" in half.stderr
    bare = tmp_path / "bare.toml"
    bare.write_text(f'site = "test"\ndatabase = "{tmp_path / "none.db"}"\n', encoding="utf-8")
    none = CliRunner().invoke(patrol, ["report", "-c", str(bare)])
    assert none.exit_code == 1 and "no patrol_file" in none.stderr
    gone = tmp_path / "gone.toml"
    gone.write_text(f'site = "test"\ndatabase = "{tmp_path / "none.db"}"\n'
                    f'patrol_file = "{EXAMPLE}"\n', encoding="utf-8")
    missing = CliRunner().invoke(patrol, ["report", "-c", str(gone)])
    assert missing.exit_code == 2 and "none.db: no such database file" in missing.stderr


def test_a_table_pads_chinese_as_two_columns() -> None:
    assert table(("名 name", "n"), [("王强", "1"), ("ab", "22")]).splitlines() == [
        "名 name  n", "王强     1", "ab       22"]


# --- the page and its API ----------------------------------------------------------------------


@pytest.fixture
def client(gateway: GatewayApp) -> Iterator[TestClient]:
    add_people(gateway)
    with TestClient(create_web_app(gateway, settings=WebSettings(),
                                   clock=ManualClock(AFTER))) as test_client:
        yield test_client


def test_the_api_says_what_the_cli_says_and_only_seniors_see_it(
        gateway: GatewayApp, client: TestClient, tmp_path: Path) -> None:
    assert login(client, "gina") == 303
    assert client.get("/api/patrols").status_code == 403
    assert client.get("/patrols").status_code == 403
    client.cookies.clear()
    assert login(client, "sam") == 303
    api = client.get(f"/api/patrols?day={DAY}").json()
    done = CliRunner().invoke(patrol, ["report", "-c", str(config_file(gateway, tmp_path)),
                                       "--day", str(DAY), "--json"])
    assert without_clock(api) == without_clock(json.loads(done.stdout))
    page = client.get(f"/patrols?day={DAY}")
    assert page.status_code == 200 and 'href="/patrols"' in page.text
    assert "3/4 · 75%" in page.text and "B2 east ramp 东坡道" in page.text
    assert client.get("/patrols?day=yesterday").status_code == 400


def test_without_a_patrol_file_the_page_says_so(tmp_path: Path) -> None:
    config = GatewayConfig(site="test", database=tmp_path / "gateway.db",
                           broker=BrokerSettings(host="127.0.0.1", port=1))
    app = GatewayApp(config, clock=ManualClock(AFTER))
    try:
        add_people(app)
        with TestClient(create_web_app(app, settings=WebSettings())) as web:
            assert login(web, "max") == 303
            assert "Patrols are not configured" in web.get("/patrols").text
            assert web.get("/api/patrols").status_code == 404
    finally:
        app.store.close()
