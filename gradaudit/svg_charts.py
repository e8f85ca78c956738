"""SVG primitives for the HTML report's charts, rendered on the server: scales, axes, marks.

Every text and attribute value goes through markupsafe's escape (layer names are the uploader's to choose), and
each function returns Markup, so a template embeds it as it is. No script: the charts are static pictures, their
tooltips SVG <title> elements.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from markupsafe import Markup, escape

FONT = 11
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 34


def element(tag: str, text: str | Markup | None = None, /, **attributes) -> Markup:
    """An SVG element; attribute names use _ for - (class_ for class), None values are left out."""
    pairs = "".join(f' {_attribute_name(name)}="{escape(_number(value))}"'
                    for name, value in attributes.items() if value is not None)
    if text is None:
        return Markup(f"<{tag}{pairs}/>")
    return Markup(f"<{tag}{pairs}>{escape(text)}</{tag}>")


def group(children: Iterable[Markup], **attributes) -> Markup:
    """A <g> holding children."""
    return element("g", Markup("").join(children), **attributes)


def svg(width: float, height: float, children: Iterable[Markup], *, label: str, **attributes) -> Markup:
    """The outer <svg>, sized in pixels, with an accessible name."""
    return element("svg", Markup("").join(children), xmlns="http://www.w3.org/2000/svg", width=round(width),
                   height=round(height), viewBox=f"0 0 {round(width)} {round(height)}", role="img",
                   aria_label=label, **attributes)


def _attribute_name(name: str) -> str:
    return name.rstrip("_").replace("_", "-") if name != "viewBox" else name


def _number(value) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Columns:
    """One column per layer, in depth order, across the plot's width."""

    count: int
    step: float
    left: float = LEFT

    @classmethod
    def fitting(cls, count: int, *, preferred: float = 36, narrowest: float = 6, width: float = 900) -> Columns:
        """Columns as wide as `width` allows, between narrowest and preferred pixels."""
        return cls(count, max(narrowest, min(preferred, width / max(count, 1))))

    @property
    def width(self) -> float:
        """The plot's width in pixels."""
        return self.count * self.step

    def x(self, index: int) -> float:
        """The centre of column index."""
        return self.left + (index + 0.5) * self.step

    def tick_every(self) -> int:
        """Label every k-th column so labels never collide (about 28 px apart)."""
        return max(1, math.ceil(28 / self.step))


@dataclass(frozen=True)
class LogScale:
    """Decades from low to high (exponents of ten) onto pixels from bottom to top."""

    low: int
    high: int
    top: float
    bottom: float

    @classmethod
    def spanning(cls, values: Iterable[float], top: float, bottom: float, *, at_least: int = 2) -> LogScale:
        """Whole decades around every positive finite value (at least `at_least` of them)."""
        exponents = [math.log10(v) for v in values if v is not None and math.isfinite(v) and v > 0]
        if not exponents:
            return cls(-1, 1, top, bottom)
        low, high = math.floor(min(exponents)), math.ceil(max(exponents))
        while high - low < at_least:
            low -= 1
            high += 1 if high - low < at_least else 0
        return cls(low, high, top, bottom)

    def y(self, value: float) -> float:
        """The pixel height of a positive value (clamped to the plot)."""
        return self.y_exponent(math.log10(value))

    def y_exponent(self, exponent: float) -> float:
        """The pixel height of 10**exponent (clamped to the plot)."""
        share = (min(max(exponent, self.low), self.high) - self.low) / (self.high - self.low)
        return self.bottom - share * (self.bottom - self.top)

    def decades(self) -> list[int]:
        """The exponents to label: every decade, or every k-th where there are many."""
        every = max(1, math.ceil((self.high - self.low) / 8))
        return [e for e in range(self.low, self.high + 1) if (e - self.low) % every == 0]


