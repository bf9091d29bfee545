"""The dashboard's 14-day chart as plain SVG geometry (rendered by a template, no JS, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from media_jobs.selectors.admin import DayCounts

WIDTH = 640
HEIGHT = 220
MARGIN_LEFT = 40
MARGIN_RIGHT = 10
MARGIN_TOP = 10
MARGIN_BOTTOM = 30
SERIES = (
    ("succeeded", "Succeeded", "ok"),
    ("partial", "Partial success", "partial"),
    ("failed", "Failed", "failed"),
)


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass
class BarChart:
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = MARGIN_LEFT
    plot_right: int = WIDTH - MARGIN_RIGHT
    plot_bottom: int = HEIGHT - MARGIN_BOTTOM
    segments: list[Segment] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    labels: list[XLabel] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0
    description: str = ""


def _nice_max(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def daily_bar_chart(days: Sequence[DayCounts]) -> BarChart:
    """Stacked bars (succeeded, partial, failed) per day, with a 0..max axis of 4 ticks."""
    chart = BarChart(legend=[(label, css) for _, label, css in SERIES])
    top = _nice_max(max((day.total for day in days), default=0))
    plot_height = chart.plot_bottom - MARGIN_TOP
    plot_width = chart.plot_right - chart.plot_left
    slot = plot_width / max(len(days), 1)
    bar = slot * 0.7
    for index in range(5):
        value = top * index / 4
        label = f"{value:g}" if top >= 4 or value.is_integer() else ""
        chart.ticks.append(Tick(chart.plot_bottom - plot_height * index / 4, label))
    for index, day in enumerate(days):
        x = chart.plot_left + slot * index + (slot - bar) / 2
        y = float(chart.plot_bottom)
        for attribute, label, css in SERIES:
            count = getattr(day, attribute)
            if not count:
                continue
            height = plot_height * count / top
            y -= height
            chart.segments.append(
                Segment(
                    round(x, 1),
                    round(y, 1),
                    round(bar, 1),
                    round(height, 1),
                    css,
                    f"{day.day:%Y-%m-%d}: {count} {label.lower()}",
                )
            )
        chart.labels.append(XLabel(round(x + bar / 2, 1), f"{day.day:%m-%d}"))
        chart.total += day.total
    first, last = (days[0].day, days[-1].day) if days else (None, None)
    chart.description = (
        f"Jobs per day from {first} to {last} (UTC): {chart.total} finished" if days else "No data"
    )
    return chart
