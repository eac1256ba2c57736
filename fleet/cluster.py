"""Run a NATS cluster on loopback ports from the project's template: tests, the bench, the demo.

Never the machine's own NATS on 4222: every port is picked free, every node's JetStream store
is a directory of ``workdir``. A node can be killed (SIGKILL, a crash) and started again on
the same ports and store, as a real node comes back after a reboot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from broker.runner import free_port
from fleet.natsconf import NatsUser, NodePorts, render_node

SEARCH_DIRS = (Path("/usr/sbin"), Path("/usr/bin"), Path("/usr/local/bin"))
HOST = "127.0.0.1"


class NatsError(RuntimeError):
    """The NATS binary is missing or a node would not come up."""


def find_nats_server() -> Path:
    """On PATH, then in the sbin directories PATH often lacks (Debian puts it in /usr/sbin)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *map(str, SEARCH_DIRS)])
    found = shutil.which("nats-server", path=search)
    if found is None:
        raise NatsError("nats-server not found: `make system-deps` installs Debian's "
                        "nats-server")
    return Path(found)


def _healthy(port: int) -> bool:
    """The node's JetStream is up and has caught up with the cluster (``/healthz``)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1.0) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


#: Starts of the whole cluster on new ports when a node lost one (``repick_ports``).
PORT_ATTEMPTS = 3
#: How nats-server's fatal log line names a port taken meanwhile.
_ADDRESS_IN_USE = "address already in use"


class NatsCluster:
    """``size`` nodes with JetStream and an MQTT listener each, routes between them all."""

    def __init__(self, workdir: Path, users: Sequence[NatsUser], *, size: int = 3,
                 tls: tuple[Path, Path] | None = None, startup_timeout: float = 30.0,
                 debug: bool = False, repick_ports: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.users = tuple(users)
        self.tls = tls
        self.size = size
        self.startup_timeout = startup_timeout
        self.debug = debug  # nats-server -D: every connection's protocol errors in the log
        #: A port picked free can be taken by another process before its node binds it (many
        #: tests start servers side by side). With this, :meth:`start` then starts every node
        #: again on new ports, so only for callers that read the ports after it.
        self.repick_ports = repick_ports
        self.nodes = self._pick_ports()
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * size

    # -- addresses -------------------------------------------------------------------------

    @property
    def client_urls(self) -> list[str]:
        return [f"nats://{HOST}:{node.client}" for node in self.nodes]

    @property
    def mqtt_ports(self) -> list[int]:
        return [node.mqtt for node in self.nodes]

    def log_path(self, index: int) -> Path:
        return self.workdir / f"node{index + 1}.log"

    def running(self, index: int) -> bool:
        proc = self._procs[index]
        return proc is not None and proc.poll() is None

    # -- life cycle ------------------------------------------------------------------------

    def _pick_ports(self) -> list[NodePorts]:
        return [NodePorts(free_port(), free_port(), free_port(), free_port())
                for _ in range(self.size)]

    def start(self) -> NatsCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            for index in range(self.size):
                self._launch(index)
            try:
                self.wait_healthy(range(self.size))
                return self
            except NatsError as error:
                self.stop()  # every node: a failed start leaves none behind (and each one's
                # routes name the others' ports)
                if (not self.repick_ports or attempt == PORT_ATTEMPTS
                        or _ADDRESS_IN_USE not in str(error)):
                    raise
                for index in range(self.size):
                    shutil.rmtree(self.workdir / f"node{index + 1}-store", ignore_errors=True)
                    self.log_path(index).unlink(missing_ok=True)
                self.nodes = self._pick_ports()
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _launch(self, index: int) -> None:
        conf = self.workdir / f"node{index + 1}.conf"
        store = self.workdir / f"node{index + 1}-store"
        store.mkdir(exist_ok=True)
        conf.write_text(render_node(index, self.nodes, store_dir=store, users=self.users,
                                    tls=self.tls), encoding="utf-8")
        conf.chmod(0o600)  # it holds the bridges' passwords
        with self.log_path(index).open("ab") as log:
            self._procs[index] = subprocess.Popen(  # noqa: S603
                [str(find_nats_server()), "-c", str(conf), *(["-D"] if self.debug else [])],
                stdout=log, stderr=log,
                start_new_session=True)

    def wait_healthy(self, indexes: Sequence[int] | range) -> None:
        deadline = time.monotonic() + self.startup_timeout
        pending = list(indexes)
        while pending:
            pending = [i for i in pending if not _healthy(self.nodes[i].http)]
            for i in pending:
                proc = self._procs[i]
                if proc is not None and proc.poll() is not None:
                    raise NatsError(f"NATS node {i + 1} exited: {self._tail(i)}")
            if pending and time.monotonic() > deadline:
                raise NatsError(f"NATS nodes {[i + 1 for i in pending]} not healthy in "
                                f"{self.startup_timeout} s: {self._tail(pending[0])}")
            if pending:
                time.sleep(0.1)

    def kill(self, index: int) -> None:
        """SIGKILL one node: a crash, nothing flushed."""
        proc = self._procs[index]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def restart(self, index: int) -> None:
        """Start a killed or stopped node again on its ports and store."""
        self.kill(index)
        self._launch(index)
        self.wait_healthy([index])

    def stop(self) -> None:
        for proc in self._procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs = [None] * self.size

    def _tail(self, index: int) -> str:
        try:
            return self.log_path(index).read_text("utf-8", errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
