"""A lane's network cable as a loopback TCP relay that a scenario can cut and mend.

The lane connects to the relay, the relay to Mosquitto; TLS passes through untouched. Cut,
every open connection is closed and new ones are closed as soon as they come (paho keeps
retrying, as on a real site with the switch port dead); mended, the next retry gets through.
"""

from __future__ import annotations

import socket
import threading


class Link:
    """One relay ``127.0.0.1:port`` -> ``target``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.cut = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"link-{self.port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.cut:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        with self._lock:
            if sock in self._open:
                self._open.remove(sock)

    def sever(self) -> None:
        """Cut the cable: every connection dies, none gets through until :meth:`mend`."""
        self.cut = True
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            self._close(sock)

    def mend(self) -> None:
        self.cut = False

    def close(self) -> None:
        self._closed = True
        self.sever()
        self._server.close()
