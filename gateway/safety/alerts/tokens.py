"""Signed acknowledgement links: a token names the alert, the person and an expiry, and
only this gateway's key makes one that verifies."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta

from gateway.safety.alerts.errors import AckTokenError
from gateway.safety.alerts.values import AckClaim
from parkguard.clock import Clock, utc_iso


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AckSigner:
    """Makes and checks the tokens of acknowledgement links for one site."""

    def __init__(self, key: bytes, *, site: str, clock: Clock, ttl_min: int) -> None:
        self._key = key
        self._site = site
        self._clock = clock
        self._ttl = timedelta(minutes=ttl_min)

    def token(self, alert_id: str, person: str, *, now: datetime | None = None) -> str:
        expires = (now or self._clock.now()) + self._ttl
        claim = json.dumps({"a": alert_id, "p": person, "e": int(expires.timestamp()),
                            "n": secrets.token_hex(4)}, separators=(",", ":"))
        body = _b64(claim.encode())
        return f"{body}.{_b64(self._sign(body))}"

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, f"parkguard-ack.{self._site}.{body}".encode(),
                        hashlib.sha256).digest()

    def verify(self, token: str) -> AckClaim:
        """What a link says, if this gateway signed it and it has not expired; otherwise
        :class:`AckTokenError` (``malformed``, ``forged``, ``expired``)."""
        body, dot, signature = token.strip().partition(".")
        if not dot or not body or not signature:
            raise AckTokenError("malformed")
        try:
            given = _unb64(signature)
            claim = json.loads(_unb64(body))
            alert_id, person, expires_s = str(claim["a"]), str(claim["p"]), int(claim["e"])
        except (ValueError, KeyError, TypeError) as error:
            raise AckTokenError("malformed") from error
        if not hmac.compare_digest(given, self._sign(body)):
            raise AckTokenError("forged")
        expires = datetime.fromtimestamp(expires_s, tz=self._clock.now().tzinfo)
        if self._clock.now() >= expires:
            raise AckTokenError("expired", f"expired at {utc_iso(expires)}")
        digest = hashlib.sha256(token.encode()).hexdigest()
        return AckClaim(alert_id, person, expires, digest)

