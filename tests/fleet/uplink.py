"""A site's uplink as a TCP relay we can cut: the network boundary between site and fleet.

The site's Mosquitto bridge dials the relay; the relay dials the first NATS node whose MQTT
listener answers (as a load balancer in front of the cluster would), so a killed node is
left for the next one, and a node that drops a connection within seconds (a restarted node
still catching up refuses MQTT sessions) is moved behind the others, as a health check would.
TLS passes through untouched. ``cut()`` drops every connection and
refuses new ones until ``restore()``: the site sees its uplink go dead.
"""

from __future__ import annotations

import contextlib
import socket
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
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True, name="uplink-accept").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()
                continue
            dialled = self._dial()
            if dialled is None:
                client.close()
                continue
            upstream, port = dialled
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._watch, args=(upstream, client, port),
                             daemon=True).start()

    def _dial(self) -> tuple[socket.socket, int] | None:
        for port in list(self.upstream_ports):
            try:
                return socket.create_connection((HOST, port), timeout=2.0), port
            except OSError:
                continue
        return None

    def _watch(self, upstream: socket.socket, client: socket.socket, port: int) -> None:
        """Pump the node's side; if the node hung up young, try it last next time."""
        opened = time.monotonic()
        self._pump(upstream, client)
        if time.monotonic() - opened < YOUNG_S and self._up.is_set():
            with self._lock:
                if port in self.upstream_ports:
                    self.upstream_ports.remove(port)
                    self.upstream_ports.append(port)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        self._drop_all()

    def restore(self) -> None:
        self._up.set()

    def _drop_all(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self._drop_all()
