"""The contract fuzz (issue 22, items 3 and 11): whatever the wire contract accepts can be
stored and shown; what it cannot store or show, it refuses with a reason naming the field.

* Bounds: integers are JSON integers within 2^53 (no strings, floats or bools), floats are
  finite JSON numbers, ``v`` is the integer 1, and every time lies in 2000-2099.
* The receiver's window: the gateway dead-letters a lane event or decide request stamped far
  ahead of or long before its clock, with the reason naming ``ts``.
* The property (hypothesis): a lane event the contract accepts round-trips through
  ``to_json``/``from_json``, is stored by the real gateway (on the in-memory broker, or
  directly by ``Gateway.ingest`` with no window: the defence-in-depth case of a record stored
  before the window existed), and every page that shows lane records answers without a 500.

``tests/security/fuzz_contract.py`` is the same contract under atheris (``make fuzz``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig
from gateway.web import WebSettings, create_web_app
from gateway.web.render import SiteTime
from parkguard.clock import ManualClock, utc_iso
from parkguard.configfile import BrokerSettings
from parkguard.errors import ContractError
from tests.security import fuzz_contract
from tests.test_web_auth import add_people, login
from wire.contract import messages as m
from wire.contract import topics
from wire.contract.examples import EXAMPLES
from wire.contract.window import ReceiptWindow
from wire.memory import MemoryBroker, MemoryBus

SITE = "fuzz-site"
NOW = datetime(2026, 5, 6, 2, 0, tzinfo=UTC)
MAX = m.MAX_INT


def _event(name: str, **changes: Any) -> str:
    return json.dumps({**EXAMPLES[name], **changes}, ensure_ascii=False)


# Bounds: what the consumers cannot hold is refused on the wire --------------------------


@pytest.mark.parametrize(("name", "field", "value"), [
    pytest.param("PlateRead", "seq", 2**63, id="seq-2^63-sqlite-cannot-store"),
    pytest.param("PlateRead", "seq", 2**64, id="seq-2^64"),
    pytest.param("PlateRead", "seq", MAX + 1, id="seq-2^53"),
    pytest.param("PlateRead", "seq", "999999999999999999999", id="seq-numeric-string"),
    pytest.param("PlateRead", "seq", "41", id="seq-small-numeric-string"),
    pytest.param("PlateRead", "seq", 41.0, id="seq-float"),
    pytest.param("PlateRead", "seq", True, id="seq-bool"),
    pytest.param("SensorReading", "seq", "99999999999999999999", id="sensor-seq-string"),
    pytest.param("SensorReading", "seq", 2**64, id="sensor-seq-2^64"),
    pytest.param("PlateRead", "v", True, id="v-true"),
    pytest.param("PlateRead", "v", 1.0, id="v-float"),
    pytest.param("PlateRead", "v", "1", id="v-string"),
    pytest.param("PlateRead", "read_ms", "inf", id="read_ms-inf-string"),
    pytest.param("PlateRead", "read_ms", "nan", id="read_ms-nan-string"),
    pytest.param("PlateRead", "read_ms", "12.5", id="read_ms-numeric-string"),
    pytest.param("PlateRead", "confidence", "0.5", id="confidence-numeric-string"),
    pytest.param("PlateRead", "char_confidences", ["nan"], id="char-confidence-nan"),
    pytest.param("PlateRead", "char_confidences", [0.9] * 17, id="char-confidences-17"),
    pytest.param("Decision", "wait_ms", "Infinity", id="wait_ms-infinity"),
    pytest.param("Decision", "fee_fen", MAX + 1, id="fee-above-2^53"),
    pytest.param("Tailgate", "vehicles", "3", id="vehicles-string"),
    pytest.param("LaneState", "online", "true", id="online-string"),
    pytest.param("LaneState", "online", 1, id="online-integer"),
    pytest.param("LaneState", "queue", 2**64, id="queue-2^64"),
    pytest.param("SensorReading", "water_level_mm", "35", id="level-string"),
    pytest.param("SensorReading", "pump_running", 0, id="pump-integer"),
    pytest.param("DecideRequest", "deadline_ms", "300", id="deadline-string"),
    pytest.param("CapacityState", "total", 2**64, id="capacity-2^64"),
    pytest.param("ReplicaSnapshot", "version", "118", id="snapshot-version-string"),
    pytest.param("LaneCommand", "args", {"hold_s": 2**64}, id="command-arg-2^64"),
    pytest.param("PlateRead", "ts", "9999-12-31T23:59:59.999Z", id="ts-year-9999"),
    pytest.param("PlateRead", "ts", "0001-01-01T00:00:00Z", id="ts-year-1"),
    pytest.param("PlateRead", "ts", "2100-01-01T00:00:00Z", id="ts-2100"),
    pytest.param("PlateRead", "ts", "1999-12-31T23:59:59.999Z", id="ts-1999"),
    pytest.param("LaneState", "ts", "9999-12-31T23:59:59.999Z", id="state-ts-9999"),
    pytest.param("PatrolTap", "reader_time", "9999-12-31T23:59:59", id="reader-time-9999"),
    pytest.param("PatrolTap", "reader_time", "0001-01-01T00:00:00", id="reader-time-year-1"),
])
def test_a_value_its_consumers_cannot_hold_is_refused_naming_the_field(
    name: str, field: str, value: Any
) -> None:
    with pytest.raises(ContractError, match=rf"\b{field}\b"):
        getattr(m, name).from_json(_event(name, **{field: value}))


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_json_numbers_are_refused(raw: str) -> None:
    payload = _event("PlateRead").replace('"read_ms": 38.5', f'"read_ms": {raw}')
    assert raw in payload
    with pytest.raises(ContractError, match="read_ms"):
        m.PlateRead.from_json(payload)


@pytest.mark.parametrize(("name", "field", "value"), [
    ("PlateRead", "seq", MAX), ("Decision", "fee_fen", MAX), ("PlateRead", "seq", 0),
    ("PlateRead", "ts", "2000-01-01T00:00:00.000Z"),
    ("PlateRead", "ts", "2099-12-31T23:59:59.999Z"),
    ("PlateRead", "confidence", 1), ("LaneCommand", "args", {"hold_s": -MAX, "ok": True}),
])
def test_the_edges_of_each_bound_are_accepted_and_round_trip(
    name: str, field: str, value: Any
) -> None:
    model = getattr(m, name)
    decoded = model.from_json(_event(name, **{field: value}))
    assert model.from_json(decoded.to_json()) == decoded
    assert json.loads(decoded.to_json())[field] == value


def test_v_2_is_still_refused_as_an_unknown_version() -> None:
    with pytest.raises(ContractError, match="v: Input should be 1"):
        m.PlateRead.from_json(_event("PlateRead", v=2))


# The receiver's window ---------------------------------------------------------------


@pytest.mark.parametrize(("offset", "says"), [
    (timedelta(minutes=11), "ahead of the receiver's clock"),
    (timedelta(days=365 * 70), "ahead of the receiver's clock"),
    (-timedelta(days=32), "older than the receiver's clock"),
])
def test_the_window_refuses_a_stamp_far_from_the_receivers_clock(
    offset: timedelta, says: str
) -> None:
    event = m.PlateRead.from_json(_event("PlateRead", ts=utc_iso(NOW + offset)))
    with pytest.raises(ContractError, match=rf"PlateRead: ts: .*{says}"):
        ReceiptWindow().check(event, NOW)


@pytest.mark.parametrize("offset", [timedelta(minutes=10), -timedelta(days=31), timedelta(0)])
def test_the_window_accepts_a_stamp_within_it(offset: timedelta) -> None:
    event = m.PlateRead.from_json(_event("PlateRead", ts=utc_iso(NOW + offset)))
    ReceiptWindow().check(event, NOW)


@pytest.mark.parametrize(("name", "field"), [("LaneCommand", "issued"),
                                              ("ReplicaSnapshot", "taken_at")])
def test_the_window_checks_the_stamp_of_messages_without_ts(name: str, field: str) -> None:
    value = getattr(m, name).model_validate(EXAMPLES[name])
    with pytest.raises(ContractError, match=rf"{name}: {field}: "):
        ReceiptWindow().check(value, datetime(2027, 1, 1, tzinfo=UTC))


def test_the_window_is_configured_and_refuses_nonsense() -> None:
    config = GatewayConfig.model_validate({"site": SITE, "receipt_window": {
        "max_age_hours": 48, "max_ahead_s": 30}})
    assert config.receipt_window.max_ahead == timedelta(seconds=30)
    with pytest.raises(ValueError, match="max_ahead_s"):
        GatewayConfig.model_validate({"site": SITE, "receipt_window": {"max_ahead_s": 0}})


# Site time never raises ---------------------------------------------------------------


@pytest.mark.parametrize(("stored", "zone"), [
    ("9999-12-31T23:59:59.999Z", "Asia/Shanghai"),
    ("0001-01-01T00:00:00.000Z", "America/New_York"),
    ("not a time", "Asia/Shanghai"),
])
def test_site_time_shows_an_unconvertible_stored_time_as_it_is(stored: str, zone: str) -> None:
    time = SiteTime(ManualClock(NOW), ZoneInfo(zone))
    assert time.local(stored) == stored
    assert time.hm(stored) == stored


# The gateway, its pages, and the property ----------------------------------------------


@dataclass
class World:
    """A started gateway on the in-memory broker, its dashboard, and lane in1's connection."""

    broker: MemoryBroker
    app: GatewayApp
    lane: MemoryBus
    web: TestClient

    def publish(self, topic: str, payload: bytes | str) -> None:
        self.lane.publish(topic, payload.encode() if isinstance(payload, str) else payload)
        self.broker.settle()
        assert self.app.service.wait_idle()
        self.broker.settle()

    def pages(self, plate: str | None) -> dict[str, int]:
        """The status of every page that shows lane records."""
        asks: list[tuple[str, dict[str, str]]] = [
            ("/lanes", {}), ("/api/lanes", {}), ("/sessions", {}), ("/api/sessions", {"q": "B1"})]
        if plate:
            asks += [("/api/bill", {"plate": plate}), ("/pay", {"plate": plate}),
                     ("/api/sessions", {"plate": plate}), ("/api/sessions", {"q": plate})]
        with self.app.store.reader() as db:
            asks += [(f"/sessions/{quote(row['session_id'], safe='')}", {})
                     for row in db.query("SELECT session_id FROM sessions")]
        statuses = {f"{path} {params}": self.web.get(path, params=params).status_code
                    for path, params in asks}
        for row in self.web.get("/api/lanes").json()["lanes"]:
            for read in row["reads"]:
                path = f"/lanes/reads/{read['event_id']}.svg"
                statuses[path] = self.web.get(path).status_code
        return statuses


