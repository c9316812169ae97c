"""Evaluate a model on a cohort: agreement, prognostic value, subgroups, threshold, decision curve.

`evaluate_model` returns a JSON-ready dict (the report's JSON twin); `render_report` turns it
into one self-contained HTML page with inline SVG plots. Intervals are percentile bootstrap 95%
intervals over patients. The model's probability is of the high-risk endotype, not of an
outcome: calibration against an outcome shows how far that probability is from outcome risk.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any

import numpy as np
from jinja2 import Environment
from markupsafe import Markup
from scipy.special import expit, logit
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tqdm import tqdm

from model.cohort import Cohort, PatientOutcome, cohort_timelines
from model.derive import derive_endotypes
from model.features import feature_matrix
from model.pipeline import EndotypeModel
from model.train import eligible_rows, subgroup_of

OUTCOMES: tuple[str, ...] = ("picu_death", "complicated_course", "sepsis")
INSUFFICIENT = "insufficient-data"
CALIBRATION_BINS = 10
DECISION_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.02, 0.81, 0.02))
Metric = Callable[[np.ndarray, np.ndarray], float]


def evaluate_model(
    model: EndotypeModel,
    cohort: Cohort,
    *,
    n_bootstrap: int = 200,
    random_state: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Every figure of the evaluation report, computed on one cohort."""
    features = feature_matrix(cohort_timelines(cohort, progress=progress), model.analytes)
    eligible = eligible_rows(features, model.analytes)
    scored = [row for row, keep in zip(cohort.outcomes, eligible, strict=True) if keep]
    probabilities = model.estimator.predict_proba(features[eligible])
    classes = [str(c) for c in model.estimator.classes_]
    high = probabilities[:, classes.index(model.high_risk_class)]
    predicted = _predicted_endotypes(probabilities, classes, high, model)
    boot = bootstrap_indices(len(scored), n_bootstrap, random_state)
    steps = tqdm(total=5, desc="evaluate", disable=not progress)
    report: dict[str, Any] = {"model": _model_identity(model), "cohort": _cohort_summary(cohort)}
    report["cohort"]["n_scored"] = len(scored)
    report["cohort"]["n_insufficient_data"] = int(np.sum(~eligible))
    report["agreement"] = _agreement(cohort, scored, features[eligible], predicted, model, boot)
    steps.update()
    report["prognostic"] = {o: _prognostic(_flags(scored, o), high, boot) for o in OUTCOMES}
    steps.update()
    report["outcomes_by_endotype"] = _outcomes_by_endotype(cohort.outcomes, eligible, predicted)
    report["subgroups"] = _subgroups(scored, high, boot)
    steps.update()
    report["threshold"] = _threshold_table(scored, high, model.threshold, boot)
    steps.update()
    report["decision_curve"] = _decision_curve(_flags(scored, "complicated_course"), high)
    steps.update()
    steps.close()
    return report


def _predicted_endotypes(
    probabilities: np.ndarray, classes: list[str], high: np.ndarray, model: EndotypeModel
) -> np.ndarray:
    """The scorer's rule: high-risk at or above the threshold, else the likeliest other class."""
    others = np.array(probabilities, copy=True)
    others[:, classes.index(model.high_risk_class)] = -1.0
    fallback = np.array(classes, dtype=object)[np.argmax(others, axis=1)]
    return np.where(high >= model.threshold, model.high_risk_class, fallback)


