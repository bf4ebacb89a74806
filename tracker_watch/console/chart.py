"""Detections over time as a stacked bar chart in SVG, rendered on the server (no JavaScript, no library to
fetch): one bar per time bucket, peer addresses stacked by the best grade they reached in it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

GRADES = ("verified", "advertised", "handshake", "listed", "corrupt")
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 720, 220, 44, 34, 12


@dataclass(frozen=True)
class Bucket:
    start: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def bucket_size(first: datetime | None, now: datetime) -> timedelta:
    """Hours for a young target, days for an older one: the chart keeps a readable number of bars."""
    if first is None or now - first <= timedelta(days=2):
        return timedelta(hours=1)
    return timedelta(days=1)


def buckets(rows: list[tuple[datetime, str, int]], origin: datetime, step: timedelta, count: int) -> list[Bucket]:
    """Fill every bucket from origin on (empty ones too, so gaps show as gaps)."""
    out = [Bucket(origin + i * step, {}) for i in range(count)]
    for start, grade, n in rows:
        i = int((start - origin) / step)
        if 0 <= i < count:
            out[i].counts[grade] = out[i].counts.get(grade, 0) + n
    return out


def _nice_max(value: int) -> int:
    for m in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000):
        if value <= m:
            return m
    return value


def render(data: list[Bucket], step: timedelta, title: str) -> Markup:
    """The chart as inline SVG markup; every label is escaped, colours come from the stylesheet's classes."""
    top = _nice_max(max((b.total for b in data), default=0))
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    bar_w = plot_w / max(1, len(data))
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" '
             f'xmlns="http://www.w3.org/2000/svg"><title id="chart-title">{escape(title)}</title>']
    for tick in sorted({0, top // 2, top}):  # whole numbers of addresses only (top is 1, 2, 5, 10, …)
        y = TOP + plot_h * (1 - tick / top)
        parts.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    fmt = "%H:%M" if step < timedelta(days=1) else "%m-%d"
    label_every = max(1, len(data) // 8)
    for i, b in enumerate(data):
        x = LEFT + i * bar_w
        y = TOP + plot_h
        for grade in GRADES:
            n = b.counts.get(grade, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect class="g-{grade}" x="{x + 1:.1f}" y="{y:.1f}" width="{max(1.0, bar_w - 2):.1f}" '
                         f'height="{h:.1f}"><title>{escape(b.start.strftime("%Y-%m-%d %H:%M"))} UTC: {n} {grade}'
                         '</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(b.start.strftime(fmt))}</text>')
    parts.append(f'<line class="base" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - 8}" y2="{TOP + plot_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
