"""The gate bench's gateway, in the bench's own process or in a process of its own.

On a site the gateway runs on its own machine and each lane on its Pi; the gate bench
(:mod:`simulator.bench_gate`) runs both lanes and their car drivers in one process. With the
gateway in that process too (:class:`InlineGateway`, the bench's first way), every hop of a
decision queues for one GIL behind the lanes' journal writes and four paho network threads,
which a site never pays. :class:`GatewayProcess` starts the same
:class:`~gateway.app.GatewayApp` in a ``spawn``-ed child and drives it over a pipe: the
honest measure on a machine with two cores or more.

Both offer what the bench needs between cars, never during one: ``settle`` (what the lanes
sent is stored and the worker idle), ``hang`` / ``release`` (the worker blocked: a silent
gateway), ``marks`` (the gateway's hops of :mod:`simulator.gate_trace`) and ``stop``.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Literal, Protocol

from gateway.app import GatewayApp
from gateway.config import GatewayConfig
from gateway.runtime.inbox import Job
from parkguard.clock import SystemClock
from simulator.bench import BenchError
from simulator.gate_trace import GateTrace, trace_gateway

GatewayMode = Literal["process", "inline"]
_TIMEOUT_S = 10.0
_START_TIMEOUT_S = 60.0  # a spawned interpreter imports the whole gateway first


class BenchGateway(Protocol):
    """What the gate bench asks of its gateway, wherever it runs."""

    mode: GatewayMode

    def settle(self, emitted: int) -> None: ...

    def hang(self) -> None: ...

    def release(self) -> None: ...

    def marks(self) -> list[tuple[str, float, str]]: ...

    def stop(self) -> None: ...


class _Served:
    """A started gateway app and what the bench does to it (either process)."""

    def __init__(self, config: GatewayConfig, trace: GateTrace | None) -> None:
        self.app = GatewayApp(config, clock=SystemClock()).start()
        self._trace = trace
        if trace is not None:
            trace_gateway(trace, self.app.bus, self.app.service._batches)
        self._release = threading.Event()
        self._stopped = False

    def settle(self, emitted: int) -> None:
        """Wait until ``emitted`` lane events are stored here and the worker is idle."""
        service = self.app.service
        deadline = time.monotonic() + _TIMEOUT_S
        while service.events_stored < emitted:
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {_TIMEOUT_S} s waiting for the gateway to "
                                 f"store {emitted} events ({service.events_stored} stored)")
            time.sleep(0.001)
        service.wait_idle()

    def hang(self) -> None:
        """Block the worker (the bench's silent gateway) until :meth:`release`."""
        hung = threading.Event()

        def hang() -> None:
            hung.set()
            self._release.wait(600)

        self.app.inbox.put(Job.of(hang))
        if not hung.wait(_TIMEOUT_S):
            raise BenchError("the gateway's worker did not take the hang")

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        if not self._stopped:
            self._stopped = True
            self.app.stop()


class InlineGateway(_Served):
    """The gateway in the bench's process: its hops go straight into the bench's trace."""

    mode: GatewayMode = "inline"

    def marks(self) -> list[tuple[str, float, str]]:
        return []  # already in the shared trace


class GatewayProcess:
    """The gateway in a ``spawn``-ed process of its own, driven over a pipe."""

    mode: GatewayMode = "process"

    def __init__(self, config: GatewayConfig, *, trace: bool) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, config, trace),
                                        name="bench-gateway", daemon=True)
        self._process.start()
        child.close()
        self._stopped = False
        try:
            self._call("started", timeout=_START_TIMEOUT_S)
        except BaseException:
            self._kill()
            raise

    def _call(self, command: str, argument: Any = None, *, timeout: float = _TIMEOUT_S) -> Any:
        if command != "started":
            self._conn.send((command, argument))
        if not self._conn.poll(timeout):
            raise BenchError(f"the gateway process did not answer {command!r} in {timeout} s")
        status, value = self._conn.recv()
        if status != "ok":
            raise BenchError(f"the gateway process failed at {command!r}: {value}")
        return value

    def settle(self, emitted: int) -> None:
        self._call("settle", emitted, timeout=_TIMEOUT_S * 2)

    def hang(self) -> None:
        self._call("hang", timeout=_TIMEOUT_S * 2)

    def release(self) -> None:
        if not self._stopped:
            self._call("release")

    def marks(self) -> list[tuple[str, float, str]]:
        return list(self._call("marks")) if not self._stopped else []

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self._call("stop", timeout=_TIMEOUT_S * 3)
        finally:
            self._process.join(_TIMEOUT_S)
            self._kill()

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join(_TIMEOUT_S)
        self._conn.close()


def _serve(conn: Connection, config: GatewayConfig, traced: bool) -> None:
    """The child: start the gateway, then do what the bench asks until ``stop``."""
    logging.basicConfig(level=logging.ERROR)
    trace = GateTrace() if traced else None
    try:
        served = _Served(config, trace)
    except BaseException as error:
        conn.send(("error", repr(error)))
        return
    conn.send(("ok", None))
    while True:
        try:
            command, argument = conn.recv()
        except EOFError:  # the bench is gone
            served.stop()
            return
        try:
            value: Any = None
            if command == "settle":
                served.settle(int(argument))
            elif command == "hang":
                served.hang()
            elif command == "release":
                served.release()
            elif command == "marks":
                value = trace.gateway_marks() if trace is not None else []
            elif command == "stop":
                served.stop()
                conn.send(("ok", None))
                return
            else:
                raise BenchError(f"unknown command {command!r}")
        except Exception as error:
            conn.send(("error", repr(error)))
            continue
        conn.send(("ok", value))


def start_gateway(mode: GatewayMode, config: GatewayConfig,
                  trace: GateTrace | None) -> BenchGateway:
    """The bench's gateway, ``mode`` ``process`` (its own) or ``inline`` (the bench's)."""
    if mode == "inline":
        return InlineGateway(config, trace)
    return GatewayProcess(config, trace=trace is not None)
