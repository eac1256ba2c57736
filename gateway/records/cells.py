"""One CSV cell made safe for a spreadsheet: shared by every report that writes CSV (the
site's day and the patrols'), in a module of its own so neither report imports the other."""

from __future__ import annotations

import re

#: What a spreadsheet reads as the start of a formula (or, tab and CR, a cell it re-parses).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def csv_cell(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula, made inert with a leading
    ``'`` (plates come from lanes, tags from readers, reasons from people: none may run on
    the office PC). Numbers, and text that is just a number (``-3``), are left alone."""
    if (isinstance(value, str) and value.startswith(_FORMULA_STARTS)
            and not _PLAIN_NUMBER.fullmatch(value)):
        return "'" + value
    return value
