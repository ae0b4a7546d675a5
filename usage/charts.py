"""Charts drawn here as SVG, in the page's HTML: no script, no library, no other origin (the CSP stays as it is).

Colours come from classes styled in static/settings/settings.css; each bar or point carries a <title>, which a
browser shows on hover and a screen reader reads.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 24


@dataclass(frozen=True)
class Series:
    key: str  # the row's field
    label: str
    css: str  # the class that colours it


def compact(value: float) -> str:
    """1234 → 1.2k, 3.4M; small numbers as they are."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.2f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))


def nice_ceiling(value: float) -> float:
    """The axis' top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def moment_label(moment: datetime, group: str) -> str:
    return f"{moment:%b %d}" if group == "day" else f"{moment:%b %d %H:00}"


def frame(title: str, top: float, unit: Callable[[float], str], rows: Sequence[dict], group: str,
          body: list[str], legend: Sequence[Series]) -> SafeString:
    """The axes, grid, labels and legend around a chart's marks."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [format_html('<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="{}" '
                         'preserveAspectRatio="xMidYMid meet">', WIDTH, HEIGHT + 18, title)]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(format_html('<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>',
                                 LEFT, WIDTH - RIGHT, f"{y:.1f}", f"{y:.1f}"))
        parts.append(format_html('<text class="chart-axis" x="{}" y="{}" text-anchor="end">{}</text>',
                                 LEFT - 6, f"{y + 4:.1f}", unit(top * fraction)))
    if rows:
        for position in sorted({0, len(rows) // 2, len(rows) - 1}):
            x = LEFT + (WIDTH - LEFT - RIGHT) * (position + 0.5) / len(rows)
            anchor = "start" if position == 0 else "end" if position == len(rows) - 1 else "middle"
            parts.append(format_html('<text class="chart-axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                                     f"{x:.1f}", HEIGHT - 6, anchor, moment_label(rows[position]["start"], group)))
    parts.extend(body)
    x = LEFT
    for series in legend:
        parts.append(format_html('<rect class="{}" x="{}" y="{}" width="10" height="10"/>', series.css, x, HEIGHT + 6))
        parts.append(format_html('<text class="chart-legend" x="{}" y="{}">{}</text>', x + 14, HEIGHT + 15,
                                 series.label))
        x += 24 + 7 * len(series.label)
    parts.append("</svg>")
    return mark_safe("".join(str(part) for part in parts))  # every piece above is escaped by format_html


def stacked_bars(title: str, rows: Sequence[dict], stacks: Sequence[Series], group: str,
                 unit: Callable[[float], str] = compact) -> SafeString:
    """One bar per hour or day, its series stacked (e.g. successful calls under errors)."""
    top = nice_ceiling(max((sum(float(row[s.key] or 0) for s in stacks) for row in rows), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(rows), 1)
    body = []
    for position, row in enumerate(rows):
        base = 0.0
        for series in stacks:
            value = float(row[series.key] or 0)
            if value <= 0:
                continue
            height = plot_h * value / top
            y = TOP + plot_h - plot_h * base / top - height
            body.append(format_html(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {} {}</title></rect>',
                series.css, f"{LEFT + position * slot + slot * 0.1:.1f}", f"{y:.1f}",
                f"{max(slot * 0.8, 1):.1f}", f"{max(height, 0.5):.1f}",
                moment_label(row["start"], group), unit(value), series.label))
            base += value
    return frame(title, top, unit, rows, group, body, stacks)


def lines(title: str, rows: Sequence[dict], series_list: Sequence[Series], group: str,
          unit: Callable[[float], str] = compact) -> SafeString:
    """One line per series across the hours or days; a gap where a period has no value (no calls)."""
    top = nice_ceiling(max((float(row[s.key]) for row in rows for s in series_list if row[s.key] is not None),
                           default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(rows), 1)
    body = []
    for series in series_list:
        segment: list[str] = []
        points = []
        for position, row in enumerate(rows):
            if row[series.key] is None:
                if len(segment) > 1:
                    body.append(format_html('<polyline class="{} chart-line" points="{}"/>', series.css, " ".join(segment)))
                segment = []
                continue
            x, y = LEFT + slot * (position + 0.5), TOP + plot_h - plot_h * float(row[series.key]) / top
            segment.append(f"{x:.1f},{y:.1f}")
            points.append(format_html('<circle class="{}" cx="{}" cy="{}" r="2.5"><title>{}: {} {}</title></circle>',
                                      series.css, f"{x:.1f}", f"{y:.1f}", moment_label(row["start"], group),
                                      unit(float(row[series.key])), series.label))
        if len(segment) > 1:
            body.append(format_html('<polyline class="{} chart-line" points="{}"/>', series.css, " ".join(segment)))
        body.extend(points)
    return frame(title, top, unit, rows, group, body, series_list)


def milliseconds(value: float) -> str:
    return f"{value / 1000:.1f} s".replace(".0 s", " s") if value >= 1000 else f"{value:.0f} ms"


def money(value: float) -> str:
    if value >= 1 or value == 0:
        return f"{value:,.2f}"
    return f"{value:.6f}".rstrip("0")

