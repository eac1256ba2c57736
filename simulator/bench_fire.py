"""``make bench``: the life-safety chain — a fire contact on the fire node → every lane's
barrier up, and → the first alert message delivered — beside the bare MQTT ping-pong.

On a private Mosquitto (TLS, per-device users, ACLs) started for the run:

1. **baseline** — the bare paho QoS 1 request/response with ``TCP_NODELAY`` of
   :mod:`simulator.bench` (lane in1 ↔ gateway): what one MQTT round trip costs here.
2. **fire contact → every barrier up** — the real fire-node firmware on the MicroPython unix
   port (``simulator/sensor_node.py``: the same ``micropython`` binary and ``machine`` shim the
   tests use) and :class:`~simulator.site.SimulatedLanes` on mock pins. The clock starts when
   the fire loop's ADC value changes (``sim.json`` rewritten) and stops when the *last* lane's
   relay pin is on. It includes the node's debounce (``--debounce-ms``, 50 ms as in
   ``config.fire.example.json``) and its main-loop period (10 ms): the floor is the debounce.
   The lanes act on the node's own retained ``alarm/fire``; the gateway is not in that path.
3. **fire contact → first alert delivered** — a running :class:`~gateway.app.GatewayApp`
   with a safety file whose one person has a ``json://`` contact: a local HTTP receiver in
   this process stops the clock when the first POST arrives (reading → alarm monitor →
   alert desk → courier → Apprise → HTTP).

Between runs the panel goes back to normal and the gateway's authorised reset
(``AlarmMonitor.reset_fire``) clears the alarm, so every run is a fresh fire. The first
``--warmup`` runs (default 2) are thrown away: they pay for Apprise's imports and the first
connections. ``tests/test_bench_fire.py`` runs it with tiny numbers; no speed targets there.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rich.console import Console

from broker.runner import MosquittoBroker
from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from parkguard.clock import ManualClock, SystemClock
from simulator.bench import (
    BASELINE_RR,
    SITE,
    BenchError,
    BenchRow,
    compared,
    describe,
    report_console,
    request_response,
    run_and_report,
)
from simulator.provisioned import provision_simulated_site
from simulator.site import SimulatedLanes, settings_of

DEFAULT_RUNS = 50
WARMUP = 2
DEFAULT_DEBOUNCE_MS = 50
ENTRIES = ("in1", "in2")
EXITS = ("out1", "out2")
_TIMEOUT_S = 10.0

FIRE_BARRIERS = "fire contact → every barrier up"
FIRE_ALERT = "fire contact → first alert at the webhook"

_SAFETY = """
[alerts]
timezone = "Asia/Shanghai"
shifts = [{{ name = "a", start = 00:00:00 }}]

[[alerts.people]]
id = "boss"
name = "Bench manager"
role = "manager"
contacts = {{ hook = "json://127.0.0.1:{port}/alert" }}
"""


class _Receiver(BaseHTTPRequestHandler):
    """The JSON webhook channel: notes when each POST arrived."""

    arrivals: list[float] = []  # noqa: RUF012 - one receiver per run, reset by the bench
    lock = threading.Lock()

    def do_POST(self) -> None:
        arrived = time.perf_counter()
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            self.arrivals.append(arrived)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@contextmanager
def _webhook() -> Iterator[ThreadingHTTPServer]:
    _Receiver.arrivals = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, name="bench-webhook", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _wait(condition: Any, what: str, timeout: float = _TIMEOUT_S) -> float:
    """Spin until ``condition()``; return ``perf_counter()`` when it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.0005)
    return time.perf_counter()


def _more_than(count: int) -> bool:
    with _Receiver.lock:
        return len(_Receiver.arrivals) > count


@dataclass(frozen=True, slots=True)
class FireRuns:
    barriers_ms: list[float]
    alert_ms: list[float]


