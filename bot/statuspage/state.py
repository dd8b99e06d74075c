"""Component states, public incidents and uptime bars: pure functions over plain values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple

from bot.config import Config
from bot.config.status_page import Component, ComponentStatus, StatusPage

OPERATIONAL: ComponentStatus = "operational"
DEGRADED: ComponentStatus = "degraded_performance"
PARTIAL: ComponentStatus = "partial_outage"
MAJOR: ComponentStatus = "major_outage"
ORDER: tuple[ComponentStatus, ...] = (OPERATIONAL, DEGRADED, PARTIAL, MAJOR)
LABELS = {OPERATIONAL: "Operational", DEGRADED: "Degraded performance", PARTIAL: "Partial outage",
          MAJOR: "Major outage"}
PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")
# Internal incident statuses the public page does not have.
_PUBLIC_OF = {"mitigating": "identified"}
# Share of a period counted as down (Statuspage counts a partial outage as 30 %).
_DOWN = {OPERATIONAL: 0.0, DEGRADED: 0.0, PARTIAL: 0.3, MAJOR: 1.0}


def public_status(status: str) -> str:
    lowered = status.strip().lower()
    lowered = _PUBLIC_OF.get(lowered, lowered)
    return lowered if lowered in PUBLIC_STATUSES else "investigating"


def worst(states: Iterable[ComponentStatus]) -> ComponentStatus:
    return max(states, key=ORDER.index, default=OPERATIONAL)


@dataclass(frozen=True)
class Monitor:
    """An environment's last monitor state (bot.models.MonitorState): healthy | degraded | unhealthy."""

    state: str
    failing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class IncidentFacts:
    """What the page may use of an opsbot incident (its title only with `public_titles`)."""

    number: int
    title: str
    severity: str
    service: str | None
    environment: str | None
    created_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True)
class Note:
    status: str
    text: str
    at: datetime


@dataclass(frozen=True)
class PublicIncident:
    number: int
    name: str
    status: str
    impact: ComponentStatus
    components: tuple[str, ...]
    started_at: datetime
    resolved_at: datetime | None
    updates: tuple[Note, ...]  # newest first

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None and self.status != "resolved"


class Day(NamedTuple):  # a tuple: 100 components × 90 days are made for each page
    day: date
    state: ComponentStatus | None  # the worst state of the day; None: no data
    uptime: float | None


@dataclass(frozen=True)
class ComponentView:
    name: str
    description: str
    group: str | None
    state: ComponentStatus
    days: tuple[Day, ...] = ()
    uptime: float | None = None  # over the whole window


@dataclass(frozen=True)
class Page:
    title: str
    url: str | None
    generated_at: datetime
    overall: ComponentStatus
    components: tuple[ComponentView, ...]
    open_incidents: tuple[PublicIncident, ...]
    history: tuple[PublicIncident, ...]
    history_days: int
    uptime_bars: bool = True
    groups: tuple[tuple[str | None, tuple[ComponentView, ...]], ...] = field(default=())


# -- monitors → components ---------------------------------------------------------------------
def _checks_of(config: Config, component: Component) -> dict[str, list[str]]:
    """environment → the labels of the component's checks there (named or tagged with its services)."""
    wanted, services = set(component.checks), {s.lower() for s in component.services}
    out: dict[str, list[str]] = {}
    for env_name, env in config.environments.items():
        if component.environments and env_name not in component.environments:
            continue
        labels = [c.label() for c in env.checks
                  if c.label() in wanted or services & {s.lower() for s in c.services}]
        if labels:
            out[env_name] = labels
    return out


def monitored_state(config: Config, component: Component, monitors: Mapping[str, Monitor]) -> ComponentStatus:
    """The component's state from its monitors; operational when no monitor has spoken yet."""
    states: list[ComponentStatus] = []
    if component.checks or component.services:
        for env_name, labels in _checks_of(config, component).items():
            monitor = monitors.get(env_name)
            if monitor is None:
                continue
            failing = [label for label in labels if label in monitor.failing]
            if not failing:
                states.append(OPERATIONAL)
            elif monitor.state == "degraded":
                states.append(DEGRADED)
            else:
                states.append(MAJOR if len(failing) == len(labels) else PARTIAL)
    else:
        for env_name in component.environments:
            monitor = monitors.get(env_name)
            if monitor is None:
                continue
            env = config.environments.get(env_name)
            total = len(env.checks) if env is not None else 0
            if monitor.state == "healthy":
                states.append(OPERATIONAL)
            elif monitor.state == "degraded":
                states.append(DEGRADED)
            else:
                states.append(MAJOR if total and len(monitor.failing) >= total else PARTIAL)
    return worst(states)


def linked_components(page: StatusPage, incident: IncidentFacts) -> tuple[str, ...]:
    """The components an incident affects: by its service (a component's `services` or name), else by its
    environment (components driven by that environment)."""
    out = []
    service = (incident.service or "").strip().lower()
    env = (incident.environment or "").strip().lower()
    for c in page.components:
        envs = {e.lower() for e in c.environments}
        if service:
            if service in {s.lower() for s in c.services} | {c.name.lower()} and (not env or not envs or env in envs):
                out.append(c.name)
        elif env and env in envs:
            out.append(c.name)
    return tuple(out)


