"""The pay page's ticket token: proof of holding the car's ticket (or the exit lane's QR).

A typed plate alone shows only what is due; anyone can type any plate, so it must not tell
whether that car is inside or since when. The token is what a printed ticket or a lane's
QR code carries: the plate, the session id and an expiry, signed (itsdangerous, HMAC-SHA256)
with a key derived from the dashboard's secret key. With a valid token for the car's
current session the page shows the whole stay. A token is bound to one session: the
plate's next visit needs a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer

SALT = "parkguard.pay-ticket.v1"


@dataclass(frozen=True, slots=True)
class Ticket:
    plate: str
    session_id: str
    expires: datetime


class TicketSigner:
    """Makes and checks pay-page tokens with one site key."""

    def __init__(self, secret_key: str) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=SALT)

    def issue(self, plate: str, session_id: str, *, now: datetime,
              valid: timedelta = timedelta(days=7)) -> str:
        """The token a lane QR or a printed ticket carries for this car's session."""
        expires = int((now + valid).timestamp())
        return str(self._serializer.dumps([plate, session_id, expires]))

    def read(self, token: str, *, now: datetime) -> Ticket | None:
        """The ticket a token proves, or None: bad signature, wrong shape or expired."""
        if not token or len(token) > 512:
            return None
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            return None
        if (not isinstance(data, list) or len(data) != 3
                or not isinstance(data[0], str) or not isinstance(data[1], str)
                or not isinstance(data[2], int) or isinstance(data[2], bool)):
            return None
        expires = datetime.fromtimestamp(data[2], UTC)
        if expires <= now:
            return None
        return Ticket(data[0], data[1], expires)

    def proves(self, token: str, plate: str, session_id: str, *, now: datetime) -> bool:
        """Whether ``token`` is a live ticket for exactly this plate's session."""
        ticket = self.read(token, now=now)
        return ticket is not None and ticket.plate == plate and ticket.session_id == session_id
