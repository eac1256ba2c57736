"""``parkguard fleet run``: the durable consumer writes each event once into PostgreSQL, keeps
what it cannot read as a dead letter, and acknowledges only after its commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from fleet.postgres import PostgresServer
from fleet.rows import DeadLetter, Delivered, Rows, read
from fleet.schema import migrate
from fleet.service import stream_seq
from fleet.stream import MQTT_PREFIX, MQTT_STREAM
from tests.fleet.conftest import REPO, Fleet, run, start_service
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


def test_the_stream_sequence_is_read_from_the_reply_as_nats_py_reads_it(
        fleet: Callable[..., Fleet]) -> None:
    """The service reads each message's stream sequence from its reply subject itself (not
    ``Msg.metadata``, which parses every field): the same number for what JetStream really
    delivers, nats-py's answer for a domain's longer reply, and a reply that is not
    JetStream's refused as nats-py refuses it."""
    running = fleet()

    async def delivered() -> list[Msg]:
        nc = await running.admin()
        js = nc.jetstream()
        subject = MQTT_PREFIX + "parkguard.v1.north.lane.out1.event"
        for n in range(8):  # another site's first: stream and consumer sequences differ
            await js.publish(subject.replace("north", "south") if n < 3 else subject,
                             b"%d" % n)
        sub = await js.pull_subscribe(subject, durable="seq-probe", stream=MQTT_STREAM)
        got = await sub.fetch(5, timeout=10)
        await nc.close()
        return got

    messages = run(delivered())
    assert len(messages) == 5
    assert [stream_seq(m) for m in messages] == [m.metadata.sequence.stream for m in messages]
    assert [stream_seq(m) for m in messages] == [4, 5, 6, 7, 8]
    domain = Msg(None, subject="x", data=b"",  # type: ignore[arg-type]
                 reply="$JS.ACK.hub.ACCHASH.PARKGUARD.fleet.1.4242.17.1733600000000000000.3.x")
    assert stream_seq(domain) == domain.metadata.sequence.stream == 4242
    with pytest.raises(NotJSMessageError):
        stream_seq(Msg(None, subject="x", reply="_INBOX.abc", data=b""))  # type: ignore[arg-type]


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


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (the machine's init may be slow to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _writers(service: int) -> list[int]:
    """The service's writer processes (multiprocessing's spawned children of it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if ppid == service and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_the_writer_process_leaves_when_its_service_is_killed() -> None:
    """A SIGKILLed service cannot stop its writer process, which would otherwise wait on
    forever (its pool's pipes stay open in itself): it leaves on its own."""
    code = ("import os, time\nfrom fleet.service import _writer_pool\npool = _writer_pool()\n"
            "print(pool.submit(os.getpid).result(), flush=True)\ntime.sleep(300)")
    service = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO)
    assert service.stdout is not None
    worker = int(service.stdout.readline())
    assert not _gone(worker)
    service.kill()
    service.wait(10)
    deadline = time.monotonic() + 15
    while not _gone(worker):
        assert time.monotonic() < deadline, f"writer {worker} outlived its service"
        time.sleep(0.1)


def test_a_writer_process_that_dies_is_replaced_and_nothing_is_lost(
        fleet: Callable[..., Fleet], fleet_dsn: str, tmp_path: Path) -> None:
    running = fleet("north")
    traffic = SiteTraffic("north", running.brokers["north"])
    log = tmp_path / "service.log"
    service = start_service(running.write_config(fleet_dsn), log)
    try:
        for _ in range(5):
            traffic.car()
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 10)
        writers = _writers(service.pid)
        assert len(writers) == 1, writers
        os.kill(writers[0], signal.SIGKILL)
        for _ in range(5):
            traffic.car()
        wait_for(fleet_dsn, "SELECT count(*) FROM events WHERE kind = 'lane_event'", 20)
        wait_for(fleet_dsn, "SELECT sum(fee_fen) FROM payments", traffic.book_fen)
        assert service.poll() is None
        assert "the writer process died" in log.read_text()
        replaced = _writers(service.pid)
        assert len(replaced) == 1 and replaced != writers
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
