"""The matcher's thresholds and edit costs: site configuration, one frozen model.

All distances are counted in quarters (0.25): a near-identical confusion costs one quarter,
an unrelated character four. Keeping every cost a multiple of 0.25 makes distances exact,
so "two candidates equally close" is a true equality, never a rounding accident, and lets
:class:`~parkguard.core.plates.index.PlateIndex` compare thousands of plates at once.

>>> policy = MatchPolicy(max_distance=0.75)
>>> policy.max_distance, policy.min_margin
(0.75, 0.5)
>>> from pydantic import ValidationError
>>> try:
...     MatchPolicy(max_distance=0.3)
... except ValidationError as error:
...     print(error.errors()[0]["msg"])
Input should be a multiple of 0.25
"""

from __future__ import annotations

from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The unit every cost and threshold is a multiple of.
QUARTER: Final = 0.25
#: The largest ``suggest_distance`` accepted (the index's work grows with it).
MAX_SEARCH_DISTANCE: Final = 4.0


def quarters(value: float) -> int:
    """``0.75`` → ``3``: a cost or a threshold in the matcher's integer unit."""
    return round(value / QUARTER)


class MatchPolicy(BaseModel):
    """When a fuzzy read counts as a car inside, when it goes to a guard, and what edits cost.

    The defaults suit one camera per lane on a site where most cars share a province and an
    issuing authority; ``docs/plates.md`` says when to change each.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_distance: float = Field(
        default=1.0, ge=0, le=MAX_SEARCH_DISTANCE, multiple_of=QUARTER,
        description="a read matches a car inside only if its distance is at most this "
                    "(1.0: one unrelated mistake, or up to four near-identical confusions)")
    min_margin: float = Field(
        default=0.5, ge=QUARTER, le=MAX_SEARCH_DISTANCE, multiple_of=QUARTER,
        description="the runner-up must be at least this much further than the best, or the "
                    "read is ambiguous and goes to a guard; at least 0.25, so equally close "
                    "candidates are never a match")
    exact_match_wins: bool = Field(
        default=True,
        description="a read identical to a car inside (distance 0) matches it even if another "
                    "car inside is within min_margin of the read")
    suggest_distance: float = Field(
        default=2.0, ge=0, le=MAX_SEARCH_DISTANCE, multiple_of=QUARTER,
        description="cars inside up to this distance are listed for the guard and as the "
                    "runner-up; nothing further away is looked at")
    max_suggestions: int = Field(
        default=5, ge=2, le=20, description="how many candidates the guard is shown at most")
    unknown_cost: float = Field(
        default=0.5, ge=QUARTER, le=1.0, multiple_of=QUARTER,
        description="cost of a character the reader marked unknown ('?'); also the floor a "
                    "character's cost falls to as its confidence goes to 0")
    province_cost: float = Field(
        default=0.5, ge=QUARTER, le=1.0, multiple_of=QUARTER,
        description="cost of one province character read as another (the least reliable "
                    "character of a plate)")
    end_gap_cost: float = Field(
        default=0.5, ge=QUARTER, le=2.0, multiple_of=QUARTER,
        description="cost of a first or last character lost (or an extra one picked up, e.g. "
                    "a frame screw) at either end of the plate")
    gap_cost: float = Field(
        default=1.0, ge=QUARTER, le=2.0, multiple_of=QUARTER,
        description="cost of a character lost or added inside the plate (a doubled character "
                    "read once)")

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.suggest_distance < self.max_distance:
            raise ValueError(f"suggest_distance {self.suggest_distance} must not be below "
                             f"max_distance {self.max_distance}")
        if self.end_gap_cost > self.gap_cost:
            raise ValueError(f"end_gap_cost {self.end_gap_cost} must not exceed gap_cost "
                             f"{self.gap_cost}: losing an edge character is the likelier mistake")
        return self


DEFAULT_POLICY: Final = MatchPolicy()
