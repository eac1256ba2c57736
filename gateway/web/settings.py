"""What the web front needs to know beyond the gateway: its cookie key and security knobs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import DEFAULT_LANE_STALE_S


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Dashboard and pay-page settings.

    ``secret_key`` signs the session cookie and the pay page's ticket tokens: keep it in a
    file readable only by the gateway (:func:`load_secret_key` makes one on first start).
    ``https_only`` marks the cookie ``Secure``: on for any site reached over HTTPS (behind
    the site's TLS proxy); it is implied when the server itself holds a certificate
    (``tls_certfile`` and ``tls_keyfile``). ``forwarded_allow_ips`` lists the reverse
    proxies whose ``X-Forwarded-For``/``-Proto`` are believed: none by default, so a
    forged header changes neither the client address the rate limits count nor the scheme.
    """

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    session_hours: int = 12
    https_only: bool = False
    login_max_failures: int = 5
    """Failed logins per user name (from any address) per window."""
    login_max_failures_client: int = 10
    """Failed logins per client address (over any user names) per window."""
    login_max_failures_total: int = 100
    """Failed logins over the whole site per window: past it, every login waits."""
    login_window_s: float = 15 * 60
    pay_lookups_per_client: int = 20
    """Pay-page plate look-ups per client address per ``pay_window_s``."""
    pay_lookups_total: int = 600
    """Pay-page plate look-ups over the whole site per ``pay_window_s``."""
    pay_window_s: float = 60
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    forwarded_allow_ips: tuple[str, ...] = ()
    hsts_max_age_s: int = 180 * 24 * 3600
    live_poll_ms: int = 2000
    lane_stale_s: float = DEFAULT_LANE_STALE_S
    """A lane said online but not heard from (state, heartbeat or event) for longer is shown
    grey, "last seen N s ago". 35 s by default: lanes repeat their unchanged state at least
    every 10 s (``[timing] state_heartbeat_s``), so a quiet lane at 3 a.m. stays fresh and
    one whose worker or link died greys after three missed heartbeats. It is measured on the
    dashboard's clock (a simulated site's clock in the simulator). 0 turns the age test off;
    losing the broker greys every lane anyway. The gateway takes it from ``[web]
    lane_stale_s`` (:class:`gateway.config.WebConfig`)."""
    coupon_cap_fen: int = 6_000
    """The most a free-minutes or full-free coupon may cost its merchant (the daily cap)."""
    coupon_valid_hours: int = 24
    pay_page_title: str = "停车缴费 Parking payment"
    metrics_allow: tuple[str, ...] = ()
    """Addresses or networks that may read ``/metrics`` (the site's Prometheus)."""
    metrics_token: str | None = field(default=None, repr=False)
    """Or a bearer token that may; neither set: ``/metrics`` answers 404."""

    def __post_init__(self) -> None:
        if self.lane_stale_s < 0:
            raise ValueError(f"lane_stale_s: must be 0 (off) or more seconds, got "
                             f"{self.lane_stale_s}")

    @property
    def tls(self) -> bool:
        """Whether the server itself speaks TLS (it holds a certificate and its key)."""
        return self.tls_certfile is not None and self.tls_keyfile is not None

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies are marked ``Secure``: behind HTTPS, or serving TLS itself."""
        return self.https_only or self.tls


def load_secret_key(path: Path) -> str:
    """The session key kept in ``path`` (mode 0600), made on first use."""
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= 32:
            return key
        raise ValueError(f"{path}: session key is shorter than 32 characters")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key + "\n", encoding="utf-8")
    return key
