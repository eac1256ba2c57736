"""A site's uplink as a TCP relay we can cut: the network boundary between site and fleet.

The site's Mosquitto bridge dials the relay; the relay dials the first NATS node whose MQTT
listener answers (as a load balancer in front of the cluster would), so a killed node is
left for the next one, and a node that drops a connection within seconds (a restarted node
still catching up refuses MQTT sessions) is moved behind the others, as a health check would.
TLS passes through untouched. ``cut()`` drops every connection and
refuses new ones until ``restore()``: the site sees its uplink go dead.
``cut(fin=True)`` instead accepts each new connection and closes it at once (a FIN), as a
load balancer with no healthy node does: the fault that hangs Mosquitto 2.0.11 (below).

Otherwise the relay ends a site's connection with a reset, never a plain close (FIN): Debian's
Mosquitto 2.0.11 spins for ever in its main loop when the far end closes a bridge's TLS
connection before the handshake is done (a hash of sockets corrupted by the TLS error path;
fixed upstream in 2.0.15). An accept-then-close relay hung east's site broker in about one
fault-test run in five (docs/fleet.md, failure model).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Sequence

HOST = "127.0.0.1"
#: A connection that ends sooner than this counts against its node.
YOUNG_S = 5.0


class Uplink:
    def __init__(self, upstream_ports: Sequence[int]) -> None:
        self.upstream_ports = list(upstream_ports)
        self._server = socket.create_server((HOST, 0))
        self.port: int = self._server.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._fin = False
        self._closed = False
        self._lock = threading.Lock()
        self._links: list[tuple[socket.socket, socket.socket]] = []
        self.connections = 0
        self.closed_with_fin = 0
        threading.Thread(target=self._accept, daemon=True, name="uplink-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up.is_set():
                if self._fin:
                    client.close()  # accepted, then closed: a balancer with no healthy node
                    self.closed_with_fin += 1
                else:
                    _reset(client)  # refused, as a cut link's firewall would
                continue
            dialled = self._dial()
            if dialled is None:
                _reset(client)
                continue
            upstream, port = dialled
            with self._lock:
                self._links.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, client, upstream),
                             daemon=True).start()
            threading.Thread(target=self._watch, args=(upstream, client, port),
                             daemon=True).start()

    def _dial(self) -> tuple[socket.socket, int] | None:
        for port in list(self.upstream_ports):
            try:
                upstream = socket.create_connection((HOST, port), timeout=2.0)
            except OSError:
                continue
            # The 2 s is for dialling only. Left on the socket it was a read timeout: the
            # relay hung up every link the node had not written to for 2 s, so the bridges
            # reconnected every few seconds (what the fault test then exercised, and what
            # drove east's Mosquitto 2.0.11 into its busy loop: docs/fleet.md).
            upstream.settimeout(None)
            return upstream, port
        return None

    def _watch(self, upstream: socket.socket, client: socket.socket, port: int) -> None:
        """Pump the node's side; if the node hung up young, try it last next time."""
        opened = time.monotonic()
        self._pump(upstream, client, client, upstream)
        if time.monotonic() - opened < YOUNG_S and self._up.is_set():
            with self._lock:
                if port in self.upstream_ports:
                    self.upstream_ports.remove(port)
                    self.upstream_ports.append(port)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, client: socket.socket,
              upstream: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            _teardown(client, upstream)

    def cut(self, *, fin: bool = False) -> None:
        self._fin = fin
        self._up.clear()
        self._drop_all()

    def restore(self) -> None:
        self._fin = False
        self._up.set()

    def _drop_all(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for client, upstream in links:
            _teardown(client, upstream)

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self._drop_all()


def _reset(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0), not a FIN: see the module docstring."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _teardown(client: socket.socket, upstream: socket.socket) -> None:
    """End one relayed link (twice is harmless): wake both pumps, reset the site's side."""
    with contextlib.suppress(OSError):
        upstream.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        client.shutdown(socket.SHUT_RD)  # wakes the pump reading it, sends nothing
    _reset(client)
    upstream.close()
