"""A reported value, with its comparator, against a threshold, in three-valued logic.

"<5" satisfies "≤ 5" but never "≥ t"; ">5000" satisfies "> 4420"; anything that cannot be decided
from what was reported (a comparator straddling the threshold, NaN) is None.
"""

from __future__ import annotations

import math
from typing import Literal

from fhir_mappings.measurement import Measurement

Operator = Literal[">=", ">", "<=", "<"]
_Interval = tuple[float, bool, float, bool]  # low, low closed, high, high closed


def _interval(value: float, comparator: str | None) -> _Interval | None:
    """The set of true values a reported value with its comparator allows; None if unknown."""
    if math.isnan(value):
        return None
    intervals: dict[str | None, _Interval] = {
        None: (value, True, value, True),
        "<": (-math.inf, False, value, False),
        "<=": (-math.inf, False, value, True),
        ">": (value, False, math.inf, False),
        ">=": (value, True, math.inf, False),
    }
    return intervals.get(comparator)


def _at_least(interval: _Interval, threshold: float, inclusive: bool) -> bool | None:
    """Whether every (True), no (False) or only some (None) values lie above the threshold."""
    low, low_closed, high, high_closed = interval
    if low > threshold or (low == threshold and (inclusive or not low_closed)):
        return True
    if high < threshold or (high == threshold and not (inclusive and high_closed)):
        return False
    return None


def satisfies(measurement: Measurement, operator: Operator, threshold: float) -> bool | None:
    """Whether the true value behind a reported result satisfies `operator threshold`."""
    interval = _interval(measurement.value, measurement.comparator)
    if interval is None:
        return None
    if operator in (">=", ">"):
        return _at_least(interval, threshold, operator == ">=")
    above = _at_least(interval, threshold, operator == "<")
    return None if above is None else not above


def exceeds(measurement: Measurement, threshold: float, *, inclusive: bool) -> bool | None:
    """Whether the result is at or above (`inclusive`) or strictly above the threshold."""
    return satisfies(measurement, ">=" if inclusive else ">", threshold)