def incident_impact(config: Config, page: StatusPage, severity: str) -> ComponentStatus:
    for name, state in page.incident_states.items():
        if name.lower() == severity.lower():
            return state
    rank = config.severity_rank(severity)
    return MAJOR if rank == 0 else PARTIAL if rank == 1 else DEGRADED


def public_name(page: StatusPage, incident: IncidentFacts, components: Sequence[str]) -> str:
    if page.public_titles and incident.title:
        return incident.title
    if components:
        return f"Service disruption: {', '.join(components)}"
    return "Service disruption"


def public_incident(config: Config, page: StatusPage, incident: IncidentFacts,
                    notes: Sequence[Note]) -> PublicIncident:
    """`notes` oldest first, as stored."""
    components = linked_components(page, incident)
    newest = tuple(sorted(notes, key=lambda n: n.at, reverse=True))
    status = "resolved" if incident.resolved_at else (newest[0].status if newest else "investigating")
    return PublicIncident(number=incident.number, name=public_name(page, incident, components), status=status,
                          impact=incident_impact(config, page, incident.severity), components=components,
                          started_at=incident.created_at, resolved_at=incident.resolved_at, updates=newest)


def current_states(config: Config, page: StatusPage, monitors: Mapping[str, Monitor],
                   open_incidents: Sequence[PublicIncident]) -> dict[str, ComponentStatus]:
    """Each component's state now: its monitors', overridden by the worst open incident linked to it."""
    out: dict[str, ComponentStatus] = {}
    for c in page.components:
        linked = [i.impact for i in open_incidents if c.name in i.components and i.is_open]
        out[c.name] = worst(linked) if linked else monitored_state(config, c, monitors)
    return out


# -- the uptime bars ---------------------------------------------------------------------------
def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


_RANK = {state: rank for rank, state in enumerate(ORDER)}
DAY = 86400.0


@lru_cache(maxsize=8)
def _dates(first_day: date, days: int) -> tuple[date, ...]:
    return tuple(first_day + timedelta(days=k) for k in range(days))


def day_bars(changes: Sequence[tuple[datetime, ComponentStatus]], *, now: datetime,
             days: int) -> tuple[tuple[Day, ...], float | None]:
    """Per UTC day (oldest first, today last) the worst state and the uptime, from the state changes
    (oldest first; the first may lie before the window: the state the window starts in).

    Time before the first change has no data; the window's uptime is over the time that has data; the
    state in force now counts for today even when it began this very instant. (Seconds as floats: this
    runs for every component on every page.)"""
    first_day = now.astimezone(UTC).date() - timedelta(days=days - 1)
    window_start, now_ts = _day_start(first_day).timestamp(), now.timestamp()
    spans: list[tuple[float, float, ComponentStatus]] = []  # (start, end, state) clipped to the window
    stamps = [at.timestamp() for at, _state in changes]
    for i, (_at, state) in enumerate(changes):
        end = stamps[i + 1] if i + 1 < len(changes) else now_ts
        start = max(stamps[i], window_start)
        if end > start or (i + 1 == len(changes) and start <= now_ts):
            spans.append((start, min(end, now_ts), state))
    out: list[Day] = []
    total_known = total_down = 0.0
    j = 0
    dates = _dates(first_day, days)
    for k in range(days):
        lo = window_start + k * DAY
        hi = min(lo + DAY, now_ts)
        while j < len(spans) and spans[j][1] <= lo and not (spans[j][1] == now_ts and spans[j][0] >= lo):
            j += 1
        known = down = 0.0
        rank = -1
        m = j
        while m < len(spans) and (spans[m][0] < hi or spans[m][0] == hi == now_ts):
            start, end, state = spans[m]
            length = min(end, hi) - max(start, lo)
            if length > 0:
                known += length
                down += length * _DOWN[state]
            if length > 0 or end == now_ts:
                rank = max(rank, _RANK[state])
            m += 1
        day = dates[k]
        if known > 0:
            out.append(Day(day, ORDER[rank], 1.0 - down / known))
        elif rank >= 0:  # only this instant is known
            out.append(Day(day, ORDER[rank], 1.0 - _DOWN[ORDER[rank]]))
        else:
            out.append(Day(day, None, None))
        total_known += known
        total_down += down
    return tuple(out), (1.0 - total_down / total_known) if total_known else None


def group(components: Sequence[ComponentView]) -> tuple[tuple[str | None, tuple[ComponentView, ...]], ...]:
    """Components by group, in the order groups first appear (ungrouped ones as groups of their own)."""
    out: list[tuple[str | None, list[ComponentView]]] = []
    index: dict[str, int] = {}
    for c in components:
        if c.group is None:
            out.append((None, [c]))
        elif c.group in index:
            out[index[c.group]][1].append(c)
        else:
            index[c.group] = len(out)
            out.append((c.group, [c]))
    return tuple((name, tuple(items)) for name, items in out)
