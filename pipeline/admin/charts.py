"""Small SVG charts drawn on the server: no script and no chart library reach the browser, and a
chart is readable in a screenshot, a mail or a text browser's source alike. Pure functions from
numbers to markup; every text they place is escaped."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 400, 160
LEFT, RIGHT, BOTTOM, TOP = 60, 8, 22, 12  # room for the labels, and for a point at either end


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: nothing to draw there (no data)
    css: str  # the class that colours it (admin.css)


def _nice_ceiling(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at or above `value`."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value * (1 - 1e-9))


def _frame(top: float, unit: str, x_labels: Sequence[str], title: str) -> list[str]:
    plot_h = HEIGHT - BOTTOM - TOP
    parts = [
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        label = f"{top * fraction:g}{unit}"
        parts.append(
            f'<text class="axis" x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{escape(label)}</text>'
        )
    for i, label in enumerate(x_labels):
        x = LEFT + (WIDTH - LEFT - RIGHT) * i / max(1, len(x_labels) - 1)
        anchor = "start" if i == 0 else "end" if i == len(x_labels) - 1 else "middle"
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">{escape(label)}</text>'
        )
    return parts


def bar_chart(
    values: Sequence[float], *, unit: str, x_labels: Sequence[str], title: str, tips: Sequence[str] = ()
) -> Markup:
    """One bar per value (e.g. per hour), each with its tooltip when `tips` are given."""
    top = _nice_ceiling(max(values, default=0))
    parts = _frame(top, unit, x_labels, title)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(1, len(values))
    for i, value in enumerate(values):
        h = plot_h * value / top
        x, y = LEFT + i * slot + slot * 0.1, TOP + plot_h - h
        tip = f"<title>{escape(tips[i])}</title>" if i < len(tips) else ""
        parts.append(
            f'<rect class="bar-fill" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{h:.1f}">{tip}</rect>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from numbers and escaped text only


def line_chart(series: Sequence[Series], *, unit: str, x_labels: Sequence[str], title: str) -> Markup:
    """Lines over evenly spaced points; a gap where a value is None."""
    peak = max((v for s in series for v in s.values if v is not None), default=0.0)
    top = _nice_ceiling(peak)
    parts = _frame(top, unit, x_labels, title)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    for one in series:
        n = max(1, len(one.values) - 1)
        path, pen_down = [], False
        for i, value in enumerate(one.values):
            if value is None:
                pen_down = False
                continue
            x, y = LEFT + plot_w * i / n, TOP + plot_h * (1 - value / top)
            path.append(f"{'L' if pen_down else 'M'}{x:.1f},{y:.1f}")
            alone = not pen_down and (i + 1 >= len(one.values) or one.values[i + 1] is None)
            if alone:  # a lone point draws no line: mark it
                parts.append(f'<circle class="{escape(one.css)}" cx="{x:.1f}" cy="{y:.1f}" r="2"/>')
            pen_down = True
        if path:
            parts.append(
                f'<path class="{escape(one.css)}" d="{" ".join(path)}">'
                f"<title>{escape(one.name)}</title></path>"
            )
    legend_x = LEFT + 6
    for one in series:
        parts.append(
            f'<text class="legend {escape(one.css)}" x="{legend_x}" y="{TOP + 10}">{escape(one.name)}</text>'
        )
        legend_x += 8 * len(one.name) + 14
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from numbers and escaped text only