def bootstrap_indices(n: int, count: int, seed: int | Sequence[int]) -> np.ndarray:
    """`count` resamples (with replacement) of `n` patients, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(count, n)) if n else np.empty((count, 0), dtype=int)


def _resized(boot: np.ndarray, n: int, key: int) -> np.ndarray:
    """Fresh resamples of a subset of size `n`, seeded from the parent resamples."""
    seed = int(boot[0, 0]) if boot.size else 0
    return bootstrap_indices(n, len(boot), [seed, key, n])


def _flags(rows: Sequence[PatientOutcome], outcome: str) -> np.ndarray:
    return np.array([getattr(row, outcome) for row in rows], dtype=bool)


def _model_identity(model: EndotypeModel) -> dict[str, Any]:
    keys = ("model_id", "version", "content_hash", "threshold", "high_risk_class")
    identity = {key: model.metadata.get(key) for key in keys}
    identity["synthetic_training_data"] = bool(model.metadata.get("synthetic_training_data"))
    return identity


def _cohort_summary(cohort: Cohort) -> dict[str, Any]:
    return {
        "n_patients": len(cohort.outcomes),
        "synthetic": cohort.all_synthetic,
        "reference_labels": cohort.has_reference_labels,
    }


# --- metrics with bootstrap intervals ----------------------------------------------------------


def with_interval(metric: Metric, truth: np.ndarray, score: np.ndarray, boot: np.ndarray) -> dict:
    """Point estimate and percentile bootstrap 95% interval; None where undefined."""
    point = _safe(metric, truth, score)
    if point is None:
        return {"estimate": None, "ci95": None}
    with config_context(assume_finite=True, skip_parameter_validation=True):
        # Resamples of inputs already checked by the point estimate need no re-checking.
        draws = [_safe(metric, truth[i], score[i]) for i in boot]
    finite = np.array([d for d in draws if d is not None], dtype=float)
    if len(finite) < max(10, len(boot) // 2):
        return {"estimate": round(point, 4), "ci95": None}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"estimate": round(point, 4), "ci95": [round(float(low), 4), round(float(high), 4)]}


def _safe(metric: Metric, truth: np.ndarray, score: np.ndarray) -> float | None:
    if len(truth) == 0:
        return None
    try:
        value = float(metric(truth, score))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); ValueError for one class."""
    _require_both_classes(truth)
    return float(roc_auc_score(truth, score))


def auprc(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise precision over recall); ValueError without events."""
    if not truth.any():
        raise ValueError("no events")
    return float(average_precision_score(truth, score))


def _require_both_classes(truth: np.ndarray) -> None:
    """Raise ValueError unless `truth` holds both outcomes, as `_safe` expects."""
    if truth.all() or not truth.any():
        raise ValueError("one class only")


def calibration_slope(truth: np.ndarray, probability: np.ndarray) -> float:
    """Slope of the unpenalised logistic recalibration of the outcome on logit(probability)."""
    _require_both_classes(truth)
    if _separated(truth.astype(bool), probability):
        raise ValueError("outcome perfectly separated by probability: the slope is unbounded")
    recalibration = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            recalibration.fit(_logit(probability)[:, None], truth)
        except ConvergenceWarning as unconverged:
            raise ValueError("recalibration did not converge") from unconverged
    return float(recalibration.coef_[0, 0])


def _separated(truth: np.ndarray, probability: np.ndarray) -> bool:
    """Whether one threshold splits events from non-events, leaving no finite logistic fit."""
    events, others = probability[truth], probability[~truth]
    return bool(others.max() <= events.min() or events.max() <= others.min())


def calibration_intercept(truth: np.ndarray, probability: np.ndarray) -> float:
    """Calibration-in-the-large: intercept with logit(probability) as offset (Newton steps)."""
    _require_both_classes(truth)
    offset, intercept = _logit(probability), 0.0
    for _ in range(50):
        mean = expit(intercept + offset)
        step = np.sum(truth - mean) / max(np.sum(mean * (1 - mean)), 1e-12)
        intercept += step
        if abs(step) < 1e-10:
            break
    return intercept


def _logit(probability: np.ndarray) -> np.ndarray:
    return logit(np.clip(probability, 1e-6, 1 - 1e-6))


def brier(truth: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between probability and outcome."""
    return float(brier_score_loss(truth, probability, pos_label=True))


def balanced_accuracy(truth: np.ndarray, guess: np.ndarray) -> float:
    """Mean recall over the classes present in `truth`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(truth, guess))


def cohen_kappa(truth: np.ndarray, guess: np.ndarray) -> float:
    """Agreement beyond chance between two labellings; ValueError where it is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "A single label was found")
        value = float(cohen_kappa_score(truth, guess))
    if not np.isfinite(value):
        raise ValueError("agreement by chance is complete")
    return value


