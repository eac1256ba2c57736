"""Run the real Mosquitto binary on a private loopback port for development, simulation, tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType

from broker.mosquitto_conf import render_local_config
from broker.provision.acl import UPLINK_USER, uplink_outgoing
from broker.provision.generate import ProvisionResult
from parkguard.errors import BrokerError
from wire.contract.topics import site_root
from wire.mqtt import BrokerAddress

HOST = "127.0.0.1"

#: Where distributions put the broker. /usr/sbin is often missing from a non-root PATH.
SEARCH_DIRS: tuple[Path, ...] = (Path("/usr/sbin"), Path("/usr/local/sbin"))

INSTALL_HINT = "apt-get install mosquitto, or run make test/make demo which install it"

#: How often a free port is re-picked when another process grabs it between free_port() and
#: Mosquitto's bind.
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 20
_ADDRESS_IN_USE = "Address already in use"
# Logged once every listener is bound; absent when a bind failed.
_RUNNING = re.compile(r"mosquitto version \S+ running")

# MQTT 3.1.1 CONNECT: protocol "MQTT" level 4, clean session, keep-alive 10 s, client id below.
_PROBE_CLIENT_ID = b"parkguard-probe"
_CONNECT = (
    bytes([0x10, 10 + 2 + len(_PROBE_CLIENT_ID)])
    + b"\x00\x04MQTT\x04\x02\x00\x0a"
    + len(_PROBE_CLIENT_ID).to_bytes(2, "big")
    + _PROBE_CLIENT_ID
)
_CONNACK_ACCEPTED = b"\x20\x02\x00\x00"  # session present 0, return code 0
_CONNACK_NOT_AUTHORIZED = b"\x20\x02\x00\x05"
_DISCONNECT = b"\xe0\x00"


def find_mosquitto() -> Path:
    """Locate the broker binary on PATH, then in the sbin directories PATH often lacks."""
    found = shutil.which("mosquitto")
    if found is not None:
        return Path(found)
    for directory in SEARCH_DIRS:
        candidate = directory / "mosquitto"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = ", ".join(str(d) for d in SEARCH_DIRS)
    raise BrokerError(f"mosquitto not found on PATH or in {searched}: {INSTALL_HINT}")


def free_port() -> int:
    """Ask the kernel for an unused loopback port.

    The port is free only until someone else takes it; :meth:`MosquittoBroker.start`
    retries with a new one when Mosquitto loses that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Last-resort cleanup so a crashed test run does not leave brokers behind."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)


