"""The plates area's error: what was wrong, at which character, and why."""

from __future__ import annotations

from parkguard.errors import ParkGuardError


class PlateError(ParkGuardError, ValueError):
    """A plate, a camera read or a no-plate identity is invalid; names the position and why.

    ``position`` is 0-based (``None`` when the whole text is at fault, e.g. its length);
    the message counts from 1, as a person reading the plate does.

    >>> error = PlateError("京AI2345", 2, "'I' is never used in a serial (it reads as 1)")
    >>> str(error)
    "'京AI2345': position 3: 'I' is never used in a serial (it reads as 1)"
    >>> (error.position, error.reason)
    (2, "'I' is never used in a serial (it reads as 1)")
    """

    def __init__(self, text: str, position: int | None, reason: str) -> None:
        self.text = text
        self.position = position
        self.reason = reason
        where = "" if position is None else f" position {position + 1}:"
        super().__init__(f"{text!r}:{where} {reason}")

    def __reduce__(self) -> tuple[type[PlateError], tuple[str, int | None, str]]:
        return (type(self), (self.text, self.position, self.reason))
