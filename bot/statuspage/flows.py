"""Publishing to the status page, the periodic sync and the hosted mirror (orchestration, no Slack).

- `publish`: one public update (cleaned of internal text), on the incident's timeline, told in its channel;
- `sync`: the declare/resolve messages the config asks for, then the component states recorded when they
  change (the 90-day bars), every 30 s on the scheduler's leader;
- `push`: an incident's public updates not yet on the hosted Statuspage, in order, each once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import httpx
from sqlalchemy import select

from bot import incidents as inc
from bot.clock import Clock
from bot.config import Config
from bot.config.status_page import ComponentStatus, StatusPage
from bot.db import Database
from bot.errors import InvalidInput, NotFound
from bot.models import Incident, PublicUpdate, StatuspageIncident
from bot.statuspage import queries, text
from bot.statuspage import state as st
from bot.statuspage.hosted import Statuspage
from bot.timeline import OPEN, add_event

# A declaration older than this when the sync first sees it is not announced (e.g. the page was just enabled).
DECLARE_WITHIN = timedelta(hours=1)
RESOLVE_WITHIN = timedelta(days=1)
ERROR_MAX = 255


class StatusNotifier(Protocol):
    async def published(self, incident: Incident, *, status: str, text: str) -> None: ...

    async def hosted_failed(self, incident: Incident, *, error: str) -> None: ...


@dataclass(frozen=True)
class Services:
    db: Database
    config: Config
    clock: Clock
    http: httpx.AsyncClient
    scrub: Callable[[str], str]
    environ: Mapping[str, str] | None = None

    @property
    def page(self) -> StatusPage:
        page = self.config.status_page
        if page is None or not page.enabled:
            raise NotFound("status page", "status_page", [])
        return page

    def hosted(self) -> Statuspage | None:
        hosted = self.page.hosted
        return Statuspage(hosted, self.http, self.environ) if hosted is not None else None


@dataclass(frozen=True)
class Published:
    update_id: int
    incident_id: int
    ref: str
    status: str
    text: str
    new: bool


async def publish(svc: Services, notifier: StatusNotifier, *, incident_id: int, status: str | None, text_: str,
                  author: str, key: str | None) -> Published:
    """Add a public update; InvalidInput when nothing public is left of the text."""
    svc.page  # noqa: B018 - raises NotFound when the status page is off
    cleaned = text.clean(text_, config=svc.config, scrub=svc.scrub)
    if not cleaned:
        raise InvalidInput("Nothing public is left of that text (mentions, channel names and internal links are "
                           "removed): write what customers should read.")
    async with svc.db.session() as session:
        incident = await inc.get(session, incident_id=incident_id)
        chosen = st.public_status(status or incident.status)
        row, new = await queries.add_update(session, clock=svc.clock, incident_id=incident.id, status=chosen,
                                            text=cleaned, author=author, key=key)
        if new:
            await add_event(session, clock=svc.clock, incident_id=incident.id, actor=author, kind="published",
                            text=f"Status page ({chosen}): {cleaned}", data={"status": chosen})
        result = Published(row.id, incident.id, incident.ref, row.status, row.text, new)
    if new:
        await notifier.published(incident, status=result.status, text=result.text)
        await record(svc)
    return result


async def _components_of(svc: Services, incident: Incident) -> tuple[str, ...]:
    return st.linked_components(svc.page, queries.facts(incident))


def _format(message: str, components: tuple[str, ...]) -> str:
    return message.replace("{components}", ", ".join(components) or "our services")


async def auto_publish(svc: Services) -> list[int]:
    """Declaration and resolution messages the config asks for; the incidents that got one."""
    page, now = svc.page, svc.clock()
    out: list[int] = []
    async with svc.db.session() as session:
        published = select(PublicUpdate.incident_id).distinct()
        candidates: list[tuple[Incident, str, str]] = []
        if page.publish_on_declare and page.declare_message:
            fresh = (await session.scalars(select(Incident).where(Incident.status.in_(OPEN),
                                                                  Incident.created_at >= now - DECLARE_WITHIN,
                                                                  Incident.id.not_in(published)))).all()
            candidates += [(i, "investigating", f"declare:{i.id}") for i in fresh]
        if page.publish_on_resolve and page.resolve_message:
            resolved_ones = select(PublicUpdate.incident_id).where(PublicUpdate.status == "resolved")
            done = (await session.scalars(select(Incident).where(Incident.resolved_at >= now - RESOLVE_WITHIN,
                                                                 Incident.id.in_(published),
                                                                 Incident.id.not_in(resolved_ones)))).all()
            candidates += [(i, "resolved", f"resolve:{i.id}") for i in done]
    for incident, status, key in candidates:
        components = await _components_of(svc, incident)
        if status == "investigating" and not components:
            continue  # affects nothing on the page
        message = page.declare_message if status == "investigating" else page.resolve_message
        async with svc.db.session() as session:
            _row, new = await queries.add_update(session, clock=svc.clock, incident_id=incident.id, status=status,
                                                 text=_format(message, components), author="opsbot", key=key)
            if new:
                await add_event(session, clock=svc.clock, incident_id=incident.id, actor="opsbot",
                                kind="published", text=f"Status page ({status}): {_format(message, components)}",
                                data={"status": status})
        if new:
            out.append(incident.id)
    return out


async def record(svc: Services) -> dict[str, ComponentStatus]:
    """Record the components' current states where they changed; the changed ones."""
    page = svc.page
    now = svc.clock()
    async with svc.db.session() as session:
        found = await queries.incidents(session, config=svc.config, page=page, now=now)
        states = st.current_states(svc.config, page, await queries.monitors(session), [i for i in found if i.is_open])
        return await queries.record_states(session, clock=svc.clock, states=states)


