"""The receiver's check on a message's own time: its stamp must be near the receiver's clock.

The models refuse what no site could mean (a time outside 2000-2099, see
``messages.EARLIEST``); how close a message's stamp must be to *now* depends on who receives
it and when, so it is checked here, with the receiver's clock and a configured window, and
the models stay pure values. A message stamped far in the future or long ago is refused with
a :class:`~parkguard.errors.ContractError` that names the field, so the receiver dead-letters
it like any other malformed message.

>>> from datetime import UTC, datetime
>>> from wire.contract.messages import LaneState
>>> state = LaneState(lane="in1", online=True, direction="entry", ts="2026-05-01T02:00:00Z")
>>> ReceiptWindow().check(state, datetime(2026, 5, 1, 2, 1, tzinfo=UTC))
>>> try:
...     ReceiptWindow().check(state, datetime(2026, 4, 1, tzinfo=UTC))
... except ContractError as error:
...     print(str(error).split(" of ")[0])
LaneState: ts: 2026-05-01T02:00:00.000Z is 30 days, 2:00:00 ahead
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from parkguard.clock import utc_iso
from parkguard.errors import ContractError
from wire.contract.messages import WireValue, decode

#: The field that says when the sender made each message (its "stamp"); the other times in a
#: message (a pass's validity, an alarm's ``since``) may lie far from now and are only bounded
#: by the contract's range.
STAMP_FIELDS: Final[dict[str, str]] = {
    "LaneCommand": "issued",
    "PatrolTap": "uploaded",
    "ReplicaSnapshot": "taken_at",
}


class ReceiptWindow(BaseModel):
    """How far a message's stamp may be from the receiver's clock.

    The past bound is long because lanes journal while the gateway is away and upload when it
    is back (and retained messages are as old as their last change); the future bound is
    short because no sender's clock should run ahead by more than NTP's slack.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_age_hours: int = Field(
        default=24 * 31, ge=1, le=24 * 3660,
        description="a message stamped longer ago than this is dead-lettered (lanes upload "
                    "their journal after an outage: keep it longer than any outage)")
    max_ahead_s: int = Field(
        default=600, ge=1, le=86_400,
        description="a message stamped further ahead of the receiver's clock than this is "
                    "dead-lettered (clock skew allowed between a sender and the receiver)")

    @property
    def max_age(self) -> timedelta:
        return timedelta(hours=self.max_age_hours)

    @property
    def max_ahead(self) -> timedelta:
        return timedelta(seconds=self.max_ahead_s)

    def check(self, message: BaseModel, received_at: datetime) -> None:
        """Refuse ``message`` if its stamp is outside the window around ``received_at``."""
        field = STAMP_FIELDS.get(type(message).__name__, "ts")
        stamp = getattr(message, field, None)
        if not isinstance(stamp, datetime):
            return  # no stamp (an optional one left out): the contract's range bounds the rest
        where = f"{type(message).__name__}: {field}: {utc_iso(stamp)} is"
        clock = f"the receiver's clock ({utc_iso(received_at)})"
        if stamp > received_at + self.max_ahead:
            raise ContractError(f"{where} {stamp - received_at} ahead of {clock}; at most "
                                f"{self.max_ahead} is allowed")
        if stamp < received_at - self.max_age:
            raise ContractError(f"{where} {received_at - stamp} older than {clock}; at most "
                                f"{self.max_age} is allowed")

    def receive(self, topic: str, payload: bytes | str, received_at: datetime) -> WireValue:
        """:func:`~wire.contract.messages.decode`, then :meth:`check`: what a receiver uses."""
        value = decode(topic, payload)
        self.check(value, received_at)
        return value