def fire_runs(broker: MosquittoBroker, workdir: Path, *, runs: int, warmup: int,
              debounce_ms: int, console: Console | None = None) -> FireRuns:
    """``warmup + runs`` fires on the real node; the last ``runs`` measured."""
    from simulator.sensor_node import (  # the tests' harness: the same node the tests run
        LOOP_ACTIVE,
        LOOP_NORMAL,
        SensorNode,
        fire_panel_config,
        fire_panel_inputs,
        loop_key,
    )

    barriers: list[float] = []
    alerts: list[float] = []
    with ExitStack() as stack:
        hook = stack.enter_context(_webhook())
        workdir.mkdir(parents=True, exist_ok=True)
        safety = workdir / "safety.toml"
        safety.write_text(_SAFETY.format(port=hook.server_port), encoding="utf-8")
        config = GatewayConfig(site=SITE, database=workdir / "gateway.db",
                               broker=settings_of(broker.address("gateway")),
                               safety_file=safety, sensors={"fire1": "fire_panel"})
        gateway = stack.enter_context(GatewayApp(config, clock=SystemClock()))
        alarms = gateway.alarms
        if alarms is None:
            raise BenchError("the gateway did not load its safety file")
        lanes = stack.enter_context(SimulatedLanes(
            site=SITE, broker=broker.address, clock=ManualClock(datetime.now(UTC)),
            entry_lanes=ENTRIES, exit_lanes=EXITS, workdir=workdir / "lanes"))
        node_config = fire_panel_config(site=SITE, loop_ms=10)
        node_config["fire_panel"]["debounce_ms"] = debounce_ms
        node = stack.enter_context(SensorNode(broker, workdir / "fire1", node_config,
                                              fire_panel_inputs()))
        pins = [lane.wiring.relay for lane in lanes.lanes.values()]

        def panel_normal() -> bool:
            return gateway.service.call(alarms.panel_reports_fire) is False

        _wait(panel_normal, "the fire node's first reading at the gateway", timeout=20)
        _wait(lambda: all(x.node.bus.connected.is_set() for x in lanes.lanes.values()),
              "every lane on the broker")
        for index in range(warmup + runs):
            seen = len(_Receiver.arrivals)
            started = time.perf_counter()
            node.set(**{loop_key("b2-east"): LOOP_ACTIVE})
            up = _wait(lambda: all(pin.state for pin in pins), "every barrier up")
            _wait(partial(_more_than, seen), "the first alert at the webhook")
            if index >= warmup:
                barriers.append((up - started) * 1000)
                alerts.append((_Receiver.arrivals[seen] - started) * 1000)
            # The lanes and the alert may follow the node's retained alarm before the gateway
            # has the fire reading itself: wait for it, or "normal" below would be stale.
            _wait(lambda: gateway.service.call(alarms.panel_reports_fire) is True,
                  "the fire reading at the gateway")
            node.set(**{loop_key("b2-east"): LOOP_NORMAL})
            _wait(panel_normal, "the panel back to normal at the gateway")
            gateway.service.call(lambda i=index: alarms.reset_fire(  # type: ignore[misc]
                "staff:boss", f"bench run {i}: drill over"))
            _wait(lambda: not any(pin.state for pin in pins), "every barrier down")
            if console is not None and (index + 1) % 10 == 0:
                console.print(f"  {index + 1}/{warmup + runs} fires", highlight=False)
    return FireRuns(barriers, alerts)


def run_bench_fire(runs: int, workdir: Path, *, warmup: int = WARMUP,
                   debounce_ms: int = DEFAULT_DEBOUNCE_MS,
                   console: Console | None = None) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir`` and measure the baseline and both fire rows."""
    if runs < 1:
        raise ValueError("need at least one run")
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        site = provision_simulated_site(workdir / "pki", SITE, entry_lanes=ENTRIES,
                                        exit_lanes=EXITS)
        broker = stack.enter_context(MosquittoBroker(workdir / "broker", site=site))
        if console is not None:
            console.print(f"broker: private mosquitto with TLS and ACLs on {broker.host}:"
                          f"{broker.port}")
        baseline = describe(BASELINE_RR, "latency", request_response(
            broker.address, requests=max(runs, 20), warmup=20, nodelay=True))
        measured = fire_runs(broker, workdir / "site", runs=runs, warmup=warmup,
                             debounce_ms=debounce_ms, console=console)
    lanes = len(ENTRIES) + len(EXITS)
    return [
        baseline,
        compared(describe(FIRE_BARRIERS, "latency", measured.barriers_ms,
                          note=f"{lanes} lanes, no gateway in the path; includes the node's "
                               f"{debounce_ms} ms debounce and 10 ms loop"), baseline),
        compared(describe(FIRE_ALERT, "latency", measured.alert_ms,
                          note="reading → gateway alarm → alert desk → Apprise json:// → "
                               "local HTTP receiver"), baseline),
    ]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.bench_fire",
        description="Fire contact on the real fire-node firmware → every barrier up and → the "
                    "first alert delivered, beside the bare MQTT ping-pong.")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N",
                        help="fires measured (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=WARMUP, metavar="K",
                        help="fires thrown away first (default %(default)s)")
    parser.add_argument("--debounce-ms", type=int, default=DEFAULT_DEBOUNCE_MS, metavar="MS",
                        help="the fire node's loop debounce (default %(default)s)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the broker, node and SQLite files here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.debounce_ms < 0:
        parser.error("--runs must be ≥ 1, --warmup and --debounce-ms ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL + 1)  # a hundred FIRE logs: keep the table clean
    console = report_console()
    rows = run_and_report(
        lambda workdir: run_bench_fire(args.runs, workdir, warmup=args.warmup,
                                       debounce_ms=args.debounce_ms, console=console),
        workdir=args.workdir, prefix="pg-fire-", console=console,
        title=lambda wall: f"ParkGuard fire bench — {args.runs} fires, warm-up {args.warmup}, "
                           f"{wall:.0f} s")
    return 0 if rows is not None else 1

if __name__ == "__main__":
    raise SystemExit(main())
