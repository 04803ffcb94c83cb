"""Charts drawn on the server as SVG: no script, no third-party code in the page."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def bars(series: Sequence[tuple[str, Sequence[int], str]], labels: Sequence[str]) -> str:
    """Stacked bars, one per label, of each (name, values, colour) series."""
    width, height, pad = 480, 120, 18
    count = max(len(labels), 1)
    totals = [sum(values[i] for _, values, _ in series) for i in range(len(labels))]
    top = max([*totals, 1])
    step = (width - 2 * pad) / count
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 20}" role="img" '
        f'aria-label="jobs finished per bucket">'
    ]
    for i, label in enumerate(labels):
        x = pad + i * step
        y = float(height)
        for name, values, colour in series:
            h = values[i] / top * (height - pad)
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{step - 4:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(name)}: {values[i]}</title></rect>'
                )
        parts.append(
            f'<text x="{x + step / 2:.1f}" y="{height + 14}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(f'<text x="{pad}" y="12">max {top}</text></svg>')
    return "".join(parts)
