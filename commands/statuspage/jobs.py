"""The status page's named jobs: publish, the 30-second sync, and the hosted mirror's pushes."""

from __future__ import annotations

import logging

from bot.deps import Deps
from bot.errors import NotFound
from bot.incidents import flows as incident_flows
from bot.jobs import REGISTRY, job, will_retry
from bot.statuspage import flows
from commands.common import defer, responder, tell
from commands.statuspage.notify import SlackStatus, page_link, services

log = logging.getLogger(__name__)
PUBLISH, SYNC, PUSH, COMPONENTS = "statuspage.publish", "statuspage.sync", "statuspage.push", "statuspage.components"
PUSH_RETRIES = 2


@job(PUBLISH, retries=2)
async def publish(deps: Deps, *, user: str, channel: str | None, response_url: str | None, incident_id: int | None,
                  status: str | None, text: str, key: str | None = None, ref: str | None = None) -> None:
    """One public update of the incident (named, else the one whose channel this is)."""
    svc = services(deps)
    if incident_id is None:
        incident_id = (await incident_flows.locate(deps.db, ref=ref, channel_id=channel)).id
    found = await incident_flows.locate(deps.db, ref=f"INC-{incident_id}", channel_id=None)
    await deps.require(user=user, action="status_page.publish", target=found.ref, environment=found.environment)
    done = await flows.publish(svc, SlackStatus(deps), incident_id=incident_id, status=status, text_=text,
                               author=user, key=key)
    if svc.page.hosted is not None:
        await defer(deps, PUSH, user=None, channel=None, response_url=None, incident_id=incident_id)
    answer = f"Published {done.ref} to {page_link(deps)} as *{done.status}*: {done.text}"
    await tell(deps, text=answer, respond=responder(deps, response_url), user=user, channel=channel)


@job(SYNC)
async def sync(deps: Deps) -> None:
    """Declare/resolve messages, the component state history, and what the hosted page still lacks."""
    svc = services(deps)
    try:
        synced = await flows.sync(svc)
    except NotFound:
        return  # the status page is off
    notifier = SlackStatus(deps)
    for incident_id in synced.published:
        found = await incident_flows.locate(deps.db, ref=f"INC-{incident_id}", channel_id=None)
        last = await flows.last_update(svc, incident_id=incident_id)
        await notifier.published(found, status=last.status, text=last.text)
    if svc.page.hosted is None:
        return
    for incident_id in await flows.pending_pushes(svc):
        await defer(deps, PUSH, user=None, channel=None, response_url=None, incident_id=incident_id)
    if synced.changed:
        await defer(deps, COMPONENTS, user=None, channel=None, response_url=None, states=dict(synced.changed))


@job(PUSH, lock="statuspage:{incident_id}", retries=PUSH_RETRIES)
async def push(deps: Deps, *, user: str | None, channel: str | None, response_url: str | None,
               incident_id: int) -> None:
    """The incident's new public updates to the hosted Statuspage; after the last failed attempt (or a refusal)
    the incident's channel is told."""
    svc = services(deps)
    try:
        await flows.push(svc, incident_id=incident_id)
    except Exception as exc:
        incident, attempts = await flows.push_failed(svc, incident_id=incident_id, error=str(exc))
        if not will_retry(REGISTRY.get(PUSH), exc, attempts - 1):
            await flows.reset_attempts(svc, incident_id=incident_id)
            await SlackStatus(deps).hosted_failed(incident, error=svc.scrub(str(exc)) or type(exc).__name__)
        raise


@job(COMPONENTS, retries=PUSH_RETRIES)
async def components(deps: Deps, *, user: str | None, channel: str | None, response_url: str | None,
                     states: dict[str, str]) -> None:
    """Component statuses to the hosted Statuspage (those with an id in `status_page.hosted.components`)."""
    from bot.statuspage.queries import as_state

    await flows.push_components(services(deps), {name: as_state(s) for name, s in states.items()})
