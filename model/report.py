"""The evaluation report as one self-contained HTML page with inline SVG figures.

The page comes from the package template `evaluation_report.html` (Jinja, autoescaped); the
figures are small hand-drawn SVG line charts, which keeps plotting free of any dependency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from importlib import resources
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from model.evaluate import OUTCOMES

TEMPLATE_RESOURCE = "evaluation_report.html"

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


def _format_interval(value: Mapping[str, Any] | None) -> str:
    """An estimate with its interval to three decimals, or "n/a"."""
    if not value or value.get("estimate") is None:
        return "n/a"
    interval = value.get("ci95")
    suffix = f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
    return f"{value['estimate']:.3f}{suffix}"


def render_report(report: Mapping[str, Any]) -> str:
    """The evaluation report as one self-contained HTML page with inline SVG figures."""
    environment = Environment(autoescape=True)
    plots = {name: Markup(svg) for name, svg in report_plots(report).items()}
    text = resources.files(__package__).joinpath(TEMPLATE_RESOURCE).read_text(encoding="utf-8")
    template = environment.from_string(text)
    return template.render(r=report, plots=plots, ci=_format_interval, outcomes=OUTCOMES)