@contextmanager
def world(tmp_path: Path) -> Iterator[World]:
    broker = MemoryBroker()
    config = GatewayConfig(site=SITE, database=tmp_path / "gw.db",
                           broker=BrokerSettings(host="memory"))
    bus = MemoryBus(broker, client_id=gateway_client_id(SITE), persistent=True,
                    manual_ack=True)
    try:
        with GatewayApp(config, clock=ManualClock(NOW), bus=bus) as app:
            lane = broker.bus("lane-in1")
            lane.start()
            add_people(app)
            with TestClient(create_web_app(app, settings=WebSettings())) as web:
                assert login(web, "max") == 303
                yield World(broker, app, lane, web)
    finally:
        broker.close()


def _no_500(statuses: dict[str, int]) -> None:
    broken = {path: status for path, status in statuses.items() if status >= 500}
    assert not broken, broken


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59.999Z", "2099-12-31T23:59:59.999Z",
                                   "2000-01-01T00:00:00.000Z"])
def test_a_lane_event_stamped_far_from_now_is_dead_lettered_naming_ts_and_pages_stay_up(
    tmp_path: Path, stamp: str
) -> None:
    """Issue 22 item 3: the probe's year-9999 read made six pages answer 500."""
    with world(tmp_path) as w:
        for name in ("PlateRead", "Passed"):
            w.publish(topics.lane_event(SITE, "in1"), _event(name, ts=stamp))
        with w.app.store.reader() as db:
            letters = [row["reason"] for row in db.query("SELECT reason FROM dead_letters")]
        assert len(letters) == 2 and all("ts: " in reason for reason in letters), letters
        assert w.app.store.count("events") == 0
        _no_500(w.pages("粤B12345"))


