"""Sessions, CSRF tokens and the login rate limit."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from starlette.requests import Request

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def client_of(request: Request) -> str:
    """The client's address, as the login limit and the logs name it."""
    return request.client.host if request.client else "unknown"


def csrf_token(request: Request) -> str:
    """This browser session's CSRF token, made on first use (logged in or not)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or len(token) < 20:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, given: str | None) -> bool:
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


class LoginLimiter:
    """At most ``max_failures`` failed logins per (user name, client address) per window.

    Kept in memory: a restart forgets the count, which costs an attacker a gateway restart
    per five guesses. ``now`` is real (monotonic) time, not the site clock: the simulator's
    clock jumps, an attacker's guesses do not.
    """

    def __init__(self, max_failures: int, window_s: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._now = now
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        seen = self._failures.setdefault(key, deque())
        cutoff = self._now() - self.window_s
        while seen and seen[0] <= cutoff:
            seen.popleft()
        return seen

    def blocked(self, username: str, client: str) -> bool:
        with self._lock:
            return len(self._recent((username.lower(), client))) >= self.max_failures

    def failed(self, username: str, client: str) -> None:
        with self._lock:
            self._recent((username.lower(), client)).append(self._now())

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), client), None)
