"""The Phoenix score on the card: one context line, the anchor's words, the extension's series.

The line reads "Phoenix 5 at 09:00 EST: respiratory 2, cardiovascular 2, coagulation 1; onset
1 d 12 h ago. Not charted (0 points): INR, D-dimer." in the site's time zone; out of scope it says
why instead of a score. The extension (`context.phoenix`) carries the hourly series of the last
`series_days` of the course for the trajectory view. The score is context and anchor only; no
drug is named (infusions are counted, never listed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cds_service import card_text as fmt
from model.phoenix import MISSING_DISPLAY, OUT_OF_SCOPE_DISPLAY, PhoenixPoint
from model.phoenix_context import PhoenixContext

ORGAN_DYSFUNCTION_ANCHOR = "organ dysfunction, Phoenix score ≥ 2"
SEPSIS_ANCHOR = "sepsis, Phoenix score ≥ 2 with suspected infection"
SUBSCORES = ("respiratory", "cardiovascular", "coagulation", "neurologic")


def anchor_text(phoenix: PhoenixContext | None) -> str:
    """What a Phoenix anchor marks, for "Day N since onset (…)": sepsis only with the signal."""
    return SEPSIS_ANCHOR if phoenix and phoenix.infection else ORGAN_DYSFUNCTION_ANCHOR


def phoenix_line(phoenix: PhoenixContext, now: datetime, zone: str) -> str:
    """The one Phoenix line: the latest score with its subscores, the onset, what is absent."""
    course = phoenix.course
    if course is None:
        return f"Phoenix not scored: {phoenix.not_computed or 'no course'}."
    if course.out_of_scope is not None:
        return f"Phoenix not scored: {OUT_OF_SCOPE_DISPLAY[course.out_of_scope]}."
    latest = course.latest
    if latest is None:
        return "Phoenix not scored: no hour in the course."
    text = f"Phoenix {latest.total} at {fmt.clock(latest.time, zone)}"
    scored = [f"{name} {points}" for name, points in latest.subscores.items() if points]
    if scored:
        text += ": " + ", ".join(scored)
    text += f"; {_onset_text(phoenix, now, zone)}."
    absent = _absent(latest)
    return f"{text} Not charted (0 points): {absent}." if absent else text


def _onset_text(phoenix: PhoenixContext, now: datetime, zone: str) -> str:
    """'onset 1 d 12 h ago', or why there is none."""
    course = phoenix.course
    if phoenix.onset is not None:
        return f"onset {fmt.age(now - phoenix.onset.time)}"
    if phoenix.onset_before is not None:
        return f"≥ 2 since before {fmt.local(phoenix.onset_before, zone)}"
    if phoenix.incomplete and course is not None and course.onset is not None:
        return "onset not judged (older inputs unread)"
    days = fmt.num(round((course.end - course.start) / timedelta(days=1), 1)) if course else "?"
    return f"no score ≥ 2 in the last {days} d" if phoenix.truncated else "no score ≥ 2 this stay"


def _absent(point: PhoenixPoint) -> str:
    """The score's inputs missing at a point, in words (the Phoenix-8 extras are not listed)."""
    return ", ".join(MISSING_DISPLAY[key] for key in point.missing if key in MISSING_DISPLAY)


# --- extension ----------------------------------------------------------------------------------


def phoenix_extension(phoenix: PhoenixContext | None) -> dict[str, Any] | None:
    """`context.phoenix`: the series (hourly, the latest `series_hours`), onset, latest, scope."""
    if phoenix is None:
        return None
    course = phoenix.course
    if course is None:
        return {"notComputed": phoenix.not_computed}
    cut = course.end - timedelta(hours=phoenix.series_hours)
    series = [point for point in course.points if point.time >= cut]
    entry: dict[str, Any] = {
        "package": course.package,
        "criterion": phoenix.criterion,
        "courseStart": fmt.iso(course.start),
        "truncated": phoenix.truncated or None,
        "incomplete": phoenix.incomplete or None,
        "seriesHours": phoenix.series_hours,
        "series": [_point(point, course.phoenix8) for point in series],
        "onset": _point(phoenix.onset, course.phoenix8) if phoenix.onset else None,
        "onsetBefore": fmt.iso(phoenix.onset_before) if phoenix.onset_before else None,
        "latest": _point(course.latest, course.phoenix8) if course.latest else None,
        "outOfScope": course.out_of_scope.value if course.out_of_scope else None,
        "infectionSignal": _infection(phoenix),
        "excluded": dict(phoenix.excluded) if phoenix.excluded else None,
        "carryForwardHours": dict(course.carry_forward_hours),
    }
    if course.phoenix8:
        entry["phoenix8"] = {"researchOnly": True}
    return entry


def _point(point: PhoenixPoint, phoenix8: bool) -> dict[str, Any]:
    """One hour of the course: time, total, the four subscores and the inputs missing."""
    entry: dict[str, Any] = {"time": fmt.iso(point.time), "total": point.total}
    entry |= {name: getattr(point, name) for name in SUBSCORES}
    entry["missing"] = list(point.missing)
    if phoenix8 and point.phoenix8_total is not None:
        entry["phoenix8"] = {"total": point.phoenix8_total, **(point.phoenix8_subscores or {})}
    return entry


def _infection(phoenix: PhoenixContext) -> dict[str, Any] | None:
    """The infection signal's basis and time (no resource ids: they may name drug orders)."""
    signal = phoenix.infection
    if signal is None:
        return None
    return {"basis": signal.basis, "time": fmt.iso(signal.time)}
