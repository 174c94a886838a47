"""Small SVG charts for gr.HTML: lines and bars, a log or linear y axis, horizontal rules, shaded x bands.

    chart = Chart("Utilization", "step", "codes in use", (Series("level 1", "#2563eb", ((10, 0.4), (20, 0.5))),),
                  y_range=(0, 1), y_percent=True, rules=(Rule(0.3, "30% line"),), bands=(Band(0, 10, "warm-up"),))
    html = svg(chart)

Why not gr.LinePlot: Gradio 6's native plots have no log scale, no reference line and no shaded region,
and those are what make a loss spike or a codebook's 30% line readable. These are plain markup, built
server-side in well under a millisecond per chart, and cheap for the browser to redraw at every poll.
Every text (titles, series names: model names among them) is escaped here, the one place charts are made.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from sda.text import printable

WIDTH, HEIGHT = 480, 230
LEFT, RIGHT, TOP, BOTTOM = 56, 14, 26, 34  # the plot area's margins: y tick labels left, the title on top
MAX_POINTS = 400  # per series: a chart is WIDTH px wide, so more points draw the same line and only cost bytes


@dataclass(frozen=True)
class Series:
    name: str
    color: str  # a CSS colour: the code's own palette, never a value from a file
    points: tuple[tuple[float, float], ...]  # (x, y); a y that is NaN (or <= 0 on a log axis) breaks the line
    dashed: bool = False
    faint: bool = False  # thin and pale behind the others, not in the legend (the raw line under a smoothed one)


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the plot at y, labelled (the 30% line)."""

    y: float
    label: str


@dataclass(frozen=True)
class Band:
    """A shaded x range, labelled (the warm-up)."""

    x0: float
    x1: float
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    x_title: str
    y_title: str
    series: tuple[Series, ...]
    log_y: bool = False
    y_range: tuple[float, float] | None = None  # fixed; None: the data's span
    y_percent: bool = False  # tick labels as percentages of fractions
    rules: tuple[Rule, ...] = ()
    bands: tuple[Band, ...] = ()
    bars: bool = False  # each series drawn as bars from 0, each bar_width wide in x (usage histograms)
    bar_width: float = 1.0
    note: str = ""  # under the title, muted: what an empty chart is waiting for, how bars were grouped
    css_class: str = ""
    legend: bool = True
    extra: dict[str, str] = field(default_factory=dict)  # data-* attributes on the svg, for tests and scripts


def text(value) -> str:
    """Chart text (titles, names) escaped for markup, control characters made visible."""
    return escape(printable(str(value)), quote=True)


def svg(chart: Chart) -> str:
    series = tuple(Series(s.name, s.color, _decimated(_drawable(s.points, chart.log_y)), s.dashed, s.faint)
                   for s in chart.series)
    xs = [x for s in series for x, _ in s.points] + [v for b in chart.bands for v in (b.x0, b.x1)]
    ys = [y for s in series for _, y in s.points if y is not None] + [r.y for r in chart.rules
                                                                        if r.y > 0 or not chart.log_y]
    attrs = "".join(f' data-{text(k)}="{text(v)}"' for k, v in chart.extra.items())
    head = (f'<svg class="sda-chart {text(chart.css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{text(chart.title)}"{attrs} xmlns="http://www.w3.org/2000/svg">'
            f'<text class="sda-chart-title" x="{LEFT}" y="14">{text(chart.title)}</text>')
    if chart.note:
        head += f'<text class="sda-chart-note" x="{WIDTH - RIGHT}" y="14" text-anchor="end">{text(chart.note)}</text>'
    if not any(y is not None for s in series for _, y in s.points):  # a log axis cannot draw 0 (warm-up's commitment)
        return (f'<figure class="sda-chart-box">{head}<text class="sda-chart-note" x="{WIDTH / 2}" '
                f'y="{HEIGHT / 2}" text-anchor="middle">no data yet</text></svg></figure>')
    x_lo, x_hi = _span(xs, pad_zero=chart.bars)
    if chart.bars:
        x_hi += chart.bar_width
    y_lo, y_hi = chart.y_range or _span(ys, pad_zero=not chart.log_y, log=chart.log_y)
    scale = _Scale(x_lo, x_hi, y_lo, y_hi, chart.log_y)
    parts = [head, *_bands(chart.bands, scale), *_y_axis(scale, chart.y_percent),
             *_x_axis(scale, chart.bar_width if chart.bars else 0)]
    parts += [_bars(s, scale, chart.bar_width) if chart.bars else _line(s, scale) for s in series]
    parts += _rules(chart.rules, scale)
    parts += [f'<text class="sda-chart-axis" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" '
              f'text-anchor="middle">{text(chart.x_title)}</text>',
              f'<text class="sda-chart-axis" transform="translate(12 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" '
              f'text-anchor="middle">{text(chart.y_title)}{" (log scale)" if chart.log_y else ""}</text>']
    legend = _legend(series) if chart.legend else ""
    return f'<figure class="sda-chart-box">{"".join(parts)}</svg>{legend}</figure>'


