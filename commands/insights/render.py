"""The stats message: pure, report in, mrkdwn out."""

from __future__ import annotations

from datetime import timedelta

from bot.durations import format_duration
from bot.insights import Report, Spread


def duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(timedelta(seconds=round(seconds)))


def spread(value: Spread) -> str:
    return "—" if value.median is None else f"{duration(value.median)} (p90 {duration(value.p90)})"


def scope(report: Report) -> str:
    query = report.query
    parts = [query.window.label]
    if query.severity:
        parts.append(query.severity)
    if query.service:
        parts.append(f"service {query.service}")
    return ", ".join(parts)


def stats_text(report: Report) -> str:
    """The numbers, per severity: count, MTTA and MTTR as median (p90)."""
    lines = [f"*Incident stats* — {scope(report)}: {report.total} incident(s)"]
    if not report.total:
        return lines[0] + "\nNo incidents were declared in this period."
    lines.append(f"Overall: MTTA {spread(report.overall_mtta)}, MTTR {spread(report.overall_mttr)}")
    for row in report.by_severity:
        still = f", {row.open} open" if row.open else ""
        lines.append(f"• *{row.severity}*: {row.count}{still} — MTTA {spread(row.mtta)}, MTTR {spread(row.mttr)}")
    trend = " · ".join(f"{week.start:%d %b} {week.count}" for week in report.weeks[-13:])
    lines.append(f"Per week (from Monday): {trend}")
    return "\n".join(lines)[:3900]
