"""``make bench``: the life-safety chain — a fire contact on the fire node → every lane's
barrier up, and → the first alert message delivered — beside the bare MQTT ping-pong.

On a private Mosquitto (TLS, per-device users, ACLs) started for the run:

1. **baseline** — the bare paho QoS 1 request/response with ``TCP_NODELAY`` of
   :mod:`simulator.bench` (lane in1 ↔ gateway): what one MQTT round trip costs here.
2. **fire contact → every barrier up** — the real fire-node firmware on the MicroPython unix
   port (``simulator/sensor_node.py``: the same ``micropython`` binary and ``machine`` shim the
   tests use) and four lanes on mock pins (``--setup`` below). The clock starts when
   the fire loop's ADC value changes (``sim.json`` rewritten) and stops when the *last* lane's
   relay pin is on, as that pin stamped its change (``time.monotonic``, in either setup). The
   lanes act on the node's own retained ``alarm/fire``; the gateway is not
   in that path. Two fire nodes run side by side, fired in turn, so both rows share the run's
   load: ``fire1`` as the firmware ran before issue 23 (polled every 10 ms, a 50 ms debounce
   sampled at the loop period: the *before* rows) and ``fire2`` as it runs now (a comparator
   wake line per fire loop interrupting the main loop's wait, the loop sampled every 1 ms until
   ``--debounce-ms`` of agreeing samples confirm it).
3. **fire contact → first alert delivered** — a running :class:`~gateway.app.GatewayApp`
   with a safety file whose one person has a ``json://`` contact: a local HTTP receiver in
   this process stops the clock when the first POST arrives (reading → alarm monitor →
   alert desk → courier → Apprise → HTTP).

**How the processes run** (``--setup``, printed above the table, and in the barrier row's
note, so a figure is never taken for another setup's):

- ``site`` (the default, what a site runs): each fire node stands for its own Pico W, a
  microcontroller nobody shares, so its MicroPython process runs at ``SCHED_FIFO``
  :data:`NODE_RT_PRIORITY`; Mosquitto with the priority of its unit on the gateway box
  (``hardware/mosquitto-parkguard.conf``); each lane a process of its own (one Raspberry Pi
  each on a site: :mod:`simulator.fire_lanes`) with the priority of
  ``hardware/parkguard-lane.service``; and the bench's own process, which holds the gateway,
  with the priority of ``hardware/parkguard-gateway.service``. The webhook receiver (standing
  for the remote push service) and the bench's loops (standing for the physical contact) are
  threads of that process, so they get it too. It is set once every child process is started
  (Mosquitto, ``--load``, lanes, nodes: a child would inherit it) and put back when the fires
  are over.
- ``shared`` (as the bench ran before): the four lanes, the gateway and the bench in one
  process; node, Mosquitto, lanes and gateway at the default priority (nice 0,
  ``SCHED_OTHER``).

A priority that cannot be set (not root, no ``CAP_SYS_NICE``) is printed as ``NOT SET`` with
the reason, and the run goes on at the default.

Between runs the panel goes back to normal and the gateway's authorised reset
(``AlarmMonitor.reset_fire``) clears the alarm, so every run is a fresh fire. The first
``--warmup`` runs of each node (default 2) are thrown away: they pay for Apprise's imports and
the first connections. ``tests/test_bench_fire.py`` runs it with tiny numbers; no speed
targets there.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from broker.provision.generate import provision_site
from broker.provision.inventory import SensorSpec, SiteInventory
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
from simulator.fire_lanes import LaneProcesses
from simulator.priority import DEFAULT, UnitPriority, apply_unit, read_unit, realtime, running
from simulator.provisioned import simulated_inventory
from simulator.site import SimulatedLanes, settings_of

DEFAULT_RUNS = 50
WARMUP = 2
DEFAULT_DEBOUNCE_MS = 20
"""The fire node's confirmation window now (``fire_panel.debounce_ms`` of the firmware)."""
BEFORE_DEBOUNCE_MS = 50
BEFORE_LOOP_MS = 10
ENTRIES = ("in1", "in2")
EXITS = ("out1", "out2")
NODES = ("fire1", "fire2")
"""``fire1`` runs the firmware as configured before issue 23, ``fire2`` as it is now."""
HARDWARE = Path(__file__).resolve().parent.parent / "hardware"
LANE_UNIT = HARDWARE / "parkguard-lane.service"
BROKER_UNIT = HARDWARE / "mosquitto-parkguard.conf"
GATEWAY_UNIT = HARDWARE / "parkguard-gateway.service"
BENCH_PROCESS = "the gateway, the webhook receiver and the bench's loops: "
"""How the ``bench`` line of "how each process ran" starts."""
NODE_RT_PRIORITY = 60
"""``SCHED_FIFO`` priority of a fire node's process in the ``site`` setup, once it has booted:
above everything else of the bench (Mosquitto 50, lanes 40, the gateway 30 by their units),
as a microcontroller of its own is never preempted by a Pi's or a test run's work."""
Setup = Literal["site", "shared"]
SETUPS: tuple[Setup, ...] = ("site", "shared")
_TIMEOUT_S = 10.0

