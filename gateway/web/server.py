"""Uvicorn in a thread, so the gateway process serves its dashboard beside its worker.

Two settings are explicit rather than uvicorn's defaults: proxy headers are believed only
from ``WebSettings.forwarded_allow_ips`` (uvicorn otherwise trusts ``X-Forwarded-For`` from
127.0.0.1, so anything on the gateway's host could pick the address the rate limits
count), and TLS is served when the settings name a certificate and its key.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

import uvicorn

from gateway.web.app import RunningGateway, create_web_app
from gateway.web.settings import WebSettings
from parkguard.clock import Clock

log = logging.getLogger(__name__)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class WebServer:
    """The dashboard on ``host:port`` (port 0: a free one), started and stopped with the
    gateway. ``url`` is where it listens once started."""

    def __init__(self, gateway_app: RunningGateway, host: str = "127.0.0.1", port: int = 0, *,
                 settings: WebSettings | None = None, clock: Clock | None = None) -> None:
        settings = settings or WebSettings()
        self.app = create_web_app(gateway_app, settings=settings, clock=clock)
        self.host = host
        self.tls = settings.tls
        if not _loopback(host) and not settings.secure_cookies:
            log.warning("web: the dashboard listens on %s without TLS: its cookies and "
                        "passwords cross the network in clear (docs/dashboard.md, TLS)", host)
        self._socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=2,
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=list(settings.forwarded_allow_ips) or None,
            ssl_certfile=settings.tls_certfile if settings.tls else None,
            ssl_keyfile=settings.tls_keyfile if settings.tls else None))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> WebServer:
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._socket]},
                                        name="web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> WebServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
