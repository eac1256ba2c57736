"""Chinese plates: the grammar (GA 36-2018), normalisation, and fuzzy matching of dirty reads.

Pure code, no IO: the lane and the gateway import the same answers. ``docs/plates.md`` has
the series table, the normalisation rules, the distance and its weights, the thresholds.

>>> plate = parse_plate("粤B·12345")
>>> plate.series, plate.colour
(<PlateSeries.ORDINARY: 'ordinary'>, <ColourClass.BLUE_OR_YELLOW: 'blue_or_yellow'>)
>>> inside = PlateIndex([plate, "沪AD12345"])
>>> match(OcrRead("粤B1234S", (0.99, 0.98, 0.97, 0.99, 0.96, 0.98, 0.61)), inside).plate
'粤B12345'
"""

from parkguard.core.plates.distance import (
    CONFUSION_GROUPS,
    Edit,
    NormalisedRead,
    OcrRead,
    confusion_distance,
    explain,
)
from parkguard.core.plates.errors import PlateError
from parkguard.core.plates.grammar import (
    SHAPES,
    ColourClass,
    Plate,
    PlateSeries,
    Shape,
    is_plate,
    parse_plate,
)
from parkguard.core.plates.identity import NoPlateId, is_no_plate
from parkguard.core.plates.index import PlateIndex
from parkguard.core.plates.matching import Candidate, MatchResult, Outcome, match
from parkguard.core.plates.normalise import (
    Correction,
    Normalisation,
    normalise_plate,
    normalise_with_corrections,
)
from parkguard.core.plates.policy import DEFAULT_POLICY, MatchPolicy
from parkguard.core.plates.reads import matchable_read, ocr_read, stored_spelling

__all__ = [
    "CONFUSION_GROUPS",
    "DEFAULT_POLICY",
    "SHAPES",
    "Candidate",
    "ColourClass",
    "Correction",
    "Edit",
    "MatchPolicy",
    "MatchResult",
    "NoPlateId",
    "Normalisation",
    "NormalisedRead",
    "OcrRead",
    "Outcome",
    "Plate",
    "PlateError",
    "PlateIndex",
    "PlateSeries",
    "Shape",
    "confusion_distance",
    "explain",
    "is_no_plate",
    "is_plate",
    "match",
    "matchable_read",
    "normalise_plate",
    "normalise_with_corrections",
    "ocr_read",
    "parse_plate",
    "stored_spelling",
]