def calibration_curve(truth: np.ndarray, probability: np.ndarray) -> list[dict[str, float]]:
    """Observed outcome rate against mean probability in quantile bins."""
    # sklearn.calibration.calibration_curve does not return the per-bin counts the report keeps.
    if len(truth) == 0:
        return []
    edges = np.unique(np.quantile(probability, np.linspace(0, 1, CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, len(edges) - 2)
    points = []
    for b in np.unique(bins):
        inside = bins == b
        points.append(
            {
                "predicted": round(float(probability[inside].mean()), 4),
                "observed": round(float(truth[inside].mean()), 4),
                "n": int(inside.sum()),
            }
        )
    return points


def _prognostic(truth: np.ndarray, high: np.ndarray, boot: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {"n": int(len(truth)), "events": int(truth.sum())}
    for name, metric in (
        ("auroc", auroc),
        ("auprc", auprc),
        ("brier", brier),
        ("calibration_slope", calibration_slope),
        ("calibration_intercept", calibration_intercept),
    ):
        result[name] = with_interval(metric, truth, high, boot)
    result["calibration_curve"] = calibration_curve(truth, high)
    result["roc_curve"] = _curve(roc_curve, truth, high)
    result["pr_curve"] = _curve(_pr_points, truth, high)
    return result


def _pr_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    precision, recall, cutoffs = precision_recall_curve(truth, score)
    return recall, precision, cutoffs


def _curve(function: Callable, truth: np.ndarray, score: np.ndarray) -> list[list[float]]:
    if truth.all() or not truth.any():
        return []
    xs, ys, _ = function(truth, score)
    keep = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), 200)).astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in keep]


# --- agreement, outcomes by endotype, subgroups ------------------------------------------------


def _agreement(
    cohort: Cohort,
    scored: Sequence[PatientOutcome],
    features: np.ndarray,
    predicted: np.ndarray,
    model: EndotypeModel,
    boot: np.ndarray,
) -> dict[str, Any]:
    reference, source = _reference_labels(cohort, scored, features, model)
    labelled = np.array([label is not None for label in reference])
    truth = np.array([label for label in reference if label is not None], dtype=object)
    guess = predicted[labelled]
    if len(truth) == 0:
        return {"source": source, "n": 0}
    classes = sorted(set(truth) | set(guess))
    truth_codes, guess_codes = _shared_codes(truth, guess)
    kappa = with_interval(cohen_kappa, truth_codes, guess_codes, _resized(boot, len(truth), 0))
    return {
        "source": source,
        "n": int(len(truth)),
        "classes": classes,
        "confusion_matrix": confusion_matrix(truth, guess, labels=classes).tolist(),
        "accuracy": round(float(np.mean(truth == guess)), 4),
        "balanced_accuracy": round(balanced_accuracy(truth, guess), 4),
        "cohen_kappa": kappa,
    }