def test_a_decide_request_stamped_far_ahead_is_dead_lettered_not_answered(
    tmp_path: Path,
) -> None:
    with world(tmp_path) as w:
        replies: list[bytes] = []
        w.lane.subscribe(topics.lane_decide_reply(SITE, "in1"),
                         lambda _t, payload: replies.append(payload))
        ahead = _event("DecideRequest", lane="in1", ts=utc_iso(NOW + timedelta(days=400)))
        w.publish(topics.lane_decide(SITE, "in1"), ahead)
        with w.app.store.reader() as db:
            letters = [row["reason"] for row in db.query("SELECT reason FROM dead_letters")]
        assert replies == [] and len(letters) == 1 and "DecideRequest: ts: " in letters[0]


# What the property draws: a lane's entry (a read and a pass) with every field at any value
# the contract accepts.
_TEXT = st.text(st.characters(codec="utf-8"), max_size=16)  # utf-8: no lone surrogates
_TIMES = st.datetimes(min_value=m.EARLIEST.replace(tzinfo=None),
                      max_value=m.LATEST.replace(tzinfo=None) - timedelta(milliseconds=1),
                      timezones=st.just(UTC))
_NEAR = st.timedeltas(min_value=-timedelta(days=31), max_value=timedelta(minutes=10))


