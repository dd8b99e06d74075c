"""The runbook family's named jobs: post a checklist, mark a step, run a step."""

from __future__ import annotations

import logging

from bot.deps import Deps
from bot.jobs import job
from bot.runbooks import flows
from commands.run.notify import SlackActions
from commands.runbook.notify import SlackRunbooks

log = logging.getLogger(__name__)
POST_JOB = "runbooks.post"
FOR_INCIDENT_JOB = "runbooks.for_incident"


@job(POST_JOB, retries=2)
async def post(deps: Deps, *, user: str, channel: str, response_url: str | None, runbook: str,
               incident_id: int | None = None) -> None:
    await flows.post(deps, SlackRunbooks(deps, user=user, channel=channel, response_url=response_url), user=user,
                     channel=channel, name=runbook, incident_id=incident_id)


@job("runbooks.mark", lock="runbook:{runbook_run_id}", retries=2)
async def mark(deps: Deps, *, user: str, channel: str | None, response_url: str | None, runbook_run_id: int,
               step: int, state: str) -> None:
    await flows.mark(deps, SlackRunbooks(deps, user=user, channel=channel, response_url=response_url),
                     runbook_run_id=runbook_run_id, step=step, state=state, user=user)


@job("runbooks.run_step", lock="runbook:{runbook_run_id}", retries=1)
async def run_step(deps: Deps, *, user: str, channel: str | None, response_url: str | None, runbook_run_id: int,
                   step: int, kind: str) -> None:
    notifier = SlackRunbooks(deps, user=user, channel=channel, response_url=response_url)
    if kind == "check":
        await flows.run_check(deps, notifier, runbook_run_id=runbook_run_id, step=step, user=user)
    else:
        # The confirmation goes to the presser as an ephemeral message (never replacing the checklist).
        actions = SlackActions(deps, user=user, channel=channel, response_url=None)
        await flows.run_action(deps, notifier, actions, runbook_run_id=runbook_run_id, step=step, user=user)


@job(FOR_INCIDENT_JOB, retries=2)
async def for_incident(deps: Deps, *, incident_id: int) -> None:
    """A new incident's runbook (its alert rule's, or its service's) posted in its channel."""
    await flows.for_incident(deps, SlackRunbooks(deps), incident_id=incident_id)


async def after_declared(deps: Deps, incident_id: int) -> None:
    """Called by the incident family once an incident is set up: queue the runbook post (once per incident).
    Never raises: a runbook that cannot be queued must not trouble the declaration."""
    try:
        await deps.queue.defer(FOR_INCIDENT_JOB, {"incident_id": incident_id},
                               once=f"runbook-for-incident:{incident_id}")
    except Exception:
        log.exception("could not queue the runbook of INC-%s", incident_id)
