"""The stats chart as a PNG: incidents per week (bars) and the weekly median time to resolve (line).

matplotlib is imported here, inside `render_png`, and only by the stats job: opsbot's start-up and its
other processes never load it (it costs ~40 MB). The Agg backend draws without a display."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.insights import Report

WIDTH_PX = 1000
HEIGHT_PX = 500
DPI = 100


def render_png(report: Report, *, title: str) -> bytes:
    """A WIDTH_PX × HEIGHT_PX PNG of the report's weekly trend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # no pyplot: no global figure state, nothing to close

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    bars = figure.add_subplot(1, 1, 1)
    labels = [week.start.strftime("%d %b") for week in report.weeks]
    positions = list(range(len(labels)))
    bars.bar(positions, [week.count for week in report.weeks], color="#4a90d9", label="incidents")
    bars.set_xticks(positions, labels, rotation=45, ha="right", fontsize=8)
    bars.set_ylabel("incidents per week")
    bars.set_title(title[:120])
    hours = [None if week.mttr_median is None else week.mttr_median / 3600 for week in report.weeks]
    line = bars.twinx()
    points = [(x, h) for x, h in zip(positions, hours, strict=True) if h is not None]
    if points:
        line.plot([x for x, _ in points], [h for _, h in points], color="#d0021b", marker="o",
                  label="median time to resolve (h)")
    line.set_ylabel("median time to resolve (hours)")
    line.set_ylim(bottom=0)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
