"""Scorer v2: per-sample states from rules v2, persistence, findings and the shared decision.

`conclude` turns a timeline and its per-sample states into an `Assessment`; the rule scorer
passes the rules' states, the model scorer the same states with its own class standing for the
latest early-window sample. Both therefore reach their pathway through `model.decision.decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from model.assessment import Assessment, Endotype, ScorerInfo, rule_set_info
from model.decision import decide
from model.findings import current_values, findings, inflammation_met
from model.limits import Limits, RuleSettings
from model.persistence import current_sample, persistence_of, sample_states
from model.rules_v2 import RuleSetV2, load_rules_v2
from model.states import SampleState
from model.timeframe import Timeline


class RulesV2Scorer:
    """Scorer v2: the IL-6/IFN-γ axis, sample by sample, with persistence."""

    def __init__(self, rule_set: RuleSetV2, content_hash: str, settings: RuleSettings) -> None:
        """Wrap a validated rule set, its file's sha256 and the site's limits and multiples."""
        self.rule_set = rule_set
        self.settings = settings
        self.limits = Limits(rule_set, settings)
        self._info = rule_set_info(rule_set, content_hash)

    @property
    def info(self) -> ScorerInfo:
        """Identity, version and content hash of the rule file."""
        return self._info

    @property
    def decision_analytes(self) -> tuple[str, ...]:
        """The analytes the decision reads: both axes, then the required ones."""
        return tuple(dict.fromkeys((*self.rule_set.axis_analytes, *self.rule_set.required)))

    def states(self, timeline: Timeline) -> tuple[SampleState, ...]:
        """The level at every sampling time of an axis analyte."""
        return sample_states(timeline, self.rule_set, self.limits)

    def assess(self, timeline: Timeline) -> Assessment:
        """Judge every sample by the rules, then decide."""
        return self.conclude(timeline, self.states(timeline))

    def conclude(
        self,
        timeline: Timeline,
        samples: Sequence[SampleState],
        *,
        not_high_endotype: Endotype | None = None,
    ) -> Assessment:
        """Persistence, findings and the shared decision from per-sample states."""
        rule_set = self.rule_set
        gap = timedelta(hours=rule_set.persistence_gap_hours)
        persistence = persistence_of(samples, timeline, gap)
        values = current_values(timeline, rule_set.analytes)
        found = findings(rule_set, timeline, values, current_sample(samples))
        decision = decide(
            samples,
            timeline.frame,
            rule_set,
            values,
            inflamed=inflammation_met(rule_set, found),
            not_high_endotype=not_high_endotype,
        )
        return Assessment(
            pathway=decision.pathway,
            endotype=decision.endotype,
            scorer=self.info,
            evidence=found,
            used={a: timeline.series[a] for a in rule_set.analytes if a in timeline.series},
            missing=tuple(a for a in self.decision_analytes if a not in values),
            required=self.decision_analytes,
            reasons=decision.reasons,
            limitations=rule_set.limitations,
            kind=decision.kind,
            frame=timeline.frame,
            current=decision.current,
            persistence=persistence,
            findings=found,
            current_values=values,
            unmet=decision.unmet,
            axis_analytes=rule_set.axis_analytes,
        )


def load_rules_v2_scorer(
    settings: RuleSettings | None = None, path: Path | None = None
) -> RulesV2Scorer:
    """The packaged rules v2 (or a site's copy at `path`) with the site's limits and multiples."""
    rule_set, content_hash = load_rules_v2(path)
    return RulesV2Scorer(rule_set, content_hash, settings or RuleSettings())
