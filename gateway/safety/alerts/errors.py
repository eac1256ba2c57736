"""What can go wrong with an alert, an acknowledgement or a channel."""

from __future__ import annotations

from typing import Literal

from parkguard.errors import ParkGuardError


class AlertError(ParkGuardError, ValueError):
    """An alert action was refused (blank actor or reason, resolved already, ...)."""


class UnknownAlertError(AlertError, LookupError):
    """No alert has that id."""


class AckTokenError(AlertError):
    """A signed acknowledgement link was refused: ``reason`` is malformed, forged, expired
    or used."""

    def __init__(self, reason: Literal["malformed", "forged", "expired", "used"],
                 detail: str = "") -> None:
        super().__init__(f"acknowledgement link {reason}" + (f": {detail}" if detail else ""))
        self.reason = reason


class NotifyError(ParkGuardError, RuntimeError):
    """A channel did not take the message."""