class MosquittoBroker:
    """A real Mosquitto on a private loopback port, with its config, data and log in ``workdir``.

    It never touches a system broker on 1883: the port is picked free (or given), so several
    brokers and test runs can share a machine::

        with MosquittoBroker(tmp_path) as bus:
            client.connect(bus.host, bus.port)

    ``restart()`` keeps the port and data directory, so persistent sessions and retained
    messages survive a clean restart exactly as they would on the site; ``kill()`` is a crash
    and loses whatever Mosquitto had not yet autosaved.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = True,
        startup_timeout: float = 10.0,
        site: ProvisionResult | None = None,
        uplink_of: MosquittoBroker | None = None,
        extra_conf: str = "",
    ) -> None:
        """``site``: run that site's locked-down broker (its loopback listener, if it has
        one, on a free port too: :attr:`local_port`). ``uplink_of``: run the uplink broker
        of the site that broker runs (broker/provision/uplink.py), dialling its loopback
        listener. ``extra_conf`` is appended to the config (a test's own additions)."""
        if uplink_of is not None and (uplink_of.site is None or uplink_of.site.uplink is None):
            raise BrokerError("uplink_of needs a running site broker of a site with [fleet]")
        self._site = site
        self._uplink_of = uplink_of
        self._extra_conf = extra_conf
        self._local_port: int | None = None
        self._workdir = Path(workdir).resolve()  # mosquitto runs with this as its cwd
        self._requested_port = port
        self._port: int | None = port
        self._persistence = persistence
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], MosquittoBroker] | None = None

    # -- properties ------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def site(self) -> ProvisionResult | None:
        """The provisioned site whose locked-down config this broker runs, if any."""
        return self._site

    def address(self, device: str | None = None) -> BrokerAddress:
        """How ``device`` (e.g. ``"gateway"``, ``"lane-in1"``) reaches this broker.

        A locked-down broker needs a device of its inventory; an open development
        broker takes anyone.
        """
        if self._site is None:
            return BrokerAddress(HOST, self.port)
        if device is None:
            raise BrokerError("this broker is locked down: say which device is connecting")
        login = self._site.device(device)
        return BrokerAddress(HOST, self.port, login.ca_path, login.username, login.password,
                             max_packet_size=self._site.conf.max_packet_size)

    @property
    def local_port(self) -> int:
        """The site broker's plain loopback listener (the uplink broker dials it)."""
        if self._local_port is None:
            raise BrokerError("this broker has no loopback listener (or has not started)")
        return self._local_port

    @property
    def port(self) -> int:
        """The listening port; fixed for the broker's lifetime once first started."""
        if self._port is None:
            raise BrokerError("broker has not been started, so it has no port yet")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running; ``None`` before start and after stop."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self._workdir / "mosquitto.conf"

    @property
    def data_dir(self) -> Path:
        return self._workdir / "data"

    @property
    def log_path(self) -> Path:
        """Broker stdout and stderr (its log goes to stderr), appended across restarts."""
        return self._workdir / "mosquitto.log"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MosquittoBroker:
        """Launch Mosquitto and return only once it has accepted an MQTT connection.

        A listening socket is not enough: the probe completes a real CONNECT/CONNACK so
        callers never race the broker's startup.
        """
        if self.running:
            raise BrokerError(f"broker already running on {self.url} (pid {self.pid})")
        binary = find_mosquitto()
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        # Only a port we picked ourselves may be swapped for another after losing a race.
        attempts = 1 if self._port is not None else _PORT_ATTEMPTS
        # The loopback listener's port is picked with the first one and kept from the first
        # successful start on (a port both picked free at once would be the same twice).
        keep_local = self._port is not None and self._local_port is not None
        for attempt in range(1, attempts + 1):
            port = self._port if self._port is not None else free_port()
            if (self._site is not None and self._site.conf.local_port is not None
                    and not keep_local):
                self._local_port = free_port()
                while self._local_port == port:
                    self._local_port = free_port()
            try:
                self._launch(binary, port)
            except _PortTaken as exc:
                if attempt == attempts:
                    raise BrokerError(str(exc)) from None
                continue
            self._port = port
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate cleanly (Mosquitto saves its database on SIGTERM); escalate to SIGKILL.

        Safe to call any number of times, and after :meth:`kill`.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=timeout)
        self._forget()

    def kill(self) -> None:
        """Crash the broker: SIGKILL now, so nothing since the last autosave reaches disk."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=5.0)
        self._forget()

    def restart(self) -> MosquittoBroker:
        """Stop cleanly and start again on the same port with the same data directory."""
        self.stop()
        return self.start()

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{HOST}:{self._port}" if self._port is not None else "unstarted"
        state = "running" if self.running else "stopped"
        return f"<MosquittoBroker {where} {state} workdir={self._workdir}>"

    # -- internals -------------------------------------------------------------------------

    def _launch(self, binary: Path, port: int) -> None:
        # Root: stay root, or Mosquitto's switch to its own user cannot read our files.
        user = "root" if os.geteuid() == 0 else None
        extra = self._extra_conf
        site_offset = 0
        if self._uplink_of is not None:
            site = self._uplink_of.site
            if site is None or site.uplink is None:  # pragma: no cover - checked in __init__
                raise BrokerError("uplink_of has no uplink")
            config = site.uplink.render_conf(
                port=port, site_port=self._uplink_of.local_port, persistence_dir=self.data_dir,
                log_file=None, run_as_user=user)
            site_offset = self._uplink_of.log_path.stat().st_size
        elif self._site is not None:
            config = self._site.render_conf(
                port=port, bind_address=HOST, persistence_dir=self.data_dir, log_file=None,
                run_as_user=user, local_port=self._local_port,
            )
            if self._site.uplink is not None:
                # So an uplink broker started here can tell when its subscriptions are in.
                extra = "log_type subscribe\n" + extra
        else:
            config = render_local_config(
                port=port,
                data_dir=self.data_dir,
                log_file=None,  # stderr, captured below together with config errors
                persistence=self._persistence,
                user=user,
            )
        self.config_path.write_text(config + extra, encoding="utf-8")
        with self.log_path.open("ab") as log:
            log_offset = log.tell()
            # Own session/process group: a Ctrl-C aimed at the test run does not reach the
            # broker half-way through a test, and stop() signals exactly this group.
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, binary found by find_mosquitto
                [str(binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                start_new_session=True,
            )
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc)
        try:
            self._wait_until_ready(self._proc, port, log_offset)
            if self._uplink_of is not None:
                self._wait_subscribed(self._uplink_of, site_offset)
        except BaseException:
            self.kill()
            raise

    def _wait_subscribed(self, site: MosquittoBroker, offset: int) -> None:
        """Until the site broker has logged every subscription of this uplink's bridge.

        Until then the site broker forwards nothing to the uplink: on a site's first start
        (no persistent session yet) what a lane sends before that moment never reaches the
        fleet, so callers must not send before this returns. Mosquitto logs a subscription
        while it adds it, in its one thread, so the last line means all are in.
        """
        provisioned = site.site
        if provisioned is None or provisioned.uplink is None:  # pragma: no cover
            raise BrokerError("uplink_of has no uplink")
        conf = provisioned.uplink.conf
        leaf = uplink_outgoing(conf.fleet.fleet_kind)[-1]
        last = f"{UPLINK_USER} 1 {site_root(conf.site)}/{leaf}"
        deadline = time.monotonic() + max(self._startup_timeout, 30.0)
        while last not in site._log_since(offset):
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"the site broker on {HOST}:{site.port} never took the uplink's "
                    f"subscriptions; its log {site.log_path}, the uplink's {self.log_path}:\n"
                    f"{self._log_tail(0)}")
            time.sleep(0.02)

    def _wait_until_ready(self, proc: subprocess.Popen[bytes], port: int, log_offset: int) -> None:
        """Wait for our broker to log that it runs, then prove it speaks MQTT.

        The log line comes first because a probe alone can be fooled: if another program
        grabbed the port, the probe would talk to it while our Mosquitto exits.
        """
        deadline = time.monotonic() + self._startup_timeout
        last_error = "mosquitto has not logged that it is running"
        while True:
            code = proc.poll()
            if code is not None:
                tail = self._log_tail(log_offset)
                message = (
                    f"mosquitto exited with code {code} while starting on {HOST}:{port}; "
                    f"log {self.log_path}:\n{tail}"
                )
                if _ADDRESS_IN_USE in tail:
                    raise _PortTaken(message)
                raise BrokerError(message)
            if _RUNNING.search(self._log_since(log_offset)):
                try:
                    # A broker answers CONNECT in well under a millisecond; a short timeout
                    # only means another attempt.
                    _probe(port, timeout=0.25,
                           ca_file=self._site.ca_path if self._site else None,
                           locked=self._uplink_of is not None)
                    return
                except OSError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"mosquitto did not accept MQTT on {HOST}:{port} within "
                    f"{self._startup_timeout:g} s ({last_error}); "
                    f"log {self.log_path}:\n{self._log_tail(log_offset)}"
                )
            time.sleep(0.01)

    def _log_since(self, offset: int) -> str:
        """What this launch has logged so far; earlier runs share the file."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def _log_tail(self, offset: int) -> str:
        try:
            text = self._log_since(offset)
        except OSError as exc:
            return f"(log unreadable: {exc})"
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(log empty)"

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # Signal the group (only Mosquitto lives there) and tolerate it exiting meanwhile.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _forget(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