FIRE_BARRIERS = "fire contact → every barrier up"
FIRE_ALERT = "fire contact → first alert at the webhook"
FIRE_BARRIERS_BEFORE = "  before: polled 10 ms, 50 ms debounce"
FIRE_ALERT_BEFORE = "  before: polled 10 ms, 50 ms debounce "
FIRE_NODE = "  of which the node: contact → alarm/fire sent"
FIRE_NODE_BEFORE = "    before: polled 10 ms, 50 ms debounce"

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
    node_ms: list[float]
    """Contact → the node wrote its alarm/fire to the socket, on the node's clock."""


_TICKS_PERIOD = 1 << 30
"""MicroPython's ``ticks_ms`` wraps here; on the unix port it is CLOCK_MONOTONIC in ms, the
clock of :func:`time.monotonic`, so the node's console can be read against this process."""
_SENT = re.compile(r"^alarm fire sent (\d+) ", re.MULTILINE)


def _node_sent_ms(console: str, seen: int, started_monotonic: float) -> float:
    """Milliseconds from ``started_monotonic`` to the node's next "alarm fire sent" line."""
    found = _SENT.findall(console)
    if len(found) <= seen:
        raise BenchError("the fire node did not log its alarm being sent")
    start = int(started_monotonic * 1000) % _TICKS_PERIOD
    return float((int(found[seen]) - start) % _TICKS_PERIOD)


def node_configs(debounce_ms: int) -> dict[str, dict[str, Any]]:
    """The two fire nodes: ``fire1`` as before issue 23, ``fire2`` as now."""
    from simulator.sensor_node import fire_panel_config

    before = fire_panel_config(node="fire1", site=SITE, loop_ms=BEFORE_LOOP_MS, wake=False)
    before["fire_panel"].update(debounce_ms=BEFORE_DEBOUNCE_MS, sample_ms=BEFORE_LOOP_MS,
                                confirm_samples=1)
    now = fire_panel_config(node="fire2", site=SITE, loop_ms=BEFORE_LOOP_MS)
    now["fire_panel"]["debounce_ms"] = debounce_ms
    return {"fire1": before, "fire2": now}


def bench_inventory() -> SiteInventory:
    """The simulated site with a second fire node (the bench's *now* firmware)."""
    inventory = simulated_inventory(SITE, entry_lanes=ENTRIES, exit_lanes=EXITS)
    return inventory.model_copy(update={"sensors": (
        *inventory.sensors, SensorSpec(id="fire2", kind="fire_panel"))})


class _SharedLanes:
    """The ``shared`` setup's lanes: in this process, as :class:`LaneProcesses` is used."""

    def __init__(self, lanes: SimulatedLanes) -> None:
        self._lanes = lanes
        self._pins = [lane.wiring.relay for lane in lanes.lanes.values()]

    def up(self) -> bool:
        return all(pin.state for pin in self._pins)

    def down(self) -> bool:
        return not any(pin.state for pin in self._pins)

    def last_up_s(self) -> float:
        # gpiozero's MockPin stamps each change with time.monotonic(), as the lane processes
        # do theirs: both setups are timed the same way.
        return max(float(pin._last_change) for pin in self._pins)

    def wait_idle(self, timeout: float) -> None:
        for lane in self._lanes.lanes.values():
            lane.node.controller.wait_idle(timeout=timeout)