@st.composite
def entries(draw: Callable[..., Any], *, stamp: st.SearchStrategy[datetime]
            ) -> tuple[m.PlateRead, m.Passed]:
    """A plate read and the entry ``passed`` after it, every field drawn from the contract."""
    plate = draw(st.one_of(st.none(), _TEXT))
    ts = draw(stamp)
    number = draw(st.integers(0, MAX))
    ident = f"fz{number:016x}"
    read = m.PlateRead(
        event_id=f"{ident}-r", seq=draw(st.integers(0, MAX)), ts=ts, lane="in1", plate=plate,
        confidence=draw(st.floats(0, 1)),
        char_confidences=tuple(draw(st.lists(st.floats(0, 1), max_size=16))),
        reader=draw(_TEXT), read_ms=draw(st.floats(0, 3_600_000)))
    passed = m.Passed(
        event_id=f"{ident}-p", seq=draw(st.integers(0, MAX)), ts=ts, lane="in1",
        direction="entry", plate=plate, correlation_id=f"{ident}-c",
        session_id=draw(st.one_of(st.none(), st.text("abcdef0123456789-", min_size=1,
                                                     max_size=64))),
        fee_fen=draw(st.integers(0, MAX)))
    return read, passed


def _round_trips(*values: m.WireMessage) -> None:
    for value in values:
        assert type(value).from_json(value.to_json()) == value
        assert m.decode(topics.lane_event(SITE, "in1"), value.to_json()) == value


