"""The cleaning schedule end to end (docs/patrols.md): the cleaner taps the cleaning points
with the handheld reader, the taps cross the real, locked-down Mosquitto (the patrol
reader's own credentials and ACL, tests/patrol_harness.py) to the gateway's side, which
stores them in a real SQLite file through the patrol desk; a task without taps is ticked as
the page does; the daily report shows the kind of day, the cleaning compliance and the
short-roster hours; a ticked task raises no overdue alert.

The reader here is a Python stand-in publishing exactly what the firmware does (one
``PatrolTap`` per tap with the checklist's answers); the firmware itself is tested against
the same broker in tests/test_patrol_reader.py.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.provision.generate import ProvisionResult
from broker.runner import MosquittoBroker
from gateway.patrols.cleaning import CleaningDesk, CleaningError, read_cleaning
from gateway.patrols.desk import PatrolDesk
from gateway.patrols.regime import load_site_regime
from gateway.records.audit import AuditLog
from gateway.records.reports import daily_summary, summary_csv
from gateway.storage.store import GatewayStore
from parkguard.clock import ManualClock
from parkguard.core.patrol import PatrolConfig, simulate_tap
from tests.patrol_harness import PATROL_SITE, READER, provision_patrol_site
from tests.test_cli_errors import parkguard
from wire.contract import topics
from wire.contract.messages import PatrolTap, decode
from wire.mqtt import MqttBus

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[1] / "docs/examples"
REGIME = load_site_regime(EXAMPLES / "patrols.toml", EXAMPLES / "tariff-mall.toml")
HOLIDAY = date(2026, 10, 2)  # National Day on the example tariff's calendar


def at(hour: int, minute: int = 0, day: date = HOLIDAY) -> datetime:
    return datetime.combine(day, time(hour, minute), REGIME.zone).astimezone(UTC)


@pytest.fixture(scope="module")
def patrol_site(tmp_path_factory: pytest.TempPathFactory) -> ProvisionResult:
    return provision_patrol_site(tmp_path_factory.mktemp("cleaning-site"))


@pytest.fixture
def broker(tmp_path: Path, patrol_site: ProvisionResult) -> Iterator[MosquittoBroker]:
    with MosquittoBroker(tmp_path / "mosquitto", site=patrol_site) as running:
        yield running


class Site:
    """The gateway's side: taps off the bus, ingested on one thread into a real SQLite file
    (as the gateway's worker does), on a manual clock; and the reader that sends them."""

    def __init__(self, broker: MosquittoBroker, db_path: Path, regime: PatrolConfig) -> None:
        self.clock = ManualClock(at(8))
        self.store = GatewayStore.open(db_path)
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.desk = PatrolDesk(self.store.db, config=regime, clock=self.clock,
                               raise_alert=lambda key, **f: self.alerts.append((key, f)))
        self.ingested: list[str] = []
        self._arrived: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._lock = threading.Lock()
        self.gateway = MqttBus(broker.address("monitor-watch1"), client_id="monitor-watch1",
                               persistent=True)
        self.gateway.subscribe(topics.all_patrol_taps(PATROL_SITE),
                               lambda topic, body: self._arrived.put((topic, body)))
        self.gateway.start()
        self.reader = MqttBus(broker.address(f"patrol-{READER}"), client_id=f"patrol-{READER}")
        self.reader.start()
        self.seq = 0
        self.counters = {c.id: 100 for c in regime.checkpoints}
        self.regime = regime

    def tap(self, checkpoint: str, badge: str, when: datetime,
            answers: dict[str, str] | None = None) -> None:
        """The reader taps ``checkpoint`` at ``when``; waits until the gateway stored it."""
        point = self.regime.checkpoint[checkpoint]
        assert point.key is not None
        self.counters[checkpoint] += 1
        self.seq += 1
        self.clock.set(when)
        tap = PatrolTap(reader=READER, seq=self.seq, tag_id=point.tag, badge=badge,
                        sun=simulate_tap(bytes.fromhex(point.key.get_secret_value()),
                                         point.tag, self.counters[checkpoint]),
                        reader_time=when.astimezone(self.regime.zone).replace(tzinfo=None),
                        answers=answers or {})
        self.reader.publish_and_wait(topics.patrol_tap(PATROL_SITE, READER), tap)
        topic, body = self._arrived.get(timeout=30)
        value = decode(topic, body)
        assert isinstance(value, PatrolTap) and value.seq == self.seq
        outcome = self.desk.ingest(value, self.clock.now())
        assert outcome.status == "accepted", outcome
        self.ingested.append(checkpoint)

    def close(self) -> None:
        self.reader.stop()
        self.gateway.stop()
        self.store.close()


@pytest.fixture
def site(broker: MosquittoBroker, tmp_path: Path) -> Iterator[Site]:
    running = Site(broker, tmp_path / "gateway.db", REGIME)
    try:
        yield running
    finally:
        running.close()


def cleaning_desk(site: Site) -> CleaningDesk:
    return CleaningDesk(site.store.db, config=site.regime, clock=site.clock,
                        audit=AuditLog(site.store.db, clock=site.clock))


def test_the_cleaner_taps_and_ticks_the_days_cleaning_and_the_report_counts_it(
        site: Site) -> None:
    # 09:00 the booth floor, 09:10 and 09:12 both barriers: taps with the checklist answered
    site.tap("b1-booth", "K001", at(9), {"floor_clean": "ok"})
    site.tap("b1-barrier-in", "K001", at(9, 10), {"barrier_clean": "ok"})
    site.tap("b1-barrier-out", "K001", at(9, 12), {"barrier_clean": "ok"})
    # a guard passing a cleaning point on his round answers nothing: no cleaning round
    site.tap("b1-booth", "G001", at(9, 30))

    # the booth exterior (weekly) was cleaned without the reader: ticked as the page does
    site.clock.set(at(10))
    desk = cleaning_desk(site)
    with pytest.raises(CleaningError, match="not answered: exterior_clean"):
        desk.tick("ma", "booth-exterior", {})
    with pytest.raises(CleaningError, match="not a cleaning task"):
        desk.tick("ma", "guard-round", {})
    with pytest.raises(CleaningError, match="not on the patrol roster"):
        desk.tick("nobody", "booth-exterior", {"exterior_clean": "ok"})
    ticked = desk.tick("ma", "booth-exterior", {"exterior_clean": "ok"}, note="擦了外墙")
    assert (ticked.status, ticked.tapped, ticked.ticked, ticked.by) == ("met", 0, 1, ("ma",))
    audit = list(site.store.db.query("SELECT actor, action, subject FROM audit_log "
                                     "WHERE action = 'cleaning.tick'"))
    assert audit == [{"actor": "cleaner:ma", "action": "cleaning.tick",
                      "subject": "cleaning:booth-exterior:2026-W40"}]

    # what the cleaner's page lists for her, as of 10:00
    mine = {t.obligation: t for t in read_cleaning(
        site.store.db, site.regime, HOLIDAY, HOLIDAY, now=site.clock.now(),
        person=site.regime.person["ma"])}
    assert set(mine) == {"lenses-signs", "booth-floor", "booth-walls", "booth-exterior",
                         "barrier-cleaning"}
    assert (mine["booth-floor"].status, mine["booth-floor"].tapped,
            mine["booth-floor"].by) == ("met", 1, ("ma",))
    assert mine["barrier-cleaning"].status == "met"
    assert mine["lenses-signs"].status == "pending"  # the week is not over
    assert site.regime.person["wang"].role == "guard"
    assert read_cleaning(site.store.db, site.regime, HOLIDAY, HOLIDAY, now=site.clock.now(),
                         person=site.regime.person["zhou"]) == []  # the captain cleans nothing

    # the next morning: the daily report of the holiday
    site.clock.set(at(0, 1, HOLIDAY + timedelta(days=1)))
    with site.store.reader() as db:
        summary = daily_summary(db, HOLIDAY, site.regime.zone, regime=site.regime,
                                now=site.clock.now())
    duties = summary.duties
    assert duties is not None and duties.day_kind == "holiday"
    statuses = {t.obligation: t.status for t in duties.cleaning}
    assert statuses == {"booth-floor": "met", "barrier-cleaning": "met", "booth-exterior": "met",
                        "lenses-signs": "pending", "booth-walls": "pending"}
    assert (duties.cleaning_done, duties.cleaning_due, duties.cleaning_pct) == (3, 3, 100)
    assert duties.short_rosters == ()  # the roving guards are rostered on holidays
    text = summary_csv(summary)
    assert "保洁 cleaning,完成 done,3" in text and "节假日 holiday" in text

    # the overdue check alerts the guards' missed rounds, never a cleaned task
    site.desk.check_overdue(site.clock.now())
    keys = [key for key, _fields in site.alerts]
    assert not any(key.startswith(("patrol:booth-floor", "patrol:barrier-cleaning"))
                   for key in keys)
    assert any(key.startswith("patrol:guard-round:qian") for key in keys)


def test_a_day_without_cleaning_shows_missed_and_a_short_roster_in_the_report(
        broker: MosquittoBroker, tmp_path: Path) -> None:
    short = REGIME.model_copy(update={"people": tuple(p for p in REGIME.people
                                                      if p.days is None)})
    site = Site(broker, tmp_path / "gateway.db", short)
    try:
        site.tap("b1-booth", "K001", at(9), {"floor_clean": "dirty bin 垃圾桶满"})
        site.clock.set(at(0, 1, HOLIDAY + timedelta(days=1)))
        with site.store.reader() as db:
            summary = daily_summary(db, HOLIDAY, short.zone, regime=short,
                                    now=site.clock.now())
        duties = summary.duties
        assert duties is not None
        floor = next(t for t in duties.cleaning if t.obligation == "booth-floor")
        assert floor.status == "met" and floor.faults == (
            "b1-booth: floor_clean = dirty bin 垃圾桶满",)
        barriers = next(t for t in duties.cleaning if t.obligation == "barrier-cleaning")
        assert barriers.status == "missed"
        assert (duties.cleaning_done, duties.cleaning_due) == (1, 2)
        assert [(g.hours, g.short) for g in duties.short_rosters] == [
            ("10:00–16:00", 1), ("16:00–22:00", 1)]
        assert "排班不足 short roster,10:00–16:00" in summary_csv(summary)
        site.desk.check_overdue(site.clock.now())
        assert any(key.startswith("patrol:barrier-cleaning") for key, _f in site.alerts)
    finally:
        site.close()


def test_a_cleaner_account_is_added_with_the_users_command(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'site = "test"\ndatabase = "{tmp_path / "gw.db"}"\n', encoding="utf-8")
    done = parkguard("users", "add", "-c", str(config), "ma", "--role", "cleaner",
                     "--password-stdin", stdin="a long secret word\n")
    assert done.returncode == 0, done.stderr
    assert "added ma (cleaner)" in done.stdout
    listed = parkguard("users", "list", "-c", str(config))
    assert "ma\tcleaner" in listed.stdout