def _drawable(points: Sequence[tuple[float, float]], log_y: bool) -> tuple[tuple[float, float | None], ...]:
    """Points with a y the axis cannot show (NaN, inf, or <= 0 on a log axis) as None: a break in the line."""
    return tuple((x, y if math.isfinite(y) and (y > 0 or not log_y) else None) for x, y in points
                 if math.isfinite(x))


def _decimated(points: tuple, limit: int = MAX_POINTS) -> tuple:
    """At most `limit` points, evenly spaced, the last always kept (it is the newest)."""
    if len(points) <= limit:
        return points
    stride = len(points) / (limit - 1)
    return tuple(points[int(i * stride)] for i in range(limit - 1)) + points[-1:]


def _span(values: list, pad_zero: bool, log: bool = False) -> tuple[float, float]:
    """The axis span of the values; a flat series (a constant loss, its smoothed rounding noise) gets room
    around it, so the noise is not blown up to the chart's height."""
    values = [v for v in values if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if pad_zero:
        lo = min(lo, 0.0)
    if hi - lo <= 1e-6 * max(abs(lo), abs(hi)):
        lo, hi = (lo / 2, hi * 2) if log else (lo - (abs(lo) / 2 or 1.0), hi + (abs(hi) / 2 or 1.0))
    return lo, hi


@dataclass(frozen=True)
class _Scale:
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    log_y: bool

    def x(self, value: float) -> float:
        return LEFT + (value - self.x_lo) / (self.x_hi - self.x_lo) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        lo, hi, v = self.y_lo, self.y_hi, value
        if self.log_y:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(v, self.y_lo))
        v = min(max(v, lo), hi)
        return HEIGHT - BOTTOM - (v - lo) / (hi - lo) * (HEIGHT - TOP - BOTTOM)

    def y_ticks(self) -> list[float]:
        if not self.log_y:
            return nice_ticks(self.y_lo, self.y_hi)
        ticks = [10.0 ** e for e in range(math.floor(math.log10(self.y_lo)), math.ceil(math.log10(self.y_hi)) + 1)]
        inside = [t for t in ticks if self.y_lo <= t <= self.y_hi]
        if len(inside) < 3:  # a span of less than two decades: 2 and 5 between the powers of ten as well
            inside = [t * m for t in ticks for m in (1, 2, 5) if self.y_lo <= t * m <= self.y_hi]
        return inside if len(inside) >= 2 else nice_ticks(self.y_lo, self.y_hi)  # within one 1-2-5 step


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About count round values (steps of 1, 2, 2.5 or 5 x a power of ten) from lo to hi."""
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float, percent: bool) -> str:
    if percent:
        return f"{100 * value:.0f}%"
    if value != 0 and (abs(value) >= 10_000 or abs(value) < 0.01):
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:g}"


def _y_axis(scale: _Scale, percent: bool) -> list[str]:
    out = []
    for tick in scale.y_ticks():
        y = scale.y(tick)
        out.append(f'<line class="sda-chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                   f'<text class="sda-chart-tick" x="{LEFT - 4}" y="{y + 3.5:.1f}" text-anchor="end">'
                   f"{_label(tick, percent)}</text>")
    return out


def _x_axis(scale: _Scale, bar_width: float) -> list[str]:
    """Ticks under the axis; with bars, at the bars' left edges (rank 0 is the first bar)."""
    base = HEIGHT - BOTTOM
    out = [f'<line class="sda-chart-frame" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{base}" y2="{base}"/>']
    hi = scale.x_hi - bar_width
    for tick in nice_ticks(scale.x_lo, hi) if hi > scale.x_lo else [scale.x_lo]:
        x = scale.x(tick)
        out.append(f'<text class="sda-chart-tick" x="{x:.1f}" y="{base + 13}" text-anchor="middle">'
                   f"{_label(tick, False)}</text>")
    return out


