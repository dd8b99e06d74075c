"""The runbook family's named jobs: post a checklist, mark a step, run a step."""

from __future__ import annotations

from bot.deps import Deps
from bot.jobs import job
from bot.runbooks import flows
from commands.run.notify import SlackActions
from commands.runbook.notify import SlackRunbooks

POST_JOB = "runbooks.post"


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
