"""A runbook checklist's life: posted once per incident, steps marked Done/Skip, executable steps run (a health
check here; an action through bot.actions.flows, with its confirmation and permissions), each on the
timeline — told to people through a `RunbookNotifier`."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select

from bot import actions, runbooks, timeline
from bot.actions import flows as action_flows
from bot.config.runbooks import Runbook, Step, for_alert
from bot.errors import Conflict, InvalidInput, NotFound
from bot.health import check_environment
from bot.models import AlertState, Incident, RunbookRun

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
SYSTEM = "opsbot"  # the actor of a checklist posted by itself (for an incident opened from an alert)


class RunbookNotifier(Protocol):
    async def post(self, row: RunbookRun, name: str, book: Runbook) -> tuple[str, str] | None:
        """Post the checklist in `row.channel`: its (channel, ts), None when Slack refused."""
        ...

    async def refresh(self, runbook_run_id: int) -> None:
        """Edit the checklist in place (chat.update)."""
        ...

    async def thread(self, row: RunbookRun, text: str) -> None: ...

    async def told(self, text: str) -> None:
        """An ephemeral answer to whoever acted."""
        ...


async def post(deps: Deps, notifier: RunbookNotifier, *, user: str, channel: str, name: str,
               incident_id: int | None = None) -> RunbookRun:
    """The checklist of `name` in `channel` (the incident's channel when `incident_id` is given): posted
    once; asked again, it is edited to the current state and the asker is pointed to it."""
    name, book = runbooks.get_runbook(deps.config, name)
    if incident_id is None:
        async with deps.db.session() as session:
            incident = await timeline.open_incident_in_channel(session, channel)
            incident_id = incident.id if incident else None
    row, created = await runbooks.start(deps.db, clock=deps.clock, config=deps.config, name=name, channel=channel,
                                        user=user, incident_id=incident_id)
    if row.message_ts is None:
        posted = await notifier.post(row, name, book)
        if posted is None:
            raise InvalidInput("Could not post the runbook in this channel; invite opsbot and try again.")
        await runbooks.set_posted(deps.db, runbook_run_id=row.id, channel=posted[0], ts=posted[1])
        row.channel, row.message_ts = posted
    elif not created:
        await notifier.refresh(row.id)
        await notifier.told(f"The `{name}` checklist is already posted in this channel (it is up to date).")
    return row


async def mark(deps: Deps, notifier: RunbookNotifier, *, runbook_run_id: int, step: int, state: str,
               user: str) -> None:
    await runbooks.mark(deps.db, clock=deps.clock, config=deps.config, runbook_run_id=runbook_run_id, step=step,
                        state=state, user=user)
    await notifier.refresh(runbook_run_id)


async def _step(deps: Deps, runbook_run_id: int, step: int) -> tuple[RunbookRun, Step]:
    async with deps.db.session() as session:
        row = await runbooks.get(session, runbook_run_id)
    name, book = runbooks.get_runbook(deps.config, row.runbook)
    if not 0 <= step < len(book.steps):
        raise InvalidInput(f"Step {step + 1} is not a step of `{name}`.")
    current = (row.steps or [])[step] if step < len(row.steps or []) else {}
    if current.get("state") in ("done", "skipped", "running"):
        raise Conflict(f"Step {step + 1} is already {current.get('state')}"
                       + (f" (by <@{current['by']}>)." if current.get("by") else "."))
    return row, book.steps[step]


async def run_action(deps: Deps, notifier: RunbookNotifier, action_notifier: action_flows.ActionNotifier, *,
                     runbook_run_id: int, step: int, user: str) -> None:
    """An action step's Run: the same request as `/run` (permission, rate limit, confirmation, approvals)."""
    row, found = await _step(deps, runbook_run_id, step)
    assert found.action is not None
    run = await action_flows.request(deps, action_notifier, user=user, channel=row.channel, action=found.action,
                                     environment=found.environment,
                                     params={k: str(v) for k, v in found.params.items()},
                                     runbook_run_id=row.id, step=step, incident_id=row.incident_id)
    async with deps.db.session() as session:
        run = await actions.get(session, run.id)
    if run.status in actions.FINISHED:
        await notifier.refresh(row.id)  # a read-only action may already have finished (and marked the step)
        return
    try:
        await runbooks.mark(deps.db, clock=deps.clock, config=deps.config, runbook_run_id=row.id, step=step,
                            state="running", user=user, run_id=run.id, note=f"run #{run.id}",
                            allow_from=("open", "failed"))
    except Conflict:
        log.info("runbook step %s of #%s moved on before its run #%s was recorded", step, row.id, run.id)
    await notifier.refresh(row.id)


async def run_check(deps: Deps, notifier: RunbookNotifier, *, runbook_run_id: int, step: int, user: str) -> None:
    """A health check step's Run: the check now; the step is done when it passes, failed otherwise."""
    row, found = await _step(deps, runbook_run_id, step)
    assert found.check is not None
    environments = [found.environment] if found.environment else [deps.config.default_environment,
                                                                  *deps.config.environments]
    for name in dict.fromkeys(e for e in environments if e in deps.config.environments):
        env = deps.config.environments[name]
        if any(c.label() == found.check for c in env.checks):
            break
    else:
        raise NotFound("health check", found.check, [c.label() for e in deps.config.environments.values()
                                                     for c in e.checks])
    report = await check_environment(name, env, http=deps.probes, only=[found.check], scrub=deps.scrubber)
    [result] = report.results
    line = f"{result.status.upper()} {result.name} ({name}, {result.latency_ms:.0f} ms)" + (
        f": {result.explanation}" if result.explanation else "")
    await notifier.thread(row, f"Step {step + 1}: {_literal(line)}")
    await runbooks.mark(deps.db, clock=deps.clock, config=deps.config, runbook_run_id=row.id, step=step,
                        state="done" if result.status != "fail" else "failed", user=user, note=line[:300])
    await notifier.refresh(row.id)


def _literal(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_PERMALINK = re.compile(r"/archives/([A-Z0-9]+)/p([0-9]{7,})(?:$|\?)")


def _alert_message(link: str | None) -> tuple[str, str] | None:
    """(channel, ts) of a Slack message permalink (an incident opened from an alert links the alert)."""
    match = _PERMALINK.search(link or "")
    if match is None:
        return None
    digits = match.group(2)
    return match.group(1), f"{digits[:-6]}.{digits[-6:]}"


async def runbook_for(deps: Deps, incident: Incident) -> str | None:
    """The runbook for a new incident: the one its alert's rule names (`runbook: <name>`, or the runbook's
    `alerts:`), else the one listing the incident's service (`services:`)."""
    message = _alert_message(incident.source_link)
    if message is not None:
        async with deps.db.session() as session:
            query = select(AlertState.rule).where(AlertState.channel == message[0],
                                                  AlertState.message_ts == message[1])
            rule = (await session.scalars(query.limit(1))).first()
        name = for_alert(deps.config, rule) if rule else None
        if name:
            return name
    if incident.service:
        return next((name for name, book in deps.config.runbooks.items()
                     if incident.service.lower() in (s.lower() for s in book.services)), None)
    return None


async def for_incident(deps: Deps, notifier: RunbookNotifier, *, incident_id: int) -> None:
    """Post the runbook of a newly declared incident in its channel, when there is one for it."""
    async with deps.db.session() as session:
        incident = await session.get(Incident, incident_id)
    if incident is None or not incident.channel_id:
        return
    name = await runbook_for(deps, incident)
    if name is not None:
        await post(deps, notifier, user=SYSTEM, channel=incident.channel_id, name=name, incident_id=incident.id)
