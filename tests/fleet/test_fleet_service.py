"""``parkguard fleet run``: the durable consumer writes each event once into PostgreSQL, keeps
what it cannot read as a dead letter, and acknowledges only after its commit."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from fleet.postgres import PostgresServer
from fleet.rows import DeadLetter, Delivered, Rows, read
from fleet.schema import migrate
from fleet.stream import MQTT_PREFIX
from tests.fleet.conftest import Fleet, run, start_service
from tests.fleet.traffic import SiteTraffic

pytestmark = pytest.mark.integration


def wait_for(dsn: str, query: str, expected: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    got: object = None
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(query).fetchone()
            got = None if row is None else row[0]
        if got == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{query}: {got!r}, wanted {expected!r}")


def test_a_lane_event_reads_into_its_rows() -> None:
    payload = (b'{"v":1,"event_id":"north-out1-000002","seq":2,"ts":"2026-05-06T02:01:30.000Z",'
               b'"lane":"out1","type":"passed","direction":"exit","plate":"\xe7\xb2\xa4B00001",'
               b'"correlation_id":"cnorthout1000002","session_id":"north-s000001",'
               b'"fee_fen":100,"settled":"cash"}')
    rows = read(Delivered("parkguard.v1.north.lane.out1.event", payload, 7))
    assert isinstance(rows, Rows)
    assert rows.event.event_id == "north-out1-000002" and rows.event.stream_seq == 7
    assert rows.payment is not None and rows.payment.fee_fen == 100
    assert rows.session is not None and rows.session.direction == "exit"


def test_a_malformed_message_is_a_dead_letter_with_its_reason() -> None:
    dead = read(Delivered("parkguard.v1.north.lane.out1.event", b'{"v":1,"fee_fen":-5}', 9))
    assert isinstance(dead, DeadLetter) and "lane_event" in dead.reason
    stranger = read(Delivered("parkguard.v1.north.nowhere", b"{}", 10))
    assert isinstance(stranger, DeadLetter)


def test_events_land_once_even_when_sent_twice_and_the_service_is_killed(
        fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path) -> None:
    running = fleet("north")
    config = running.write_config(fleet_dsn)
    traffic = SiteTraffic("north", running.brokers["north"])
    service = start_service(config, tmp_path / "service.log")
    try:
        for _ in range(10):
            traffic.car()
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 20)

        async def resend_and_garbage() -> None:
            nc = await running.admin()
            js = nc.jetstream()
            # Into what the service reads: NATS's stored copies of MQTT publishes.
            subject = MQTT_PREFIX + "parkguard.v1.north.lane.out1.event"
            first = await js.get_last_msg("PARKGUARD", "parkguard.v1.north.lane.out1.event")
            await js.publish(subject, first.data or b"")  # a duplicate, later
            await js.publish(subject, b"not json")
            await nc.close()

        run(resend_and_garbage())
        wait_for(fleet_dsn, "SELECT count(*) FROM dead_letters", 1)
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        for _ in range(5):
            traffic.car()
        service = start_service(config, tmp_path / "service.log")
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 30)
        with psycopg.connect(fleet_dsn) as conn:
            total = conn.execute("SELECT coalesce(sum(fee_fen), 0) FROM payments").fetchone()
            sessions = conn.execute(
                "SELECT count(*) FROM sessions WHERE exited_at IS NOT NULL").fetchone()
        assert total is not None and total[0] == traffic.book_fen
        assert sessions == (15,)
    finally:
        traffic.close()
        service.send_signal(signal.SIGTERM)
        service.wait(15)


def test_the_service_waits_out_a_database_crash(fleet: Callable[..., Fleet],
                                                tmp_path: Path) -> None:
    running = fleet("north")
    traffic = SiteTraffic("north", running.brokers["north"])
    with PostgresServer() as database:
        migrate(database.dsn)
        service = start_service(running.write_config(database.dsn), tmp_path / "service.log")
        try:
            for _ in range(5):
                traffic.car()
            wait_for(database.dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 10)
            database.crash()
            for _ in range(5):  # consumed but not acknowledged while the database is away
                traffic.car()
            database.start()
            wait_for(database.dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 20)
            wait_for(database.dsn, "SELECT sum(fee_fen) FROM payments", traffic.book_fen)
        finally:
            traffic.close()
            service.send_signal(signal.SIGTERM)
            service.wait(15)
