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


class RateLimiter:
    """At most ``limit`` hits per key in a sliding window of ``window_s`` seconds.

    Kept in memory: a restart forgets the counts. ``now`` is real (monotonic) time, not the
    site clock: the simulator's clock jumps, an attacker's guesses do not. The keys are of
    the caller's choosing (user names an attacker types), so keys whose window has passed
    are swept once there are more than ``max_keys`` of them.
    """

    def __init__(self, limit: int, window_s: float,
                 now: Callable[[], float] = time.monotonic, *, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._now = now
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        seen = self._hits.setdefault(key, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen

    def _sweep(self, now: float) -> None:
        if len(self._hits) > self._max_keys:
            for key in [k for k, seen in self._hits.items()
                        if not seen or seen[-1] <= now - self.window_s]:
                del self._hits[key]

    def full(self, key: str) -> bool:
        """Whether ``key`` has used up its window (without counting a hit)."""
        with self._lock:
            return len(self._recent(key, self._now())) >= self.limit

    def hit(self, key: str) -> None:
        with self._lock:
            now = self._now()
            self._recent(key, now).append(now)
            self._sweep(now)

    def take(self, key: str) -> bool:
        """Count a hit if the window has room; False (and nothing counted) if it has none."""
        with self._lock:
            now = self._now()
            seen = self._recent(key, now)
            if len(seen) >= self.limit:
                return False
            seen.append(now)
            self._sweep(now)
            return True

    def forget(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


GLOBAL = "*"


class LoginLimiter:
    """Failed logins, limited three ways within one window:

    * per account (whatever the address): ``per_account`` failures lock that user name, so
      guesses spread over many addresses do not add up to a brute force;
    * per client address: ``per_client`` failures lock the address, so spraying one guess
      over many user names does not escape the per-account count;
    * globally: ``overall`` failures lock every login until the window moves on, the last
      line against a botnet (it costs the office its logins for a while, not its passwords).

    The address is the socket's peer, or the proxy's forwarded one only when the server is
    told to trust that proxy (``forwarded_allow_ips``): a forged ``X-Forwarded-For`` from
    anyone else changes nothing.
    """

    def __init__(self, per_account: int, window_s: float, *, per_client: int = 10,
                 overall: int = 100, now: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._account = RateLimiter(per_account, window_s, now)
        self._client = RateLimiter(per_client, window_s, now)
        self._overall = RateLimiter(overall, window_s, now)

    def blocked(self, username: str, client: str) -> bool:
        return (self._account.full(username.lower()) or self._client.full(client)
                or self._overall.full(GLOBAL))

    def failed(self, username: str, client: str) -> None:
        self._account.hit(username.lower())
        self._client.hit(client)
        self._overall.hit(GLOBAL)

    def succeeded(self, username: str, client: str) -> None:
        """The account's count starts again; the address's and the site's do not (one good
        password does not buy a sprayer another round)."""
        self._account.forget(username.lower())
