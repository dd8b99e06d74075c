"""Everything `/incident` does besides declaring, one small function per verb: find the incident (by ref,
id or channel), check the permission in its environment, apply a domain verb, tell the people involved."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot import incidents
from bot.deps import Deps
from bot.incidents import AlreadyDone
from bot.models import Incident, IncidentEvent
from commands.common import tell_user
from commands.incident import flows, render
from commands.incident.parse import Command

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]
MUTATING = ("update", "ack", "severity", "assign", "resolve")


@dataclass(frozen=True)
class Request:
    deps: Deps
    cmd: Command
    user: str
    channel_id: str | None
    respond: Respond | None
    incident_id: int | None
    impact: str | None
    eta: str | None

    async def answer(self, text: str, blocks: list[dict[str, Any]]) -> None:
        """Ephemeral: via response_url, else (a modal's submission) where the modal was opened, else a DM."""
        if self.respond is not None:
            await self.respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        else:
            await tell_user(self.deps, user=self.user, channel=self.channel_id, text=text, blocks=blocks)

    async def read(self) -> tuple[Incident, list[IncidentEvent]]:
        async with self.deps.db.session() as session:
            if self.incident_id is not None:
                incident = await incidents.get(session, incident_id=self.incident_id)
            else:
                incident = await incidents.find(session, ref=self.cmd.ref, channel_id=self.channel_id)
            return incident, await incidents.events(session, incident_id=incident.id)

    def change(self, action: str, mutate: flows.Mutation) -> Awaitable[tuple[Incident, list[IncidentEvent], Any]]:
        return flows.change(self.deps, actor=self.user, action=action, ref=self.cmd.ref, channel_id=self.channel_id,
                            incident_id=self.incident_id, mutate=mutate)


async def run(deps: Deps, cmd: Command, *, user: str, channel_id: str | None, respond: Respond | None,
              incident_id: int | None = None, impact: str | None = None, eta: str | None = None) -> None:
    """Run `cmd`. A change someone made first is answered with who and when (not an error); that a request
    runs once across redeliveries is the listener's `run_after_ack(..., once=request_key(body))`.

    `channel_id` finds the incident when neither `cmd.ref` nor `incident_id` names it, and is where an answer
    goes without `respond`."""
    request = Request(deps, cmd, user, channel_id, respond, incident_id, impact, eta)
    try:
        await VERBS[cmd.verb](request)
    except AlreadyDone as done:
        await request.answer(*render.already_done(str(done)))


async def list_open(r: Request) -> None:
    async with r.deps.db.session() as session:
        rows = await incidents.list_open(session, config=r.deps.config)
    await r.answer(*render.incident_list(rows, now=r.deps.clock()))


async def show(r: Request) -> None:
    incident, events = await r.read()
    await r.answer(*render.show(incident, flows.severity_of(r.deps, incident), now=r.deps.clock(),
                                timeline=events))


async def timeline(r: Request) -> None:
    await r.answer(*render.timeline(*await r.read()))


async def postmortem(r: Request) -> None:
    incident, events = await r.read()
    await r.answer(*render.postmortem(incidents.postmortem(r.deps.config, incident, events)))


async def update(r: Request) -> None:
    deps, cmd = r.deps, r.cmd
    incident, events, _ = await r.change("incident.update", lambda s, i: incidents.post_update(
        s, clock=deps.clock, incident=i, actor=r.user, text=cmd.text, status=cmd.status, impact=r.impact, eta=r.eta))
    await flows.broadcast_status(deps, incident, events)


async def acknowledge(r: Request) -> None:
    incident, events, _ = await r.change("incident.update", lambda s, i: incidents.acknowledge(
        s, clock=r.deps.clock, incident=i, actor=r.user))
    await flows.announce_change(r.deps, incident, events, f"✋ <@{r.user}> acknowledged {incident.ref}.")


async def severity(r: Request) -> None:
    deps = r.deps
    incident, events, old = await r.change("incident.severity", lambda s, i: incidents.change_severity(
        s, config=deps.config, clock=deps.clock, incident=i, actor=r.user, severity=r.cmd.severity or ""))
    line = f"🔺 <@{r.user}> changed the severity of {incident.ref}: {old} → {incident.severity}."
    await flows.announce_change(deps, incident, events, line, topic=True)
    level = deps.config.severity(incident.severity)
    if level.immediate and incident.acknowledged_at is None and incident.escalated_at is None:
        await flows.escalate(deps, incident)


async def assign(r: Request) -> None:
    incident, events, old = await r.change("incident.assign", lambda s, i: incidents.assign(
        s, clock=r.deps.clock, incident=i, actor=r.user, commander_id=r.cmd.user or ""))
    if incident.channel_id:
        await flows.invite(r.deps, incident.channel_id, [incident.commander_id])
    line = (f"🧑‍✈️ <@{incident.commander_id}> is now the incident commander of {incident.ref} "
            f"(was <@{old}>, changed by <@{r.user}>).")
    await flows.announce_change(r.deps, incident, events, line, topic=True)


async def resolve(r: Request) -> None:
    await r.deps.ratelimit.check(r.user, "incident.resolve")
    incident, events, _ = await r.change("incident.resolve", lambda s, i: incidents.resolve(
        s, clock=r.deps.clock, incident=i, actor=r.user, summary=r.cmd.text))
    await flows.resolved(r.deps, incident, events)


VERBS: dict[str, Callable[[Request], Awaitable[None]]] = {
    "list": list_open, "show": show, "timeline": timeline, "postmortem": postmortem, "update": update,
    "ack": acknowledge, "severity": severity, "assign": assign, "resolve": resolve,
}
