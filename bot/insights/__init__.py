"""Incident numbers over time (`/incident stats`): count, time to acknowledge (MTTA) and to resolve (MTTR)
per severity, as median and 90th percentile, and a weekly trend.

Computed from the timeline: an incident's acknowledgement is its first `acknowledged` event, its resolution
its last `resolved` event (an incident resolved, reopened and resolved again counts to the last one). Pure
functions over `Sample`s; `load` reads them from the database. No Slack types here."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import Database
from bot.errors import InvalidInput
from bot.models import Incident, IncidentEvent

DEFAULT_DAYS = 30
MAX_DAYS = 366
_DAYS = re.compile(r"^(\d{1,3})d$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.\.(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC and how to name it."""

    start: datetime
    end: datetime
    label: str


@dataclass(frozen=True)
class Query:
    window: Window
    severity: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class Sample:
    """One incident as the numbers see it."""

    id: int
    severity: str
    service: str | None
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None

    @property
    def tta(self) -> float | None:
        """Seconds from declaration to the first acknowledgement."""
        return _seconds(self.created_at, self.acknowledged_at)

    @property
    def ttr(self) -> float | None:
        """Seconds from declaration to the (last) resolution."""
        return _seconds(self.created_at, self.resolved_at)


@dataclass(frozen=True)
class Spread:
    """Median and 90th percentile of a set of durations (seconds); None when there are none."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class SeverityStats:
    severity: str
    count: int
    open: int
    mtta: Spread
    mttr: Spread


@dataclass(frozen=True)
class Week:
    start: date  # the Monday
    count: int
    mttr_median: float | None


@dataclass(frozen=True)
class Report:
    query: Query
    total: int
    by_severity: list[SeverityStats]
    weeks: list[Week] = field(default_factory=list)
    overall_mtta: Spread = Spread(0, None, None)
    overall_mttr: Spread = Spread(0, None, None)


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else max((end - start).total_seconds(), 0.0)


# -- parsing -----------------------------------------------------------------------------------------
def parse_window(text: str | None, now: datetime) -> Window:
    """`30d`, `90d` (any 1–366 days back from now) or `2026-01-01..2026-01-31` (both days included)."""
    raw = (text or f"{DEFAULT_DAYS}d").strip()
    days = _DAYS.match(raw)
    if days:
        count = int(days.group(1))
        if not 1 <= count <= MAX_DAYS:
            raise InvalidInput(f"`{raw}`: choose between 1d and {MAX_DAYS}d.")
        return Window(now - timedelta(days=count), now, f"last {count} days")
    span = _RANGE.match(raw)
    if span:
        try:
            first, last = date.fromisoformat(span.group(1)), date.fromisoformat(span.group(2))
        except ValueError:
            raise InvalidInput(f"`{raw}` is not a range of dates (use e.g. `2026-01-01..2026-01-31`).") from None
        if last < first:
            raise InvalidInput(f"`{raw}`: the range ends before it starts.")
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput(f"`{raw}`: at most {MAX_DAYS} days at a time.")
        start = datetime.combine(first, time(), UTC)
        return Window(start, datetime.combine(last + timedelta(days=1), time(), UTC), f"{first} to {last}")
    raise InvalidInput(f"`{raw}` is not a period: use `30d`, `90d` or `<from>..<to>` (YYYY-MM-DD).")


def is_window(word: str) -> bool:
    return bool(_DAYS.match(word) or _RANGE.match(word))


def parse_query(words: Sequence[str], *, severities: Sequence[str], now: datetime) -> Query:
    """`[period] [severity] [service]` in any order: a configured severity name is the severity, a period
    the window, the remaining word the service."""
    period: str | None = None
    severity: str | None = None
    service: str | None = None
    by_lower = {name.lower(): name for name in severities}
    for word in words:
        if is_window(word) and period is None:
            period = word
        elif word.lower() in by_lower and severity is None:
            severity = by_lower[word.lower()]
        elif service is None and word[:1].isalnum():
            service = word[:255]
        else:
            raise InvalidInput(f"`{word[:40]}`: use `/incident stats [30d|90d|<from>..<to>] [severity] [service]`.")
    return Query(parse_window(period, now), severity, service)


# -- numbers ---------------------------------------------------------------------------------------
def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[rank - 1]


def spread(values: Iterable[float | None]) -> Spread:
    present = [v for v in values if v is not None]
    if not present:
        return Spread(0, None, None)
    return Spread(len(present), statistics.median(present), percentile(present, 0.9))


def week_of(at: datetime) -> date:
    day = at.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def weekly(samples: Sequence[Sample], window: Window) -> list[Week]:
    """Every week the window touches (Mondays, oldest first), with empty weeks as zero."""
    first, last = week_of(window.start), week_of(window.end - timedelta(microseconds=1))
    weeks: dict[date, list[Sample]] = {}
    day = first
    while day <= last:
        weeks[day] = []
        day += timedelta(days=7)
    for sample in samples:
        weeks.setdefault(week_of(sample.created_at), []).append(sample)
    return [Week(start, len(rows), spread(s.ttr for s in rows).median) for start, rows in sorted(weeks.items())]


def compute(samples: Sequence[Sample], query: Query, *, severity_order: Sequence[str]) -> Report:
    """The report for the samples that match the query (window on the declaration time)."""
    chosen = [s for s in samples if query.window.start <= s.created_at < query.window.end
              and (query.severity is None or s.severity == query.severity)
              and (query.service is None or (s.service or "").lower() == query.service.lower())]
    rank = {name: i for i, name in enumerate(severity_order)}
    groups: dict[str, list[Sample]] = {}
    for sample in chosen:
        groups.setdefault(sample.severity, []).append(sample)
    rows = [SeverityStats(name, len(group), sum(1 for s in group if s.resolved_at is None),
                          spread(s.tta for s in group), spread(s.ttr for s in group))
            for name, group in sorted(groups.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))]
    return Report(query, len(chosen), rows, weekly(chosen, query.window),
                  spread(s.tta for s in chosen), spread(s.ttr for s in chosen))


# -- the database ------------------------------------------------------------------------------------
async def load(db: Database, query: Query) -> list[Sample]:
    """The incidents declared in the window (and matching severity/service), with their times from the timeline."""
    async with db.session() as session:
        return await _load(session, query)


async def _load(session: AsyncSession, query: Query) -> list[Sample]:
    window = query.window
    where = [Incident.created_at >= window.start, Incident.created_at < window.end]
    if query.severity:
        where.append(Incident.severity == query.severity)
    rows = list((await session.scalars(select(Incident).where(*where).order_by(Incident.id))).all())
    if query.service:
        rows = [r for r in rows if (r.service or "").lower() == query.service.lower()]
    if not rows:
        return []
    acked: dict[int, datetime] = {}
    resolved: dict[int, datetime] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):  # bounded IN lists
        events = await session.execute(
            select(IncidentEvent.incident_id, IncidentEvent.kind, IncidentEvent.at)
            .where(IncidentEvent.incident_id.in_(ids[start:start + 500]),
                   IncidentEvent.kind.in_(("acknowledged", "resolved")))
            .order_by(IncidentEvent.at, IncidentEvent.id))
        for incident_id, kind, at in events:
            if kind == "acknowledged":
                acked.setdefault(incident_id, at)
            else:
                resolved[incident_id] = at  # the last one wins
    return [Sample(r.id, r.severity, r.service, r.created_at, acked.get(r.id),
                   resolved.get(r.id) if r.status == "resolved" else None) for r in rows]