@contextmanager
def _as_the_gateway_unit() -> Iterator[str]:
    """Run this process (every thread; threads started later inherit) as the gateway's unit
    runs the gateway, and yield what it now runs with. On leaving, every thread goes back to
    the policy the process had, so a test run that called the bench carries on at the
    default and its later children do not inherit a real-time policy."""
    pid = os.getpid()
    policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    try:
        yield apply_unit(pid, read_unit(GATEWAY_UNIT, name="hardware/parkguard-gateway.service"))
    finally:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setscheduler(int(tid), policy, param)
            except OSError:  # the thread ended meanwhile, or nothing was set
                pass


def _node_priority(setup: Setup) -> UnitPriority:
    return (realtime(NODE_RT_PRIORITY, "the bench: the node stands for its own microcontroller")
            if setup == "site" else DEFAULT)


def fire_runs(broker: MosquittoBroker, workdir: Path, *, runs: int, warmup: int,
              debounce_ms: int, setup: Setup = "site", console: Console | None = None,
              processes: dict[str, str] | None = None) -> dict[str, FireRuns]:
    """``warmup + runs`` fires on each real node, in turn; the last ``runs`` of each measured.
    ``processes`` collects how each process ran (``--setup``)."""
    ran = processes if processes is not None else {}
    from simulator.sensor_node import (  # the tests' harness: the same node the tests run
        LOOP_ACTIVE,
        LOOP_NORMAL,
        SensorNode,
        fire_panel_inputs,
        loop_key,
    )

    measured = {node: FireRuns([], [], []) for node in NODES}
    with ExitStack() as stack:
        hook = stack.enter_context(_webhook())
        workdir.mkdir(parents=True, exist_ok=True)
        safety = workdir / "safety.toml"
        safety.write_text(_SAFETY.format(port=hook.server_port), encoding="utf-8")
        config = GatewayConfig(site=SITE, database=workdir / "gateway.db",
                               broker=settings_of(broker.address("gateway")),
                               safety_file=safety, sensors=dict.fromkeys(NODES, "fire_panel"))
        gateway = stack.enter_context(GatewayApp(config, clock=SystemClock()))
        alarms = gateway.alarms
        if alarms is None:
            raise BenchError("the gateway did not load its safety file")
        lanes: _SharedLanes | LaneProcesses
        if setup == "site":
            procs = LaneProcesses(site=SITE, broker=broker.address,
                                  roles=[*((x, "entry") for x in ENTRIES),
                                         *((x, "exit") for x in EXITS)],
                                  workdir=workdir / "lanes", priority=read_unit(
                                      LANE_UNIT, name="hardware/parkguard-lane.service"))
            stack.callback(procs.stop)
            lanes = procs
            ran.update({f"lane {lane}": f"a process of its own, {how}"
                        for lane, how in procs.priorities.items()})
        else:
            shared = stack.enter_context(SimulatedLanes(
                site=SITE, broker=broker.address, clock=ManualClock(datetime.now(UTC)),
                entry_lanes=ENTRIES, exit_lanes=EXITS, workdir=workdir / "lanes"))
            _wait(lambda: all(x.node.bus.connected.is_set() for x in shared.lanes.values()),
                  "every lane on the broker")
            lanes = _SharedLanes(shared)
            ran["lanes"] = (f"{len(shared.lanes)} lanes in the bench's process, "
                            f"{running(os.getpid())}")
        nodes = {name: stack.enter_context(SensorNode(broker, workdir / name, cfg,
                                                      fire_panel_inputs()))
                 for name, cfg in node_configs(debounce_ms).items()}

        def panel_normal() -> bool:
            return gateway.service.call(alarms.panel_reports_fire) is False

        _wait(lambda: all((node.dir / "outbox.ack").exists() for node in nodes.values()),
              "each fire node's boot reading acknowledged by the broker", timeout=20)
        for name, node in nodes.items():  # once booted: a booting node at SCHED_FIFO would
            if node.proc is None:         # hold a core of the shared machine for a second
                raise BenchError(f"the fire node {name} did not start")
            ran[f"node {name}"] = apply_unit(node.proc.pid, _node_priority(setup))
        if setup == "site":  # last: every child process is started (they would inherit it)
            ran["bench"] = BENCH_PROCESS + stack.enter_context(_as_the_gateway_unit())
            stack.callback(lambda: ran.__setitem__(
                "bench", f"{ran['bench']}; after the fires: {running(os.getpid())}"))
        _wait(panel_normal, "the panels normal at the gateway")
        done = 0
        for index in range(warmup + runs):
            for name, node in nodes.items():
                seen = len(_Receiver.arrivals)
                sent_before = len(_SENT.findall(node.console()))
                started_monotonic = time.monotonic()
                started = time.perf_counter()
                node.set(**{loop_key("b2-east"): LOOP_ACTIVE})
                _wait(lanes.up, "every barrier up")
                _wait(partial(_more_than, seen), "the first alert at the webhook")
                # The node prints after its publish: the lanes may have acted before it did.
                _wait(lambda: len(_SENT.findall(node.console())) > sent_before,  # noqa: B023
                      "the fire node's log of its alarm")
                if index >= warmup:
                    measured[name].barriers_ms.append(
                        (lanes.last_up_s() - started_monotonic) * 1000)
                    measured[name].alert_ms.append((_Receiver.arrivals[seen] - started) * 1000)
                    measured[name].node_ms.append(
                        _node_sent_ms(node.console(), sent_before, started_monotonic))
                # The lanes and the alert may follow the node's retained alarm before the
                # gateway has the fire reading itself: wait for it, or "normal" below would be
                # stale.
                _wait(lambda: gateway.service.call(alarms.panel_reports_fire) is True,
                      "the fire reading at the gateway")
                node.set(**{loop_key("b2-east"): LOOP_NORMAL})
                _wait(panel_normal, "the panel back to normal at the gateway")
                gateway.service.call(lambda i=index, n=name: alarms.reset_fire(  # type: ignore[misc]
                    "staff:boss", f"bench run {i} on {n}: drill over"))
                _wait(lanes.down, "every barrier down")
                # Each fire starts on a settled site: the lanes' workers and the gateway done
                # with the last one (journal writes, events), as between two real fires.
                lanes.wait_idle(timeout=_TIMEOUT_S)
                gateway.service.wait_idle(timeout=_TIMEOUT_S)
                done += 1
                if console is not None and done % 20 == 0:
                    console.print(f"  {done}/{(warmup + runs) * len(nodes)} fires",
                                  highlight=False)
    return measured


