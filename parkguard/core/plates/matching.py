"""Which car inside a read belongs to: a match, "ambiguous" for a guard, or none.

The rules (thresholds in :class:`~parkguard.core.plates.policy.MatchPolicy`):

1. Only cars inside are candidates (the :class:`~parkguard.core.plates.index.PlateIndex`).
2. Candidates are ranked by the confusion-weighted distance of ``distance.py``; those within
   ``suggest_distance`` are the guard's list (at most ``max_suggestions``).
3. The closest is a **match** if it is within ``max_distance`` and unique: the runner-up is
   at least ``min_margin`` further. Two candidates closer than that are **ambiguous**: a
   guard chooses, the matcher never guesses. A read identical to a car inside matches it
   (``exact_match_wins``).
4. Otherwise **none**, saying how close the closest came.

The result keeps the raw read, the normalised read, the plate, the score and the edits that
explain the score: what a session stores as evidence (:meth:`MatchResult.evidence`).

>>> inside = PlateIndex(["粤B12345", "粤B67890", "沪AD12345"])
>>> result = match(OcrRead("粤B1234S"), inside)
>>> result.outcome, result.plate, result.score
('match', '粤B12345', 0.25)
>>> print(result.reason)
closest car inside is 0.25 away (position 7: read 'S' for '5' (0.25)); no other car inside within 2
>>> match("粤B1234?", PlateIndex(["粤B12345", "粤B12346"])).outcome
'ambiguous'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from parkguard.core.plates.distance import Costs, Edit, OcrRead, explain
from parkguard.core.plates.identity import NoPlateId, is_no_plate
from parkguard.core.plates.index import PlateIndex
from parkguard.core.plates.policy import DEFAULT_POLICY, QUARTER, MatchPolicy

Outcome = Literal["match", "ambiguous", "none"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A car inside and how far the read is from its plate."""

    plate: str
    score: float

    def __str__(self) -> str:
        return f"{self.plate} ({self.score:g})"


@dataclass(frozen=True, slots=True)
class MatchResult:
    """What the matcher decided about one read, and why."""

    outcome: Outcome
    #: The read as received (an OCR string with ``?``, or a no-plate identity).
    raw: str
    #: The read as compared: cleaned like a plate.
    read: str
    #: The car inside that matched; None unless ``outcome == "match"``.
    plate: str | None
    #: The matched plate's distance; None unless ``outcome == "match"``.
    score: float | None
    #: One sentence for the log, the control room and a fee complaint.
    reason: str
    #: The second-closest car inside within ``suggest_distance`` (None if there is none).
    runner_up: Candidate | None
    #: The closest cars inside, closest first, at most ``max_suggestions``: the guard's list.
    candidates: tuple[Candidate, ...]
    #: How the read differs from the matched plate (empty unless matched).
    edits: tuple[Edit, ...] = ()

    @property
    def is_match(self) -> bool:
        return self.outcome == "match"

    def evidence(self) -> dict[str, Any]:
        """A JSON-ready record to keep with the session: raw read, plate, score, reason."""
        return {
            "outcome": self.outcome, "raw_read": self.raw, "read": self.read,
            "plate": self.plate, "score": self.score, "reason": self.reason,
            "runner_up": None if self.runner_up is None
            else {"plate": self.runner_up.plate, "score": self.runner_up.score},
            "candidates": [{"plate": c.plate, "score": c.score} for c in self.candidates],
            "edits": [str(edit) for edit in self.edits],
        }


def match(read: OcrRead | NoPlateId | str, index: PlateIndex,
          policy: MatchPolicy = DEFAULT_POLICY) -> MatchResult:
    """The car inside ``index`` that ``read`` belongs to, or why there is none (see module)."""
    if isinstance(read, NoPlateId):
        return _match_no_plate(read, index)
    if isinstance(read, str) and is_no_plate(read.strip()):
        return _match_no_plate(NoPlateId.parse(read), index)
    ocr = read if isinstance(read, OcrRead) else OcrRead(read)
    normalised = ocr.normalised()
    text = normalised.text
    if not text:
        return _none(ocr.text, text, "nothing was read", ())
    costs = Costs.of(policy)
    found = index.nearest(normalised, costs)
    candidates = tuple(Candidate(plate, quarters * QUARTER)
                       for quarters, plate in found[: policy.max_suggestions])
    if not candidates:
        return _none(ocr.text, text, f"no car inside is within {policy.suggest_distance:g} "
                                     "of the read", ())
    best = candidates[0]
    runner_up = candidates[1] if len(candidates) > 1 else None
    if best.score > policy.max_distance:
        return _none(ocr.text, text, f"closest car inside, {best.plate}, is {best.score:g} "
                                     f"away; a match needs at most {policy.max_distance:g}",
                     candidates)
    close_second = runner_up is not None and runner_up.score - best.score < policy.min_margin
    exact = best.score == 0 and policy.exact_match_wins
    if close_second and not exact:
        assert runner_up is not None  # noqa: S101 (close_second implies it)
        return MatchResult(
            "ambiguous", ocr.text, text, None, None,
            f"{best} and {runner_up} are less than {policy.min_margin:g} apart: a guard "
            "must choose", runner_up, candidates)
    edits = explain(normalised, best.plate, policy)
    if exact:
        why = "read exactly as a car inside"
    else:
        why = f"closest car inside is {best.score:g} away ({'; '.join(map(str, edits))})"
    if runner_up is None:
        why += f"; no other car inside within {policy.suggest_distance:g}"
    elif close_second:
        why += f"; {runner_up} is also close, but an exact read wins"
    else:
        why += f"; next closest {runner_up}"
    return MatchResult("match", ocr.text, text, best.plate, best.score, why, runner_up,
                       candidates, edits)


def _none(raw: str, read: str, reason: str,
          candidates: tuple[Candidate, ...]) -> MatchResult:
    return MatchResult("none", raw, read, None, None, reason, None, candidates)


def _match_no_plate(identity: NoPlateId, index: PlateIndex) -> MatchResult:
    """No-plate identities match exactly or not at all, and only each other."""
    if index.has_no_plate(identity.text):
        hit = Candidate(identity.text, 0.0)
        return MatchResult("match", identity.text, identity.text, identity.text, 0.0,
                           f"no-plate identity {identity.masked} is inside", None, (hit,))
    return _none(identity.text, identity.text,
                 f"no car inside entered with {identity.masked}", ())
