"""The paging family's named jobs: one delivery per page, and the escalation timer."""

from __future__ import annotations

import logging

from bot.deps import Deps
from bot.incidents import flows as incident_flows
from bot.jobs import job
from bot.paging import flows
from bot.paging.providers import Provider, build
from commands.paging.notify import SlackPages, pager

log = logging.getLogger(__name__)
ESCALATE = "paging.escalate"
# Attempts are counted on the Page row and bounded by paging.retries inside the job (backoff between them),
# so the queue itself does not retry; a job put back after its worker died resumes from the stored count.


def providers(deps: Deps) -> dict[str, Provider]:
    return build(deps.config.paging, deps.http)


@job(flows.DELIVER_JOB, lock="page:{page_id}")
async def deliver(deps: Deps, *, page_id: int) -> None:
    await flows.deliver(pager(deps), SlackPages(deps), providers(deps), page_id=page_id)


@job(ESCALATE)
async def escalate(deps: Deps) -> None:
    """Levels of escalation policies that are due (every 30 s on the scheduler's leader; the next run
    retries): open unacknowledged incidents, then firing unacknowledged alerts."""
    from commands.incident.notify import SlackIncidents, services

    await incident_flows.run_escalations(services(deps), SlackIncidents(deps))