class _PortTaken(BrokerError):
    """Mosquitto could not bind the port: someone else got there between probe and bind."""


def _probe(port: int, *, timeout: float, ca_file: Path | None = None,
           locked: bool = False) -> None:
    """Complete one MQTT 3.1.1 CONNECT/CONNACK exchange, over TLS when given the site CA.

    An open development broker must accept us; a locked-down one (``ca_file``, or
    ``locked``: the uplink broker, plain and nobody's) must refuse an
    anonymous client ("not authorized"), which proves TLS, the listener and the auth
    settings are live without logging in as, and so kicking off, a real device.
    Raises OSError while the broker is not listening yet, BrokerError if it answers wrongly.
    """
    expected = _CONNACK_ACCEPTED if ca_file is None and not locked else _CONNACK_NOT_AUTHORIZED
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        sock: socket.socket = raw
        if ca_file is not None:
            context = ssl.create_default_context(cafile=str(ca_file))
            sock = context.wrap_socket(raw, server_hostname=HOST)
        sock.sendall(_CONNECT)
        reply = b""
        while len(reply) < len(expected):
            chunk = sock.recv(len(expected) - len(reply))
            if not chunk:
                raise ConnectionError(f"connection closed after {reply!r}")
            reply += chunk
        if reply != expected:
            # The broker is up but answers wrongly: waiting longer will not change its mind.
            what = "accepts anonymous clients" if reply == _CONNACK_ACCEPTED else "answered"
            raise BrokerError(f"broker on {HOST}:{port} {what}: CONNACK {reply.hex(' ')}")
        if expected == _CONNACK_ACCEPTED:
            sock.sendall(_DISCONNECT)
