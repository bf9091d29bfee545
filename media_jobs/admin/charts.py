"""The dashboard's 14-day chart as plain SVG geometry (rendered by a template, no JS, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.utils import formats, timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext

from media_jobs.selectors.admin import DayCounts

WIDTH = 640
HEIGHT = 220
MARGIN_LEFT = 40
MARGIN_RIGHT = 10
MARGIN_TOP = 10
MARGIN_BOTTOM = 30
SERIES = (
    ("succeeded", _("Succeeded"), "ok"),
    ("partial", _("Partial success"), "partial"),
    ("failed", _("Failed"), "failed"),
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


def _nice_step(value: int) -> int:
    """The smallest 1/2/5 x 10^n at or above a quarter of ``value`` (at least 1): an
    integer tick step, so no tick reads 1.25 jobs."""
    target = max(value, 1) / 4
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= target:
                return step * factor
        step *= 10


def _ticks(value: int) -> tuple[int, list[int]]:
    """(axis top, tick values): whole-number ticks from 0 up to the first at or above the
    tallest bar (1 for an empty chart)."""
    step = _nice_step(value)
    ticks = [0]
    while ticks[-1] < max(value, 1):
        ticks.append(ticks[-1] + step)
    return ticks[-1], ticks


def daily_bar_chart(days: Sequence[DayCounts]) -> BarChart:
    """Stacked bars (succeeded, partial, failed) per day, on an axis of whole-number ticks."""
    chart = BarChart(legend=[(str(label), css) for _, label, css in SERIES])
    top, values = _ticks(max((day.total for day in days), default=0))
    plot_height = chart.plot_bottom - MARGIN_TOP
    plot_width = chart.plot_right - chart.plot_left
    slot = plot_width / max(len(days), 1)
    bar = slot * 0.7
    for value in values:
        chart.ticks.append(
            Tick(round(chart.plot_bottom - plot_height * value / top, 1), str(value))
        )
    # A day under its bar: month and day, in the order of the active language.
    tick = pgettext("date format of a chart's day (Django date syntax)", "m-d")
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
                    f"{formats.date_format(day.day, 'SHORT_DATE_FORMAT')}: "
                    f"{count} {str(label).lower()}",
                )
            )
        chart.labels.append(XLabel(round(x + bar / 2, 1), formats.date_format(day.day, tick)))
        chart.total += day.total
    first, last = (days[0].day, days[-1].day) if days else (None, None)
    chart.description = (
        _("Jobs per day from %(first)s to %(last)s (%(zone)s): %(total)s finished")
        % {
            "first": formats.date_format(first, "SHORT_DATE_FORMAT") if first else first,
            "last": formats.date_format(last, "SHORT_DATE_FORMAT") if last else last,
            "zone": timezone.get_current_timezone_name(),
            "total": chart.total,
        }
        if days
        else str(_("No data"))
    )
    return chart
