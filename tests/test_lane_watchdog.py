"""The sd_notify watchdog the lane and the gateway share (``parkguard/systemd.py``), against a
fake datagram socket (and a real one). The gateway's use of it: tests/test_gateway_watchdog.py."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from parkguard.systemd import Notifier, Watchdog, watchdog_period_s


class FakeSocket:
    def __init__(self, sent: list[tuple[bytes, str]]) -> None:
        self.sent = sent

    def sendto(self, data: bytes, address: str) -> int:
        self.sent.append((data, address))
        return len(data)

    def __enter__(self) -> FakeSocket:
        return self

    def __exit__(self, *_exc: Any) -> None:
        return None


def fake(address: str | None) -> tuple[Notifier, list[tuple[bytes, str]]]:
    sent: list[tuple[bytes, str]] = []
    return Notifier(address, socket_factory=lambda: FakeSocket(sent)), sent  # type: ignore[arg-type,return-value]


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environment({})
    assert notifier.address is None and not notifier.notify("READY=1")
    assert watchdog_period_s({}) is None


def test_ready_then_pings_while_healthy_and_silence_when_not() -> None:
    notifier, sent = fake("/run/systemd/notify")
    healthy = [True]
    dog = Watchdog(notifier, None, lambda: healthy[0])
    dog.start(status="lane in1 running")
    assert sent[0] == (b"READY=1\nSTATUS=lane in1 running", "/run/systemd/notify")
    assert dog.ping_once() and sent[-1][0] == b"WATCHDOG=1"
    healthy[0] = False
    assert not dog.ping_once()
    assert [data for data, _ in sent].count(b"WATCHDOG=1") == 1
    dog.stop()
    assert sent[-1][0] == b"STOPPING=1"


def test_abstract_socket_names_and_the_period_from_systemd() -> None:
    notifier, sent = fake("@parkguard/notify")
    notifier.notify("WATCHDOG=1")
    assert sent == [(b"WATCHDOG=1", "\0parkguard/notify")]
    assert watchdog_period_s({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_period_s({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_period_s({"WATCHDOG_USEC": "junk"}) is None


def test_the_background_thread_pings_on_a_real_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        dog = Watchdog(Notifier(path), 0.01, lambda: True)
        dog.start()
        assert server.recv(256) == b"READY=1"
        assert server.recv(256) == b"WATCHDOG=1"
        dog.stop()
        assert dog.pings >= 1


def test_an_unhealthy_round_is_counted_and_sends_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        dog = Watchdog(Notifier(path), 0.01, lambda: False, what="test")
        dog.start()
        assert server.recv(256) == b"READY=1"
        dog.wait_rounds(3)
        dog.stop()
        assert dog.pings == 0 and dog.skipped >= 3
        assert server.recv(256) == b"STOPPING=1"  # no WATCHDOG=1 queued before it
