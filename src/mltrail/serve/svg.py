"""Small inline SVG charts for the status page: drawn on the server, no JavaScript, no front-end
build, every label escaped. Each returns one ``<svg>`` element as text (markup-safe)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH, HEIGHT = 560, 170
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 10, 26
COLORS = ("#1565c0", "#ef6c00", "#c62828", "#2e7d32", "#6a1b9a")


def _frame(body: str, title: str, legend: Sequence[tuple[str, str]] = ()) -> Markup:
    keys = "".join(
        f"<rect x='{PAD_LEFT + 110 * i}' y='{HEIGHT - 10}' width='10' height='8' fill='{c}'/>"
        f"<text x='{PAD_LEFT + 14 + 110 * i}' y='{HEIGHT - 2}' font-size='10'>{escape(n)}</text>"
        for i, (n, c) in enumerate(legend)
    )
    return Markup(
        f"<svg role='img' aria-label='{escape(title)}' viewBox='0 0 {WIDTH} {HEIGHT + 12}' "
        f"width='{WIDTH}' height='{HEIGHT + 12}' xmlns='http://www.w3.org/2000/svg'>"
        f"<title>{escape(title)}</title>{body}{keys}</svg>"
    )


def _y_axis(top: float, unit: str) -> str:
    lines = []
    for i in range(5):
        value = top * i / 4
        y = HEIGHT - PAD_BOTTOM - (HEIGHT - PAD_BOTTOM - PAD_TOP) * i / 4
        lines.append(
            f"<line x1='{PAD_LEFT}' x2='{WIDTH - PAD_RIGHT}' y1='{y:.1f}' y2='{y:.1f}' "
            f"stroke='#e0e0e0'/><text x='{PAD_LEFT - 4}' y='{y + 3:.1f}' font-size='9' "
            f"text-anchor='end'>{_number(value)}{escape(unit)}</text>"
        )
    return "".join(lines)


def _number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _nice_top(values: Sequence[float]) -> float:
    top = max((v for v in values if math.isfinite(v)), default=0.0)
    if top <= 0:
        return 1.0
    magnitude = float(10 ** math.floor(math.log10(top)))
    for step in (1, 2, 2.5, 5, 10):
        if top <= step * magnitude:
            return float(step * magnitude)
    return 10 * magnitude


def _clock(seconds: float) -> str:
    return time.strftime("%m-%d %H:%M", time.gmtime(seconds))


def time_lines(
    times: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None]]],
    span: tuple[float, float],
    title: str,
    unit: str = "",
) -> Markup:
    """Lines over time (``None``: a gap), x over ``span`` (Unix seconds, UTC labels)."""
    if not times:
        return _frame(_empty(), title)
    values = [v for _, s in series for v in s if v is not None]
    top = _nice_top(values)
    x0, x1 = span
    width = WIDTH - PAD_LEFT - PAD_RIGHT
    height = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(t: float) -> float:
        return PAD_LEFT + width * (t - x0) / max(x1 - x0, 1e-9)

    def y(v: float) -> float:
        return HEIGHT - PAD_BOTTOM - height * min(v / top, 1.0)

    body = [_y_axis(top, unit)]
    for i, (_, points) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join(
            f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, points, strict=True) if v is not None
        )
        if path:
            body.append(
                f"<polyline fill='none' stroke='{color}' stroke-width='1.6' points='{path}'/>"
            )
            for t, v in zip(times, points, strict=True):
                if v is not None:
                    body.append(f"<circle cx='{x(t):.1f}' cy='{y(v):.1f}' r='1.8' fill='{color}'/>")
    for t in (x0, (x0 + x1) / 2, x1):
        anchor = "start" if t == x0 else "end" if t == x1 else "middle"
        body.append(
            f"<text x='{x(t):.1f}' y='{HEIGHT - PAD_BOTTOM + 12}' font-size='9' "
            f"text-anchor='{anchor}'>{_clock(t)} UTC</text>"
        )
    legend = [(name, COLORS[i % len(COLORS)]) for i, (name, _) in enumerate(series)]
    return _frame("".join(body), title, legend)


def bars(
    labels: Sequence[str], values: Sequence[float], title: str, unit: str = "", color: str = ""
) -> Markup:
    """One bar per label, labelled underneath (at most every few when there are many)."""
    if not values or not any(values):
        return _frame(_empty(), title)
    top = _nice_top(values)
    width = WIDTH - PAD_LEFT - PAD_RIGHT
    height = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = width / len(values)
    every = max(1, math.ceil(len(values) / 12))
    body = [_y_axis(top, unit)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = height * min(value / top, 1.0)
        bx = PAD_LEFT + i * step + step * 0.1
        body.append(
            f"<rect x='{bx:.1f}' y='{HEIGHT - PAD_BOTTOM - h:.1f}' width='{step * 0.8:.1f}' "
            f"height='{h:.1f}' fill='{color or COLORS[0]}'><title>{escape(label)}: "
            f"{_number(value)}{escape(unit)}</title></rect>"
        )
        if i % every == 0:
            body.append(
                f"<text x='{bx + step * 0.4:.1f}' y='{HEIGHT - PAD_BOTTOM + 12}' font-size='9' "
                f"text-anchor='middle'>{escape(label[:14])}</text>"
            )
    return _frame("".join(body), title)


def _empty() -> str:
    return (
        f"<text x='{WIDTH / 2}' y='{HEIGHT / 2}' font-size='12' text-anchor='middle' "
        "fill='#757575'>no predictions in this period</text>"
    )