def test_anything_accepted_round_trips_is_stored_and_every_page_renders(tmp_path: Path) -> None:
    """Through the broker: the gateway's window admits the event (stamped near now) and the
    pages show it."""
    with world(tmp_path) as w:

        @settings(max_examples=20, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(entry=entries(stamp=_NEAR.map(lambda offset: NOW + offset)))
        def check(entry: tuple[m.PlateRead, m.Passed]) -> None:
            _round_trips(*entry)
            before = w.app.service.dead_letters
            for event in entry:
                w.publish(topics.lane_event(SITE, "in1"), event.to_json())
            assert w.app.service.dead_letters == before
            _no_500(w.pages(entry[1].plate))

        check()


def test_anything_accepted_stored_without_the_window_still_renders(tmp_path: Path) -> None:
    """Defence in depth: records stamped anywhere in the contract's range (as a database from
    before the window may hold) are shown, never a 500."""
    with world(tmp_path) as w:

        @settings(max_examples=20, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(entry=entries(stamp=_TIMES))
        def check(entry: tuple[m.PlateRead, m.Passed]) -> None:
            _round_trips(*entry)
            for event in entry:
                w.app.service.call(partial(w.app.service.ingest, event, NOW))
            _no_500(w.pages(entry[1].plate))

        check()


def test_a_year_9999_record_already_in_the_database_renders_on_every_page(
    tmp_path: Path,
) -> None:
    """The probe's read, as a database written before the contract bounded times holds it
    (built past the validators): the pages show it as stored instead of answering 500."""
    far = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    read = m.PlateRead.model_construct(
        **{**m.PlateRead.model_validate(EXAMPLES["PlateRead"]).__dict__, "ts": far})
    passed = m.Passed.model_construct(
        **{**m.Passed.model_validate(EXAMPLES["Passed"]).__dict__, "ts": far})
    with world(tmp_path) as w:
        for event in (read, passed):
            w.app.service.call(partial(w.app.service.ingest, event, NOW))
        assert w.app.store.count("events") == 2
        _no_500(w.pages("粤B12345"))


# The atheris target, driven by hypothesis (atheris itself is `make fuzz`) ----------------


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_the_fuzz_target_holds_for_arbitrary_bytes(data: bytes) -> None:
    fuzz_contract.check(data)


@settings(max_examples=300, deadline=None)
@given(topic=st.integers(0, len(fuzz_contract.TOPICS) - 1), rest=st.binary(min_size=16))
def test_the_fuzz_target_holds_for_examples_with_a_field_replaced(topic: int,
                                                                  rest: bytes) -> None:
    fuzz_contract.check(topic.to_bytes(2, "little") + b"\0\0" + rest)


def test_the_fuzz_target_holds_for_its_seeds() -> None:
    for seed in fuzz_contract.seeds():
        fuzz_contract.check(seed)


# Entries stamped by another clock, within the window's skew -------------------------------


def test_an_entry_stamped_a_little_after_the_gateways_now_is_billed_as_no_time_parked(
    tmp_path: Path,
) -> None:
    """Within ``max_ahead_s`` the window admits it; the bill must not be an exit before the
    entry (a TariffError, a 500 on /api/bill and the pay page)."""
    ahead = utc_iso(NOW + timedelta(minutes=5))
    with world(tmp_path) as w:
        w.publish(topics.lane_event(SITE, "in1"), _event("Passed", ts=ahead))
        assert w.app.service.dead_letters == 0
        bill = w.web.get("/api/bill", params={"plate": "粤B12345"})
        assert bill.status_code == 200 and bill.json()["fee_fen"] == 0
        _no_500(w.pages("粤B12345"))


def test_a_lane_prices_an_exit_alone_when_the_entry_is_stamped_after_its_now() -> None:
    """The entry came from another lane's clock through the gateway: a lane whose clock is
    30 s behind must let the car out for what it owes, not fail the exit."""
    from firmware.lane.replica import LaneReplica
    from gateway.money.pricing import EXAMPLE_TARIFF

    tariff = m.ReplicaTariff.of(EXAMPLE_TARIFF.read_text(encoding="utf-8"), source="test")
    snapshot = m.ReplicaSnapshot.model_validate({
        **EXAMPLES["ReplicaSnapshot"], "site": SITE, "tariff": tariff.model_dump(),
        "prepaid": []})
    replica = LaneReplica(site=SITE, lane="out1")
    assert replica.apply_snapshot(snapshot, persist=False) == "snapshot"
    entry = snapshot.sessions[0]
    verdict = replica.exit(entry.plate, (), entry.entry_at - timedelta(seconds=30))
    assert (verdict.action, verdict.fee_fen, verdict.session_id) == ("open", 0, entry.session_id)
