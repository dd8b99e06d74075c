"""The status page's database side: public updates, the component state history, one page snapshot."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.config.status_page import ComponentStatus, StatusPage
from bot.models import ComponentState, Incident, MonitorState, PublicUpdate
from bot.statuspage import state as st
from bot.timeline import OPEN


async def add_update(session: AsyncSession, *, clock: Clock, incident_id: int, status: str, text: str,
                     author: str, key: str | None) -> tuple[PublicUpdate, bool]:
    """(the update, whether it is new): a key seen before (a retried or redelivered publish) is that row."""
    if key is not None:
        found = await session.scalar(select(PublicUpdate).where(PublicUpdate.key == key))
        if found is not None:
            return found, False
    row = PublicUpdate(incident_id=incident_id, status=st.public_status(status), text=text, at=clock(),
                       author=author, key=key)
    session.add(row)
    await session.flush()
    return row, True


async def updates_of(session: AsyncSession, *, incident_id: int) -> list[PublicUpdate]:
    return list((await session.scalars(select(PublicUpdate).where(PublicUpdate.incident_id == incident_id)
                                       .order_by(PublicUpdate.id))).all())


async def monitors(session: AsyncSession) -> dict[str, st.Monitor]:
    rows = (await session.scalars(select(MonitorState))).all()
    return {r.environment: st.Monitor(r.state, frozenset(r.failing or [])) for r in rows}


async def latest_states(session: AsyncSession) -> dict[str, str]:
    """Each component's last recorded state."""
    newest = (select(ComponentState.component, func.max(ComponentState.at).label("at"))
              .group_by(ComponentState.component).subquery())
    rows = await session.execute(select(ComponentState.component, ComponentState.state, ComponentState.id)
                                 .join(newest, (ComponentState.component == newest.c.component)
                                       & (ComponentState.at == newest.c.at)).order_by(ComponentState.id))
    return {component: state for component, state, _id in rows}


async def record_states(session: AsyncSession, *, clock: Clock,
                        states: dict[str, ComponentStatus]) -> dict[str, ComponentStatus]:
    """Append a row for each component whose state differs from its last one; the changed ones."""
    before = await latest_states(session)
    changed = {name: state for name, state in states.items() if before.get(name) != state}
    now = clock()
    for name, state in changed.items():
        session.add(ComponentState(component=name, state=state, at=now))
    await session.flush()
    return changed


def facts(incident: Incident) -> st.IncidentFacts:
    return st.IncidentFacts(number=incident.id, title=incident.title, severity=incident.severity,
                            service=incident.service, environment=incident.environment,
                            created_at=incident.created_at, resolved_at=incident.resolved_at)


async def incidents(session: AsyncSession, *, config: Config, page: StatusPage,
                    now: datetime) -> list[st.PublicIncident]:
    """Open incidents and those resolved within the history window, newest first; only those with a public
    update unless `only_published` is off (then open ones count too)."""
    since = now - page.history
    published = select(PublicUpdate.incident_id).distinct()
    query = select(Incident).where(or_(Incident.status.in_(OPEN), Incident.resolved_at >= since))
    if page.only_published:
        query = query.where(Incident.id.in_(published))
    else:
        query = query.where(or_(Incident.status.in_(OPEN), Incident.id.in_(published)))
    rows = list((await session.scalars(query.order_by(Incident.created_at.desc(), Incident.id.desc()))).all())
    notes: dict[int, list[st.Note]] = defaultdict(list)
    if rows:
        for u in (await session.scalars(select(PublicUpdate).where(PublicUpdate.incident_id.in_([r.id for r in rows]))
                                        .order_by(PublicUpdate.at, PublicUpdate.id))).all():
            notes[u.incident_id].append(st.Note(u.status, u.text, u.at))
    out = []
    for r in rows:
        f = facts(r)
        if r.status not in OPEN and f.resolved_at is None:
            f = st.IncidentFacts(f.number, f.title, f.severity, f.service, f.environment, f.created_at,
                                 r.last_update_at or r.created_at)
        out.append(st.public_incident(config, page, f, notes[r.id]))
    return out


async def history(session: AsyncSession, *, since: datetime) -> dict[str, list[tuple[datetime, ComponentStatus]]]:
    """component → its state changes from the one in force at `since` on, oldest first."""
    before = (select(ComponentState.component, func.max(ComponentState.at).label("at"))
              .where(ComponentState.at < since).group_by(ComponentState.component).subquery())
    start_rows = await session.execute(select(ComponentState.component, ComponentState.at, ComponentState.state)
                                       .join(before, (ComponentState.component == before.c.component)
                                             & (ComponentState.at == before.c.at)))
    out: dict[str, list[tuple[datetime, ComponentStatus]]] = defaultdict(list)
    for component, at, state in start_rows:
        out[component] = [(at, as_state(state))]
    rows = await session.execute(select(ComponentState.component, ComponentState.at, ComponentState.state)
                                 .where(ComponentState.at >= since).order_by(ComponentState.at, ComponentState.id))
    for component, at, state in rows:
        out[component].append((at, as_state(state)))
    return out


def as_state(value: str) -> ComponentStatus:
    return value if value in st.ORDER else st.OPERATIONAL


async def snapshot(session: AsyncSession, *, config: Config, page: StatusPage, now: datetime) -> st.Page:
    """Everything the page shows, read in one session."""
    found = await incidents(session, config=config, page=page, now=now)
    open_ = [i for i in found if i.is_open]
    states = st.current_states(config, page, await monitors(session), open_)
    days = max(1, page.history.days)
    changes = await history(session, since=now - timedelta(days=days)) if page.uptime_bars else {}
    return build(config=config, page=page, now=now, states=states, incidents=found, changes=changes)


def build(*, config: Config, page: StatusPage, now: datetime, states: dict[str, ComponentStatus],
          incidents: list[st.PublicIncident],
          changes: dict[str, list[tuple[datetime, ComponentStatus]]]) -> st.Page:
    """The page from plain values (pure; the benchmark starts here)."""
    days = max(1, page.history.days)
    views = []
    for c in page.components:
        bars, uptime = st.day_bars(changes.get(c.name, []), now=now, days=days) if page.uptime_bars else ((), None)
        views.append(st.ComponentView(c.name, c.description, c.group, states.get(c.name, st.OPERATIONAL),
                                      bars, uptime))
    open_ = tuple(i for i in incidents if i.is_open)
    history_ = tuple(i for i in incidents if not i.is_open)
    overall = st.worst([*states.values(), *(i.impact for i in open_ if not i.components)])
    return st.Page(title=page.title, url=page.url, generated_at=now, overall=overall, components=tuple(views),
                   open_incidents=open_, history=history_, history_days=days, uptime_bars=page.uptime_bars,
                   groups=st.group(views))