@dataclass(frozen=True)
class Synced:
    published: list[int]
    changed: dict[str, ComponentStatus]


async def sync(svc: Services) -> Synced:
    published = await auto_publish(svc)
    return Synced(published, await record(svc))


async def last_update(svc: Services, *, incident_id: int) -> PublicUpdate:
    """The incident's latest public update (one it was published with, at least)."""
    async with svc.db.session() as session:
        return (await queries.updates_of(session, incident_id=incident_id))[-1]


async def pending_pushes(svc: Services) -> list[int]:
    """Incidents with public updates not yet on the hosted page (mirrors what a lost push job left)."""
    if svc.page.hosted is None:
        return []
    since = svc.clock() - svc.page.history
    async with svc.db.session() as session:
        query = select(PublicUpdate.incident_id, PublicUpdate.id, StatuspageIncident.last_update_id)
        rows = await session.execute(query.outerjoin(StatuspageIncident,
                                                StatuspageIncident.incident_id == PublicUpdate.incident_id)
                                     .where(PublicUpdate.at >= since))
        return sorted({i for i, uid, last in rows if last is None or uid > last})


async def push(svc: Services, *, incident_id: int) -> int:
    """Send the incident's public updates the hosted page does not have yet; how many were sent."""
    client = svc.hosted()
    page = svc.page
    if client is None or page.hosted is None:
        return 0
    async with svc.db.session() as session:
        incident = await inc.get(session, incident_id=incident_id)
        updates = await queries.updates_of(session, incident_id=incident_id)
        link = await session.get(StatuspageIncident, incident_id)
        if link is None:
            link = StatuspageIncident(incident_id=incident_id, page_id=page.hosted.page_id, attempts=0)
            session.add(link)
        external, last = link.external_id, link.last_update_id or 0
    components = st.linked_components(page, queries.facts(incident))
    impact = st.incident_impact(svc.config, page, incident.severity)
    facts = queries.facts(incident)
    name = st.public_name(page, facts, components)
    sent = 0
    for update in (u for u in updates if u.id > last):
        state: ComponentStatus = st.OPERATIONAL if update.status == "resolved" else impact
        comp = dict.fromkeys(components, state)
        if external is None:
            made = await client.create_incident(name=name, status=update.status, body=update.text, components=comp)
            external = made.id
        else:
            await client.update_incident(external, status=update.status, body=update.text, components=comp)
        sent += 1
        await _pushed(svc, incident_id=incident_id, external=external, update_id=update.id)
    if sent == 0:
        await _pushed(svc, incident_id=incident_id, external=external, update_id=last or None)
    return sent


async def _pushed(svc: Services, *, incident_id: int, external: str | None, update_id: int | None) -> None:
    async with svc.db.session() as session:
        link = await session.get(StatuspageIncident, incident_id)
        if link is None:
            return
        link.external_id, link.last_update_id = external, update_id
        link.last_synced_at, link.attempts, link.error = svc.clock(), 0, None


async def push_failed(svc: Services, *, incident_id: int, error: str) -> tuple[Incident, int]:
    """Count a failed push (the incident and the failures in a row, this one included)."""
    async with svc.db.session() as session:
        incident = await inc.get(session, incident_id=incident_id)
        link = await session.get(StatuspageIncident, incident_id)
        if link is None:
            hosted = svc.page.hosted
            link = StatuspageIncident(incident_id=incident_id, page_id=hosted.page_id if hosted else "", attempts=0)
            session.add(link)
        link.attempts = (link.attempts or 0) + 1
        link.error = svc.scrub(error)[:ERROR_MAX]
        return incident, link.attempts


async def reset_attempts(svc: Services, *, incident_id: int) -> None:
    async with svc.db.session() as session:
        link = await session.get(StatuspageIncident, incident_id)
        if link is not None:
            link.attempts = 0


async def push_components(svc: Services, changed: Mapping[str, ComponentStatus]) -> list[str]:
    """Component statuses to the hosted page; the names sent."""
    client = svc.hosted()
    if client is None:
        return []
    return [name for name, status in changed.items() if await client.set_component(name, status)]


async def page_snapshot(svc: Services, *, now: datetime | None = None) -> st.Page:
    async with svc.db.session() as session:
        return await queries.snapshot(session, config=svc.config, page=svc.page, now=now or svc.clock())
