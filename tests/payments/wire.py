"""What the local provider servers share: RSA keys made in the test, a threaded HTTP
server on a free loopback port, a way to make it swallow a request (a timeout), and the
scripted wallet both providers' servers keep (:class:`ProviderServer`)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from parkguard.clock import Clock


@dataclass(frozen=True)
class KeyPair:
    """An RSA-2048 key made for one test run, with its PEM texts."""

    key: rsa.RSAPrivateKey

    @classmethod
    def make(cls) -> KeyPair:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def private_pem(self) -> str:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()

    @property
    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, text: str) -> str:
        """RSA-SHA256 (PKCS#1 v1.5) over UTF-8 ``text``, base64."""
        raw = self.key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()

    def verifies(self, text: str, signature: str) -> bool:
        try:
            self.key.public_key().verify(base64.b64decode(signature), text.encode("utf-8"),
                                         padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[str, str, dict[str, str], bytes], Reply]
"""(method, path with query, headers with lower-case names, body) → reply."""


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 that hands each request to ``handler``.

    :meth:`stall` makes it swallow the next request to a path: the handler thread waits
    (on an event, released at :meth:`stop`) and never answers, so the client times out —
    a request lost on the way, as far as the client can tell.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._stalls: dict[str, int] = {}
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []
        """Every request received (method, path, body), answered or swallowed."""
        owner = self

        class Handle(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with owner._lock:
                    owner.requests.append((self.command, self.path, body))
                    stalled = owner._stalls.get(path, 0) > 0
                    if stalled:
                        owner._stalls[path] -= 1
                if stalled:
                    owner._released.wait()
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = owner._handler(self.command, self.path, headers, body)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve

            def log_message(self, *_args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handle)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def stall(self, path: str, times: int = 1) -> None:
        with self._lock:
            self._stalls[path] = self._stalls.get(path, 0) + times

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._http.shutdown()
        self._http.server_close()


TradeT = TypeVar("TradeT")


class ProviderServer(Generic[TradeT]):
    """A local provider: its trades by ``out_trade_no``, a lock over them, the HTTP server
    handing each request to :meth:`_handle`, and the payer a test scripts for 付款码:
    ``declines[code]`` = the provider's error for that code; ``waits[code] = n``: the payer
    is still confirming for n queries, then pays (``-1``: never)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.trades: dict[str, TradeT] = {}
        self.declines: dict[str, str] = {}
        self.waits: dict[str, int] = {}
        self._lock = threading.Lock()
        self.http = LocalServer(self._handle)
        self.url = self.http.url

    def __enter__(self) -> Self:
        self.http.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.http.stop()

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    def _payer_done(self, code: str) -> bool:
        """One query of a code still waiting for its payer: has the payer now paid?"""
        waits = self.waits.get(code, 0)
        if waits > 0:
            self.waits[code] = waits - 1
        return waits == 0