@dataclass(frozen=True)
class LinearScale:
    """Values from low to high onto pixels from bottom to top."""

    low: float
    high: float
    top: float
    bottom: float

    def y(self, value: float) -> float:
        """The pixel height of value (clamped to the plot)."""
        share = (min(max(value, self.low), self.high) - self.low) / ((self.high - self.low) or 1.0)
        return self.bottom - share * (self.bottom - self.top)


def plottable(value) -> bool:
    """Whether a value can sit on a log axis."""
    return value is not None and math.isfinite(value) and value > 0


def power_label(exponent: int) -> Markup:
    """10 with a raised exponent, as SVG text content."""
    return Markup("10") + element("tspan", str(exponent).replace("-", "\u2212"), dy="-5", font_size=FONT - 2)


def log_axis(scale: LogScale, columns: Columns, title: str = "") -> Markup:
    """Decade gridlines with their labels, and the axis title (if any), on the left."""
    right = columns.left + columns.width
    parts = []
    for exponent in scale.decades():
        y = scale.y_exponent(exponent)
        parts.append(element("line", x1=columns.left, x2=right, y1=y, y2=y, class_="grid"))
        label = Markup(f'<text x="{columns.left - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
                       f"{power_label(exponent)}</text>")
        parts.append(label)
    if title:
        parts.append(_vertical_title(title, (scale.top + scale.bottom) / 2))
    return group(parts, class_="axis log-axis")


def linear_axis(scale: LinearScale, columns: Columns, title: str, ticks: Iterable[float],
                fmt: str = "{:.0%}") -> Markup:
    """Gridlines at ticks with their labels, and the axis title (if any), on the left."""
    right = columns.left + columns.width
    parts = []
    for tick in ticks:
        y = scale.y(tick)
        parts.append(element("line", x1=columns.left, x2=right, y1=y, y2=y, class_="grid"))
        parts.append(element("text", fmt.format(tick), x=columns.left - 6, y=y + 4, text_anchor="end",
                             class_="tick"))
    if title:
        parts.append(_vertical_title(title, (scale.top + scale.bottom) / 2))
    return group(parts, class_="axis linear-axis")


def _vertical_title(title: str, middle: float) -> Markup:
    return element("text", title, x=12, y=middle, transform=f"rotate(-90 12 {middle:.1f})", text_anchor="middle",
                   class_="axis-title")


def depth_axis(columns: Columns, y: float, title: str = "layer, input side \u2192 output side") -> Markup:
    """Layer positions along the bottom: a label every few columns, and the axis title."""
    every = columns.tick_every()
    parts = [element("line", x1=columns.left, x2=columns.left + columns.width, y1=y, y2=y, class_="baseline")]
    parts += [element("text", str(index), x=columns.x(index), y=y + 13, text_anchor="middle", class_="tick")
              for index in range(columns.count) if index % every == 0]
    parts.append(element("text", title, x=columns.left + columns.width / 2, y=y + 28, text_anchor="middle",
                         class_="axis-title"))
    return group(parts, class_="axis depth-axis")


def legend(entries: list[tuple[str, str]], x: float, y: float) -> Markup:
    """Swatches with labels in a row: (CSS class of the swatch, label)."""
    parts, left = [], x
    for css_class, label in entries:
        parts.append(element("rect", x=left, y=y - 8, width=10, height=10, class_=f"swatch {css_class}"))
        parts.append(element("text", label, x=left + 14, y=y + 1, class_="legend-label"))
        left += 30 + 6.6 * len(label)
    return group(parts, class_="legend")


def panel_title(text: str, columns: Columns, y: float) -> Markup:
    """A small multiple's title, above its plot on the left."""
    return element("text", text, x=columns.left, y=y, class_="panel-title")


def polyline(points: list[tuple[float, float]], **attributes) -> Markup:
    """A polyline through the points (nothing for fewer than two)."""
    if len(points) < 2:
        return Markup("")
    return element("polyline", points=" ".join(f"{x:.1f},{y:.1f}" for x, y in points), fill="none", **attributes)
