"""The gateway under systemd's watchdog (hardware/parkguard-gateway.service, ``Type=notify``):
``READY=1`` once it is connected and its worker serves, ``WATCHDOG=1`` only while the worker
goes round its loop (an idle one too), none once it is stuck in a job longer than the
staleness allowed, and ``STOPPING=1`` on a clean stop. A started gateway on a memory broker,
talking to a real datagram socket (an abstract one, so no path length limit)."""

from __future__ import annotations

import math
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.app import GatewayApp, gateway_client_id
from gateway.config import GatewayConfig
from gateway.runtime.inbox import Inbox
from gateway.runtime.liveness import Liveness
from parkguard.clock import ManualClock
from parkguard.configfile import BrokerSettings
from parkguard.systemd import Notifier, Watchdog
from wire.memory import MemoryBroker, MemoryBus

SITE = "test"
NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
PING = b"WATCHDOG=1"


class SystemdSocket:
    """systemd's end of ``NOTIFY_SOCKET``: every datagram the gateway sends, in order."""

    def __init__(self) -> None:
        self.name = f"parkguard-test-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.name)
        self._sock.settimeout(0.05)
        self._got = threading.Condition()
        self.received: list[bytes] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "@" + self.name

    def _read(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            with self._got:
                self.received.append(data)
                self._got.notify_all()

    def wait_for(self, condition: Callable[[list[bytes]], bool], timeout: float = 5.0) -> None:
        with self._got:
            assert self._got.wait_for(lambda: condition(self.received), timeout), self.received

    def pings(self) -> int:
        with self._got:
            return self.received.count(PING)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
        self._sock.close()


@pytest.fixture
def systemd() -> Iterator[SystemdSocket]:
    listener = SystemdSocket()
    yield listener
    listener.close()


@pytest.fixture
def start_gateway(memory: MemoryBroker,
                  tmp_path: Path) -> Iterator[Callable[[Liveness], GatewayApp]]:
    """Start a gateway on the memory broker with the given liveness; stopped at the end."""
    started: list[GatewayApp] = []

    def start(liveness: Liveness) -> GatewayApp:
        config = GatewayConfig(site=SITE, database=tmp_path / "gw.db",
                               broker=BrokerSettings(host="memory"))
        bus = MemoryBus(memory, client_id=gateway_client_id(SITE), persistent=True,
                        manual_ack=True)
        app = GatewayApp(config, clock=ManualClock(NOW), bus=bus, liveness=liveness)
        started.append(app.start())
        return app

    yield start
    for app in started:
        app.stop()


def dog_of(app: GatewayApp) -> Watchdog:
    assert app.watchdog is not None
    return app.watchdog


def hold_worker(app: GatewayApp) -> threading.Event:
    """Park the worker in an office job until the returned event is set: a wedged job."""
    release, parked = threading.Event(), threading.Event()

    def job() -> None:
        parked.set()
        release.wait(30)

    threading.Thread(target=app.service.call, args=(job,), kwargs={"timeout": 30},
                     daemon=True).start()
    assert parked.wait(5)
    return release


def test_a_started_gateway_says_ready_then_pings_and_stopping_at_a_clean_stop(
    systemd: SystemdSocket, start_gateway: Callable[[Liveness], GatewayApp],
) -> None:
    app = start_gateway(Liveness(Notifier(systemd.address), period_s=0.01))

    systemd.wait_for(lambda got: PING in got)
    ready = next(i for i, data in enumerate(systemd.received) if data.startswith(b"READY=1"))
    before = systemd.received[:ready]
    # on the way up only STATUS= lines (the broker, the replica snapshots), no ping
    assert before and all(data.startswith(b"STATUS=") for data in before)
    assert b"STATUS=gateway for site test: serving" in systemd.received[ready].split(b"\n")
    assert PING not in before

    app.stop()
    systemd.wait_for(lambda got: got[-1] == b"STOPPING=1")


def test_off_systemd_the_gateway_sends_nothing_and_runs_no_pinger(
    start_gateway: Callable[[Liveness], GatewayApp],
) -> None:
    app = start_gateway(Liveness.from_environment({}))
    assert app.liveness.notifier.address is None and app.liveness.period_s is None
    assert app.watchdog is not None and app.watchdog.rounds == 0
    assert app.service.healthy(app.liveness.stall_s)


def test_an_empty_inbox_hands_the_worker_idle_instead_of_holding_it() -> None:
    inbox = Inbox(idle_wake_s=0.01)
    taken: list[object] = []
    looking = threading.Thread(target=lambda: taken.append(inbox.next(limit=10)), daemon=True)
    looking.start()
    looking.join(timeout=5)  # returns at once when it works; bounded if it blocks for ever
    assert taken == [("idle", None)]
    inbox.stop()
    assert inbox.next(limit=10) == ("stop", None)


def test_an_idle_gateway_keeps_pinging_past_the_staleness(
    systemd: SystemdSocket, start_gateway: Callable[[Liveness], GatewayApp],
) -> None:
    # a staleness thirty idle wakes long: a busy 2-core machine may keep the worker thread
    # off a CPU for a while, never for that long
    period, stall = 0.05, 1.5
    app = start_gateway(Liveness(Notifier(systemd.address), period_s=period, stall_s=stall,
                                 idle_wake_s=0.05))
    dog = dog_of(app)
    # each round waits at least a period: these span three times the staleness, with an
    # empty inbox all along
    dog.wait_rounds(math.ceil(3 * stall / period), timeout=30)
    assert dog.skipped == 0 and dog.pings >= 3 * stall / period


def test_a_worker_stuck_in_a_job_past_the_staleness_stops_the_pings_until_it_is_free(
    systemd: SystemdSocket, start_gateway: Callable[[Liveness], GatewayApp],
) -> None:
    app = start_gateway(Liveness(Notifier(systemd.address), period_s=0.02, stall_s=0.3,
                                 idle_wake_s=0.05))
    dog = dog_of(app)
    systemd.wait_for(lambda got: PING in got)

    release = hold_worker(app)
    try:
        for _ in range(500):  # the staleness runs out while the job holds the worker
            if dog.skipped:
                break
            dog.wait_rounds(1)
        assert dog.skipped, "the pings never stopped"
        pings, skipped = dog.pings, dog.skipped
        dog.wait_rounds(5)
        assert dog.pings == pings and dog.skipped == skipped + 5
        systemd.wait_for(lambda got: got.count(PING) == pings)
        assert not app.service.healthy(app.liveness.stall_s)
    finally:
        release.set()

    systemd.wait_for(lambda got: got.count(PING) > pings)  # free again: the pings resume
    assert app.service.wait_idle()


def test_a_stop_whose_time_runs_out_under_a_busy_worker_leaves_the_store_open_under_it(
    systemd: SystemdSocket, start_gateway: Callable[[Liveness], GatewayApp],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closed under a worker still at work (a loaded machine, a long backlog), the store
    failed the worker's next write ("Cannot operate on a closed database", seen once in a
    loaded test run) and what it was finishing was lost."""
    app = start_gateway(Liveness(Notifier(systemd.address), period_s=0.02, stall_s=5.0,
                                 idle_wake_s=0.05))
    release = hold_worker(app)
    try:
        app.stop(timeout_s=0.05)
        assert "still busy" in caplog.text
        assert app.store.count("events") == 0  # still open: the worker can finish
    finally:
        release.set()
    assert app.service.stop()  # the job ended, and with it the worker
