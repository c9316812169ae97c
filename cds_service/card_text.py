"""Small text helpers for cards: markdown escaping, code spans, numbers, local times and ages.

Values, units and codes sit in code spans so UCUM units such as `10*3/uL` are shown literally;
free text from results is made inert in markdown. Times are shown in the site's time zone with
its abbreviation, and with their age ("6 h ago") relative to the assessment time.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from fhir_mappings.measurement import Measurement
from fhir_mappings.panel import LOINC_SYSTEM

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]~]|<(?=[A-Za-z/!?]))")


def text(value: str) -> str:
    """Free text made inert in markdown: emphasis, link, code and HTML openers escaped."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", value)


def code(value: str) -> str:
    """A code span showing `value` literally (backticks inside become quotes)."""
    return "`" + value.replace("`", "'") + "`"


def url(value: str) -> str:
    """A URL safe inside a markdown link target."""
    return value.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def link(label: str, target: str) -> str:
    """A markdown link with an escaped label, or the label alone without a target."""
    return f"[{text(label)}]({url(target)})" if target else text(label)


def num(value: float) -> str:
    """A number with thousands separators and without float noise or a trailing '.0'."""
    rounded = f"{round(value, 4):,.4f}".rstrip("0").rstrip(".")
    return rounded if rounded not in ("", "-0") else "0"


def quantity(result: Measurement) -> str:
    """Comparator, value and unit after conversion, e.g. '<5 pg/mL'."""
    return f"{result.comparator or ''}{num(result.value)} {result.unit}"


def source_quantity(result: Measurement) -> str:
    """The value and unit as the laboratory sent them."""
    value = num(result.source_value) if result.source_value is not None else "?"
    return f"{result.comparator or ''}{value} {result.source_unit}"


def unit_notes(result: Measurement) -> str:
    """The notes on a value's unit: assumed from the code, and converted from another unit."""
    notes = ""
    if result.unit_assumed:
        notes += (
            f" (unit not sent; assumed {code(result.source_unit or result.unit)} from the code)"
        )
    if result.converted:
        notes += f" (converted from {code(source_quantity(result))})"
    return notes


def token(result: Measurement) -> str:
    """The matched coding as a FHIR token, system|code."""
    return f"{result.system}|{result.code}"


def short_code(result: Measurement) -> str:
    """The LOINC code alone ('LOINC 26881-3'), or the full system|code token for other systems."""
    if result.system == LOINC_SYSTEM:
        return f"LOINC {result.code}"
    return token(result)


def iso(moment: datetime) -> str:
    """An ISO 8601 instant in UTC to the second, with a 'Z'."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name (KeyError-free: names are checked at start-up)."""
    return ZoneInfo(name)


def local(moment: datetime, zone_name: str) -> str:
    """'29 Nov 08:00 EST': day, month, time and zone abbreviation in the site's time zone."""
    shown = moment.astimezone(zone(zone_name))
    return f"{shown.day} {shown:%b %H:%M} {shown.tzname()}"


def age(span: timedelta) -> str:
    """How long ago, e.g. '<1 h ago', '6 h ago', '2 d 4 h ago'."""
    hours = int(span.total_seconds() // 3600)
    if hours < 1:
        return "<1 h ago"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h ago" if days else f"{hours} h ago"


def when(moment: datetime, now: datetime, zone_name: str) -> str:
    """'29 Nov 08:00 EST (28 h ago)'."""
    return f"{local(moment, zone_name)} ({age(now - moment)})"


def truncate(value: str, limit: int) -> str:
    """Cut text to `limit` characters with an ellipsis; a safety net, not the usual path."""
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def clock(moment: datetime, zone_name: str) -> str:
    """'09:00 EST': the time of day and zone abbreviation in the site's time zone."""
    shown = moment.astimezone(zone(zone_name))
    return f"{shown:%H:%M} {shown.tzname()}"