@contextmanager
def _burners(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes beside the bench (``--load``): a repeatable stand-in for
    a test run on the same cores."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
             for _ in range(count)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_bench_fire(runs: int, workdir: Path, *, warmup: int = WARMUP,
                   debounce_ms: int = DEFAULT_DEBOUNCE_MS, load: int = 0,
                   setup: Setup = "site", console: Console | None = None,
                   processes: dict[str, str] | None = None) -> list[BenchRow]:
    """Start a private Mosquitto in ``workdir`` and measure the baseline and the fire rows,
    now and before, in the same run; ``load`` CPU-bound processes run beside the fires;
    ``setup`` says how the processes run (module docstring), ``processes`` collects it."""
    if runs < 1:
        raise ValueError("need at least one run")
    workdir.mkdir(parents=True, exist_ok=True)
    loadavg = os.getloadavg()[0]
    ran = processes if processes is not None else {}
    with ExitStack() as stack:
        site = provision_site(bench_inventory(), workdir / "pki")
        broker = stack.enter_context(MosquittoBroker(workdir / "broker", site=site))
        if console is not None:
            console.print(f"broker: private mosquitto with TLS and ACLs on {broker.host}:"
                          f"{broker.port}")
        if broker.pid is None:
            raise BenchError("Mosquitto did not start")
        broker_unit = read_unit(BROKER_UNIT, name="hardware/mosquitto-parkguard.conf")
        ran["mosquitto"] = apply_unit(broker.pid, broker_unit if setup == "site" else DEFAULT)
        ran["bench"] = BENCH_PROCESS + running(os.getpid())  # site: set in fire_runs
        baseline = describe(BASELINE_RR, "latency", request_response(
            broker.address, requests=max(runs, 20), warmup=20, nodelay=True))
        stack.enter_context(_burners(load))
        if load:
            ran["load"] = f"{load} CPU-bound processes, SCHED_OTHER, nice 0"
        measured = fire_runs(broker, workdir / "site", runs=runs, warmup=warmup,
                             debounce_ms=debounce_ms, setup=setup, console=console,
                             processes=ran)
        loadavg = max(loadavg, os.getloadavg()[0])
    if console is not None:
        console.print(f"setup {setup}: how each process ran", highlight=False)
        for who, how in ran.items():
            console.print(f"  {who}: {how}", highlight=False)
    lanes = len(ENTRIES) + len(EXITS)
    beside = (f"{load} CPU-bound processes beside it" if load
              else "nothing of its own beside it")
    how = ("setup site: each node at SCHED_FIFO (its own microcontroller), Mosquitto, "
           "each lane's process and the gateway's (the bench's) with its unit's priority "
           "(listed above the table)"
           if setup == "site" else
           "setup shared: the lanes and the gateway in the bench's process, every process at "
           "the default priority")
    if any("NOT SET" in line for line in ran.values()):
        how += "; SOME PRIORITIES NOT SET (see above)"
    gateway_ran = ran["bench"].removeprefix(BENCH_PROCESS).partition("; after the fires")[0]
    now, before = measured["fire2"], measured["fire1"]
    return [
        baseline,
        compared(describe(FIRE_BARRIERS, "latency", now.barriers_ms,
                          note=f"{how}; {lanes} lanes, no gateway in the path; the node's "
                               f"wake line and a {debounce_ms} ms confirmation sampled every 1 ms; "
                               f"{beside}, 1-min load average up to {loadavg:.1f} on "
                               f"{os.cpu_count()} cores"),
                 baseline),
        compared(describe(FIRE_BARRIERS_BEFORE, "latency", before.barriers_ms,
                          note="the same firmware configured as before issue 23: no wake "
                               f"line, sampled every {BEFORE_LOOP_MS} ms, a "
                               f"{BEFORE_DEBOUNCE_MS} ms debounce"), baseline),
        compared(describe(FIRE_NODE, "latency", now.node_ms,
                          note="the node's share: the contact's edge, the confirmation window, "
                               "the publish; read on its console, on the same monotonic clock"),
                 baseline),
        compared(describe(FIRE_NODE_BEFORE, "latency", before.node_ms), baseline),
        compared(describe(FIRE_ALERT, "latency", now.alert_ms,
                          note="reading → gateway alarm → alert desk → Apprise json:// → "
                               f"local HTTP receiver; the gateway (in the bench's process) "
                               f"at {gateway_ran}"), baseline),
        compared(describe(FIRE_ALERT_BEFORE, "latency", before.alert_ms), baseline),
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
                        help="the fire node's confirmation window now (default %(default)s; "
                             f"the before rows keep {BEFORE_DEBOUNCE_MS})")
    parser.add_argument("--setup", choices=SETUPS, default="site",
                        help="site (default): each node at SCHED_FIFO, each lane its own "
                             "process, Mosquitto, lanes and the gateway (this process) at "
                             "their units' priority; shared: the lanes in the bench's "
                             "process, all at the default priority")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run N CPU-bound processes beside the fires (default none)")
    parser.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                        help="keep the broker, node and SQLite files here")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.debounce_ms < 1 or not 0 <= args.load <= 16:
        parser.error("--runs and --debounce-ms must be ≥ 1, --warmup ≥ 0, --load 0-16")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL + 1)  # a hundred FIRE logs: keep the table clean
    console = report_console()
    rows = run_and_report(
        lambda workdir: run_bench_fire(args.runs, workdir, warmup=args.warmup,
                                       debounce_ms=args.debounce_ms, load=args.load,
                                       setup=args.setup, console=console),
        workdir=args.workdir, prefix="pg-fire-", console=console,
        title=lambda wall: f"ParkGuard fire bench — setup {args.setup}, {args.runs} fires "
                           f"a node, warm-up {args.warmup}, "
                           f"{wall:.0f} s")
    return 0 if rows is not None else 1

if __name__ == "__main__":
    raise SystemExit(main())
