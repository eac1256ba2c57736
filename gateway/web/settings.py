"""What the web front needs to know beyond the gateway: its cookie key and security knobs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WebSettings:
    """Dashboard and pay-page settings.

    ``secret_key`` signs the session cookie: keep it in a file readable only by the gateway
    (:func:`load_secret_key` makes one on first start). ``https_only`` marks the cookie
    ``Secure``: on for any site reached over HTTPS (behind the site's TLS proxy).
    """

    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    session_hours: int = 12
    https_only: bool = False
    login_max_failures: int = 5
    login_window_s: float = 15 * 60
    live_poll_ms: int = 2000
    coupon_cap_fen: int = 6_000
    """The most a free-minutes or full-free coupon may cost its merchant (the daily cap)."""
    coupon_valid_hours: int = 24
    pay_page_title: str = "停车缴费 Parking payment"


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