def _shared_codes(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both labellings as integer codes over their joint labels, encoded once for resampling."""
    _, codes = np.unique(np.concatenate([first, second]).astype(str), return_inverse=True)
    return codes[: len(first)], codes[len(first) :]


def _reference_labels(
    cohort: Cohort, scored: Sequence[PatientOutcome], features: np.ndarray, model: EndotypeModel
) -> tuple[list[str | None], str]:
    if cohort.has_reference_labels:
        return [row.reference_endotype for row in scored], "reference endotypes"
    course = _flags(scored, "complicated_course").astype(float)
    derivation = derive_endotypes(features, model.analytes, course)
    return [str(label) for label in derivation.labels], "endotypes derived on this cohort"


def _outcomes_by_endotype(
    rows: Sequence[PatientOutcome], eligible: np.ndarray, predicted: np.ndarray
) -> list[dict[str, Any]]:
    labels = np.full(len(rows), INSUFFICIENT, dtype=object)
    labels[eligible] = predicted
    table = []
    for label in sorted(set(labels.tolist())):
        group = [row for row, own in zip(rows, labels, strict=True) if own == label]
        table.append(
            {
                "endotype": label,
                "n": len(group),
                **{f"{o}_rate": round(float(np.mean(_flags(group, o))), 4) for o in OUTCOMES},
            }
        )
    return table


def _subgroups(rows: Sequence[PatientOutcome], high: np.ndarray, boot: np.ndarray) -> list[dict]:
    memberships = [subgroup_of(row) for row in rows]
    factors = ("age band", "sex", "organ dysfunction")
    keys = {factor: [member[factor] for member in memberships] for factor in factors}
    table = []
    for factor, values in keys.items():
        values_array = np.array(values, dtype=object)
        for level in sorted(set(values)):
            inside = np.flatnonzero(values_array == level)
            sub_boot = _resized(boot, len(inside), len(table) + 1)
            subset = [rows[i] for i in inside]
            table.append(_subgroup_row(factor, level, subset, high[inside], sub_boot))
    return table


def _subgroup_row(
    factor: str, level: str, rows: list[PatientOutcome], high: np.ndarray, boot: np.ndarray
) -> dict[str, Any]:
    course, death = _flags(rows, "complicated_course"), _flags(rows, "picu_death")
    return {
        "factor": factor,
        "level": level,
        "n": len(rows),
        "complicated_course_events": int(course.sum()),
        "auroc_complicated_course": with_interval(auroc, course, high, boot),
        "auroc_picu_death": with_interval(auroc, death, high, boot),
        "brier_complicated_course": with_interval(brier, course, high, boot),
    }


# --- threshold and decision curve --------------------------------------------------------------


def _threshold_table(
    rows: Sequence[PatientOutcome], high: np.ndarray, threshold: float, boot: np.ndarray
) -> dict[str, Any]:
    flagged = high >= threshold
    table: dict[str, Any] = {"threshold": threshold, "flagged_share": _rate(flagged)}
    for outcome in OUTCOMES:
        truth = _flags(rows, outcome)
        table[outcome] = {
            name: with_interval(lambda t, f, m=metric: m(t, f), truth, flagged, boot)
            for name, metric in (
                ("sensitivity", sensitivity),
                ("specificity", specificity),
                ("ppv", ppv),
                ("npv", npv),
            )
        }
    return table


def _rate(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 4) if len(flags) else None


def _ratio(numerator: int, denominator: int) -> float:
    if denominator == 0:
        raise ValueError("empty denominator")
    return numerator / denominator


def sensitivity(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of patients with the outcome who are flagged."""
    return _ratio(int(np.sum(flagged & truth)), int(np.sum(truth)))


def specificity(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of patients without the outcome who are not flagged."""
    return _ratio(int(np.sum(~flagged & ~truth)), int(np.sum(~truth)))


def ppv(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of flagged patients with the outcome."""
    return _ratio(int(np.sum(flagged & truth)), int(np.sum(flagged)))


def npv(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of unflagged patients without the outcome."""
    return _ratio(int(np.sum(~flagged & ~truth)), int(np.sum(~flagged)))


def net_benefit(truth: np.ndarray, flagged: np.ndarray, threshold: float) -> float:
    """Net benefit of acting on `flagged` at threshold probability `threshold`."""
    n = len(truth)
    true_pos = np.sum(flagged & truth) / n
    false_pos = np.sum(flagged & ~truth) / n
    return float(true_pos - false_pos * threshold / (1 - threshold))


def _decision_curve(truth: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    if len(truth) == 0:
        return {"outcome": "complicated_course", "points": []}
    everyone = np.ones_like(truth)
    points = [
        {
            "threshold": t,
            "model": round(net_benefit(truth, high >= t, t), 4),
            "treat_all": round(net_benefit(truth, everyone, t), 4),
            "treat_none": 0.0,
        }
        for t in DECISION_THRESHOLDS
    ]
    return {"outcome": "complicated_course", "points": points}


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    lines = [f"scored {report['cohort']['n_scored']} of {report['cohort']['n_patients']} patients"]
    agreement = report["agreement"]
    if agreement.get("n"):
        kappa = agreement["cohen_kappa"]["estimate"]
        lines.append(f"agreement with {agreement['source']}: kappa {kappa}")
    for outcome, figures in report["prognostic"].items():
        lines.append(f"{outcome}: AUROC {figures['auroc']['estimate']} {figures['auroc']['ci95']}")
    return lines


# --- the HTML report ---------------------------------------------------------------------------

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 380, 300, 46
Series = tuple[str, Sequence[Sequence[float]], str, bool]  # label, points, colour, dashed


def svg_plot(
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
) -> str:
    """A small line chart as SVG: axes, ticks, one polyline per series, a legend."""
    inner_w, inner_h = PLOT_WIDTH - 2 * MARGIN, PLOT_HEIGHT - 2 * MARGIN
    low, high = y_range
    left, right = x_range

    def place(x: float, y: float) -> str:
        px = MARGIN + (x - left) / (right - left) * inner_w
        py = MARGIN + inner_h - (y - low) / (high - low) * inner_h
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{PLOT_WIDTH / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}'
        "</text>",
        f'<rect x="{MARGIN}" y="{MARGIN}" width="{inner_w}" height="{inner_h}" fill="none" '
        'stroke="#999"/>',
        *_ticks(x_range, y_range, inner_w, inner_h),
        f'<text x="{PLOT_WIDTH / 2}" y="{PLOT_HEIGHT - 8}" text-anchor="middle" font-size="11">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{PLOT_HEIGHT / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {PLOT_HEIGHT / 2})">{escape(y_label)}</text>',
    ]
    for index, (label, points, colour, dashed) in enumerate(series):
        if not points:
            continue
        coords = " ".join(place(float(x), min(max(float(y), low), high)) for x, y in points)
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/>'
        )
        legend_y = MARGIN + 12 + 13 * index
        parts.append(
            f'<text x="{MARGIN + 6}" y="{legend_y}" font-size="10" fill="{colour}">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _ticks(
    x_range: tuple[float, float], y_range: tuple[float, float], inner_w: float, inner_h: float
) -> list[str]:
    marks = []
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = MARGIN + fraction * inner_w
        y = MARGIN + inner_h - fraction * inner_h
        x_value = x_range[0] + fraction * (x_range[1] - x_range[0])
        y_value = y_range[0] + fraction * (y_range[1] - y_range[0])
        marks.append(
            f'<text x="{x:.1f}" y="{MARGIN + inner_h + 14}" font-size="9" text-anchor="middle">'
            f"{x_value:.2g}</text>"
        )
        marks.append(
            f'<text x="{MARGIN - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end">'
            f"{y_value:.2g}</text>"
        )
    return marks


def report_plots(report: Mapping[str, Any]) -> dict[str, str]:
    """The report's SVG figures, by name."""
    prognostic = report["prognostic"]
    diagonal: Series = ("chance / ideal", [[0, 0], [1, 1]], "#999", True)

    def per_outcome(key: str) -> list[Series]:
        return [
            (outcome, prognostic[outcome][key], PALETTE[i], False)
            for i, outcome in enumerate(OUTCOMES)
        ]

    calibration = [
        (o, [[p["predicted"], p["observed"]] for p in prognostic[o]["calibration_curve"]], c, False)
        for o, c in zip(OUTCOMES, PALETTE, strict=False)
    ]
    return {
        "roc": svg_plot(
            "ROC: high-risk probability vs outcome",
            [*per_outcome("roc_curve"), diagonal],
            x_label="1 - specificity",
            y_label="sensitivity",
        ),
        "pr": svg_plot(
            "Precision-recall", per_outcome("pr_curve"), x_label="recall", y_label="precision"
        ),
        "calibration": svg_plot(
            "Calibration (quantile bins)",
            [*calibration, diagonal],
            x_label="mean high-risk probability",
            y_label="observed outcome rate",
        ),
        "decision": _decision_plot(report["decision_curve"]),
    }


def _decision_plot(curve: Mapping[str, Any]) -> str:
    points = curve["points"]
    if not points:
        return ""
    values = [p[k] for p in points for k in ("model", "treat_all", "treat_none")]
    low, high = max(min(values), -0.1), max(max(values), 0.05)
    top = max(p["threshold"] for p in points)
    series: list[Series] = [
        (name, [[p["threshold"], p[key]] for p in points], colour, dashed)
        for name, key, colour, dashed in (
            ("model", "model", PALETTE[0], False),
            ("treat all", "treat_all", PALETTE[1], True),
            ("treat none", "treat_none", "#555", True),
        )
    ]
    return svg_plot(
        f"Decision curve: {curve['outcome']}",
        series,
        x_label="threshold probability",
        y_label="net benefit",
        x_range=(0.0, top),
        y_range=(low, high),
    )


_REPORT_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation: {{ r.model.model_id }}</title>
<style>body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .4rem;
text-align:left}.warning{background:#fff3cd;border:2px solid #b58900;padding:1rem;
font-weight:bold}figure{display:inline-block;margin:.5rem}</style></head><body>
<h1>Evaluation of {{ r.model.model_id }} {{ r.model.version }}</h1>
<p>Model file sha256 {{ r.model.content_hash }}; decision threshold
{{ "%.3f"|format(r.model.threshold) }} on the probability of {{ r.model.high_risk_class }}.</p>
{% if r.model.synthetic_training_data or r.cohort.synthetic %}<p class="warning">
{% if r.model.synthetic_training_data %}The model was trained on SYNTHETIC data. {% endif %}
{% if r.cohort.synthetic %}This evaluation cohort is SYNTHETIC. {% endif %}
These figures demonstrate the toolkit; they say nothing about clinical performance.</p>{% endif %}
<h2>Cohort</h2><p>{{ r.cohort.n_patients }} patients; {{ r.cohort.n_scored }} scored;
{{ r.cohort.n_insufficient_data }} with insufficient data (IL-6, ferritin or CRP missing in the
48 h after onset).</p>
<h2>Agreement with {{ r.agreement.source }}</h2>
{% if r.agreement.n %}<p>n = {{ r.agreement.n }}; accuracy {{ r.agreement.accuracy }}; balanced
accuracy {{ r.agreement.balanced_accuracy }}; Cohen's kappa {{ ci(r.agreement.cohen_kappa) }}</p>
<table><tr><th>reference \\ model</th>{% for c in r.agreement.classes %}<th>{{ c }}</th>{% endfor %}
</tr>{% for row in r.agreement.confusion_matrix %}<tr>
<th>{{ r.agreement.classes[loop.index0] }}</th>
{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}</table>
{% else %}<p>No labels to compare with.</p>{% endif %}
<h2>Prognostic value of the high-risk probability</h2>
<p>The probability is of the high-risk endotype, not of any outcome; calibration shows how far
it is from each outcome's risk. Intervals: bootstrap 95%.</p>
<table><tr><th>outcome</th><th>n / events</th><th>AUROC</th><th>AUPRC</th><th>Brier</th>
<th>calibration slope</th><th>calibration intercept</th></tr>
{% for name, p in r.prognostic.items() %}<tr><td>{{ name }}</td><td>{{ p.n }} / {{ p.events }}</td>
<td>{{ ci(p.auroc) }}</td><td>{{ ci(p.auprc) }}</td><td>{{ ci(p.brier) }}</td>
<td>{{ ci(p.calibration_slope) }}</td><td>{{ ci(p.calibration_intercept) }}</td></tr>{% endfor %}
</table>
<figure>{{ plots.roc }}</figure><figure>{{ plots.pr }}</figure>
<figure>{{ plots.calibration }}</figure>
<h2>Outcomes by endotype</h2><table><tr><th>endotype</th><th>n</th><th>PICU death</th>
<th>complicated course</th><th>sepsis</th></tr>{% for row in r.outcomes_by_endotype %}<tr>
<td>{{ row.endotype }}</td><td>{{ row.n }}</td><td>{{ row.picu_death_rate }}</td>
<td>{{ row.complicated_course_rate }}</td><td>{{ row.sepsis_rate }}</td></tr>{% endfor %}</table>
<h2>Performance by subgroup</h2><table><tr><th>factor</th><th>level</th><th>n</th>
<th>complicated course events</th><th>AUROC complicated course</th><th>AUROC PICU death</th>
<th>Brier complicated course</th></tr>{% for row in r.subgroups %}<tr><td>{{ row.factor }}</td>
<td>{{ row.level }}</td><td>{{ row.n }}</td><td>{{ row.complicated_course_events }}</td>
<td>{{ ci(row.auroc_complicated_course) }}</td><td>{{ ci(row.auroc_picu_death) }}</td>
<td>{{ ci(row.brier_complicated_course) }}</td></tr>{% endfor %}</table>
<h2>Decision threshold {{ "%.3f"|format(r.threshold.threshold) }}</h2>
<p>Flagged (biomarker-guided pathway): {{ r.threshold.flagged_share }} of scored patients.</p>
<table><tr><th>outcome</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th></tr>
{% for name in outcomes %}{% set t = r.threshold[name] %}<tr><td>{{ name }}</td>
<td>{{ ci(t.sensitivity) }}</td><td>{{ ci(t.specificity) }}</td><td>{{ ci(t.ppv) }}</td>
<td>{{ ci(t.npv) }}</td></tr>{% endfor %}</table>
<h2>Decision curve</h2><figure>{{ plots.decision }}</figure>
</body></html>
"""


def _format_interval(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("estimate") is None:
        return "n/a"
    interval = value.get("ci95")
    suffix = f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
    return f"{value['estimate']:.3f}{suffix}"


def render_report(report: Mapping[str, Any]) -> str:
    """The evaluation report as one self-contained HTML page with inline SVG figures."""
    environment = Environment(autoescape=True)
    plots = {name: Markup(svg) for name, svg in report_plots(report).items()}
    template = environment.from_string(_REPORT_TEMPLATE)
    return template.render(r=report, plots=plots, ci=_format_interval, outcomes=OUTCOMES)
