"""Upper limits of normal and "markedly raised" thresholds, per result, with their basis.

Upper limit, best first: the Observation's own referenceRange.high (the laboratory's, specimen-
specific); a per-assay limit the site sets (`rules.upper_limits`, matched by analyte and, when
given, by code); the rule file's published default. "Markedly raised": a multiple of that upper
limit where the site sets one (`rules.marked_uln_multiple`), else the rule file's threshold (a
cited cut-off, or the service's default multiple). A result at or below its upper limit is never
markedly raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fhir_mappings.measurement import Measurement
from fhir_mappings.units import UnitConversionError, convert
from model.comparison import exceeds
from model.rule_settings import RuleSettings, SiteUpperLimit
from model.rules_v2 import MarkerSpec, RuleSetV2
from model.states import Judgement, LimitSource, MarkedBasis, MarkedThreshold, UpperLimit

LAB_LIMIT_TEXT = "laboratory reference range"


class Limits:
    """The upper limits and thresholds of one rule set with one site's settings."""

    def __init__(self, rule_set: RuleSetV2, settings: RuleSettings) -> None:
        """Check the site's limits and multiples against the rule set; ValueError if unusable."""
        self.markers: Mapping[str, MarkerSpec] = rule_set.markers
        self.site_limits = tuple(
            _checked_limit(limit, self.markers) for limit in settings.upper_limits
        )
        self.multiples = _checked_multiples(settings.marked_uln_multiple, self.markers)

    def judge(self, measurement: Measurement) -> Judgement:
        """One axis result against its upper limit and its markedly-raised threshold."""
        spec = self.markers[measurement.analyte]
        upper = self.upper_limit(measurement)
        above = exceeds(measurement, upper.value, inclusive=False) if upper else None
        threshold = self.threshold(measurement.analyte, upper)
        marked = exceeds(measurement, threshold.value, inclusive=threshold.inclusive)
        if measurement.unit != spec.unit:
            above = marked = None
        elif marked and above is False:
            marked = False  # within the laboratory's own limit: never markedly raised
        return Judgement(measurement, upper, above, threshold, marked)

    def upper_limit(self, measurement: Measurement) -> UpperLimit | None:
        """The best upper limit for this result: laboratory, site, then published default."""
        spec = self.markers[measurement.analyte]
        if measurement.reference_high is not None:
            text = measurement.reference_text or LAB_LIMIT_TEXT
            return UpperLimit(measurement.reference_high, spec.unit, LimitSource.LABORATORY, text)
        site = _site_limit(self.site_limits, measurement)
        if site is not None:
            return UpperLimit(site.value, spec.unit, LimitSource.SITE, site.source)
        default = spec.upper_limit
        return UpperLimit(default.value, spec.unit, LimitSource.PUBLISHED, default.text)

    def threshold(self, analyte: str, upper: UpperLimit | None) -> MarkedThreshold:
        """The site's multiple of `upper` where set, else the rule file's threshold."""
        spec = self.markers[analyte]
        site_multiple = self.multiples.get(analyte)
        if site_multiple is not None and upper is not None:
            return _multiple(spec, site_multiple, upper, MarkedBasis.SITE_MULTIPLE)
        marked = spec.marked
        if marked.multiple is not None:
            return _multiple(spec, marked.multiple, upper, MarkedBasis.SERVICE_MULTIPLE)
        source = marked.source
        return MarkedThreshold(
            value=float(marked.value or 0),
            unit=spec.unit,
            inclusive=marked.inclusive,
            basis=MarkedBasis.CITED,
            short=source.short if source else marked.basis,
            citation=source.citation if source else "",
            citation_url=source.link if source else "",
        )


def _multiple(
    spec: MarkerSpec, multiple: float, upper: UpperLimit | None, basis: MarkedBasis
) -> MarkedThreshold:
    """A threshold of `multiple` × the upper limit (the published default when none is known)."""
    limit = upper.value if upper is not None else spec.upper_limit.value
    inclusive = True if basis is MarkedBasis.SITE_MULTIPLE else spec.marked.inclusive
    short = "site multiple" if basis is MarkedBasis.SITE_MULTIPLE else "service default multiple"
    return MarkedThreshold(multiple * limit, spec.unit, inclusive, basis, short, multiple=multiple)


def _site_limit(
    limits: Sequence[SiteUpperLimit], measurement: Measurement
) -> SiteUpperLimit | None:
    """The site limit for this result's code, else the site limit for its analyte, else None."""
    token = f"{measurement.system}|{measurement.code}"
    for wanted in (token, None):
        for limit in limits:
            if limit.analyte == measurement.analyte and limit.code == wanted:
                return limit
    return None


def _checked_limit(limit: SiteUpperLimit, markers: Mapping[str, MarkerSpec]) -> SiteUpperLimit:
    """The site limit in the marker's canonical unit; ValueError for an unknown analyte or unit."""
    if limit.analyte not in markers:
        raise ValueError(
            f"rules.upper_limits: {limit.analyte!r} is not an axis analyte ({', '.join(markers)})"
        )
    unit = markers[limit.analyte].unit
    try:
        value = convert(limit.value, limit.unit, unit)
    except UnitConversionError as error:
        raise ValueError(f"rules.upper_limits for {limit.analyte}: {error}") from None
    return limit.model_copy(update={"value": value, "unit": unit})


def _checked_multiples(
    multiples: Mapping[str, float], markers: Mapping[str, MarkerSpec]
) -> dict[str, float]:
    """The site's multiples; ValueError for an unknown analyte or a multiple of 1 or less."""
    for analyte, multiple in multiples.items():
        if analyte not in markers:
            raise ValueError(
                f"rules.marked_uln_multiple: {analyte!r} is not an axis analyte "
                f"({', '.join(markers)})"
            )
        if not multiple > 1:
            raise ValueError(f"rules.marked_uln_multiple for {analyte} must be greater than 1")
    return dict(multiples)
