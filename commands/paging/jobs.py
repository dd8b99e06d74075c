"""The paging family's named jobs: one delivery per page, and the escalation timer."""

from __future__ import annotations

import logging

from bot.alerts import flows as alert_flows
from bot.deps import Deps
from bot.errors import NotFound
from bot.incidents import AlreadyDone
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
    from commands.alerts.notify import SlackAlerts
    from commands.incident.notify import SlackIncidents, services

    await incident_flows.run_escalations(services(deps), SlackIncidents(deps))
    await alert_flows.escalate(deps, SlackAlerts(deps))


@job("paging.pagerduty", lock="incident:{incident_id}", retries=3)
async def pagerduty_event(deps: Deps, *, incident_id: int, kind: str, agent: str | None, url: str | None) -> None:
    """An acknowledgement or resolution made in PagerDuty, made in opsbot (not sent back to PagerDuty; the
    other providers are told). Done already in opsbot: nothing to do."""
    from commands.incident.notify import SlackIncidents, services

    actor = f"PagerDuty ({agent})" if agent else "PagerDuty"
    try:
        if kind == "acknowledged":
            await incident_flows.acknowledge(services(deps), SlackIncidents(deps), incident_id=incident_id,
                                             actor=actor, source="pagerduty")
        elif kind == "resolved":
            summary = f"Resolved in PagerDuty by {agent}" if agent else "Resolved in PagerDuty"
            await incident_flows.resolve(services(deps), SlackIncidents(deps), incident_id=incident_id,
                                         actor=actor, summary=summary + (f" ({url})" if url else ""),
                                         source="pagerduty")
    except (AlreadyDone, NotFound) as exc:
        log.info("PagerDuty %s of INC-%s: nothing to do (%s)", kind, incident_id, exc)