def _line(series: Series, scale: _Scale) -> str:
    commands, pen_down = [], False
    for x, y in series.points:
        if y is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{scale.x(x):.1f} {scale.y(y):.1f}")
        pen_down = True
    dash = ' stroke-dasharray="5 3"' if series.dashed else ""
    width = '1" stroke-opacity="0.3' if series.faint else "1.8"
    # A lone point draws nothing as a path: a dot shows it.
    dots = "".join(f'<circle cx="{scale.x(x):.1f}" cy="{scale.y(y):.1f}" r="2.5" fill="{series.color}"/>'
                   for x, y in series.points if y is not None) if len(commands) == 1 else ""
    return (f'<path class="sda-chart-line" data-series="{text(series.name)}" d="{" ".join(commands)}" fill="none" '
            f'stroke="{series.color}" stroke-width="{width}"{dash}/>{dots}')


def _bars(series: Series, scale: _Scale, width: float) -> str:
    zero = scale.y(max(scale.y_lo, 0.0) if not scale.log_y else scale.y_lo)
    rects = []
    for x, y in series.points:
        if y is not None and y > 0:
            top = scale.y(y)
            wide = max(scale.x(x + width) - scale.x(x) - 0.3, 0.6)  # a hairline apart, so bars read as bars
            rects.append(f'<rect x="{scale.x(x):.1f}" y="{top:.1f}" width="{wide:.2f}" '
                         f'height="{max(zero - top, 0.5):.1f}"/>')
    return f'<g class="sda-chart-bars" data-series="{text(series.name)}" fill="{series.color}">{"".join(rects)}</g>'


def _rules(rules: tuple[Rule, ...], scale: _Scale) -> list[str]:
    return [f'<line class="sda-chart-rule" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{scale.y(r.y):.1f}" '
            f'y2="{scale.y(r.y):.1f}"/><text class="sda-chart-rule-label" x="{WIDTH - RIGHT - 2}" '
            f'y="{scale.y(r.y) - 3:.1f}" text-anchor="end">{text(r.label)}</text>' for r in rules]


def _bands(bands: tuple[Band, ...], scale: _Scale) -> list[str]:
    out = []
    for band in bands:
        x0, x1 = scale.x(max(band.x0, scale.x_lo)), scale.x(min(band.x1, scale.x_hi))
        # A narrow band at the right (a short dead tail) takes its label to its left, inside the plot
        at_end = x0 > WIDTH / 2 and x1 - x0 < 80
        label_x, anchor = (x1 - 3, ' text-anchor="end"') if at_end else (x0 + 3, "")
        out.append(f'<rect class="sda-chart-band" x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" '
                   f'height="{HEIGHT - TOP - BOTTOM}"/><text class="sda-chart-band-label" x="{label_x:.1f}"{anchor} '
                   f'y="{TOP + 11}">{text(band.label)}</text>')
    return out


def _legend(series: tuple[Series, ...]) -> str:
    """Swatches and names in HTML under the chart, so any number of long names wraps instead of overflowing."""
    items = []
    for s in (s for s in series if not s.faint):
        dash = "dashed" if s.dashed else "solid"
        items.append(f'<span class="sda-chart-key" data-series="{text(s.name)}"><i style="border-top: 3px {dash} '
                     f'{s.color}"></i>{text(s.name)}</span>')
    return f'<div class="sda-chart-legend">{"".join(items)}</div>'
