"""The paging family's named jobs: one delivery per page, and the escalation timer."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.alerts import flows as alert_flows
from bot.config.targets import Target, parse
from bot.deps import Deps
from bot.errors import Conflict, InvalidInput, NotFound
from bot.incidents import AlreadyDone
from bot.incidents import flows as incident_flows
from bot.jobs import job
from bot.paging import flows, valid_forms
from bot.paging.providers import Provider, build
from commands.common import responder, tell
from commands.paging import render
from commands.paging.notify import SlackPages, pager

log = logging.getLogger(__name__)
ESCALATE = "paging.escalate"
STALE_PAGE = timedelta(minutes=2)  # a page stored this long ago and never attempted lost its job
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
    await flows.resend_stale(pager(deps), older_than=STALE_PAGE)


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


@job("paging.pagerduty_alert", retries=3)
async def pagerduty_alert(deps: Deps, *, dedup_key: str, agent: str | None) -> None:
    """An alert's page acknowledged in PagerDuty: the alert is acknowledged (already done: nothing to do)."""
    from commands.alerts.notify import SlackAlerts

    row = await alert_flows.by_dedup_key(deps.db, dedup_key)
    if row is None:
        log.info("PagerDuty acknowledged %s: no such firing alert", dedup_key)
        return
    try:
        await alert_flows.acknowledge_from_provider(deps, SlackAlerts(deps), alert_id=row.id, source="pagerduty",
                                                    actor=f"PagerDuty ({agent})" if agent else "PagerDuty")
    except Conflict as exc:
        log.info("PagerDuty acknowledged %s: nothing to do (%s)", dedup_key, exc)


# -- /page -----------------------------------------------------------------------------------------------
async def _answer(deps: Deps, response_url: str | None, user: str, channel: str | None, text: str,
                  blocks: list[dict[str, Any]], *, replace: bool = False) -> None:
    respond = responder(deps, response_url)
    if respond is not None and replace:
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=True)
        return
    await tell(deps, text=text, blocks=blocks, respond=respond, user=user, channel=channel)


async def _slack_target(deps: Deps, target: Target) -> Target:
    """An @handle as the user group or user it names; InvalidInput (with the valid forms) when it is neither."""
    if target.kind != "slack" or not target.name.startswith("@"):
        return target
    group = await deps.directory.group_id(target.name)
    if group is not None:
        return Target("slack", group)
    from commands.oncall.jobs import SlackPeople

    user = await SlackPeople(deps).resolve(target.name)
    if user is None:
        raise InvalidInput(render.unreachable(f"Nobody in Slack is {target.name}.", valid_forms(deps.config)))
    return Target("slack", user)


@job("paging.propose", retries=2)
async def propose(deps: Deps, *, user: str, channel: str | None, response_url: str | None, target: str,
                  message: str) -> None:
    """`/page` after the ack: permission, rate limit, the target looked up, then the Confirm/Cancel buttons."""
    await deps.require(user=user, action="page", target=target)
    await deps.ratelimit.check(user, "page")
    resolved = await _slack_target(deps, parse(target))
    shown = f"<@{resolved.name}>" if resolved.kind == "slack" and resolved.name[:1] in "UW" else (
        f"<!subteam^{resolved.name}>" if resolved.kind == "slack" else str(resolved))
    token = secrets.token_urlsafe(24)
    await flows.propose(pager(deps), token=token, actor=user, target=str(resolved), message=message,
                        channel=channel)
    text, blocks = render.confirmation(shown, message, token)
    await _answer(deps, response_url, user, channel, text, blocks)


@job("paging.confirm", lock="page-confirmation:{token}", retries=2)
async def confirm(deps: Deps, *, user: str, channel: str | None, response_url: str | None, token: str,
                  request: str | None) -> None:
    await deps.require(user=user, action="page", target="/page", fresh=True)
    paging = pager(deps)
    pending = await flows.decide(paging, token=token, user=user, status="done", request=request)
    manual = await flows.page_by_hand(paging, pending=pending, user=user)
    where = pending.payload.get("channel") or channel
    if manual.recipients.mentions and where:
        try:
            await deps.slack.chat_postMessage(channel=where, text=render.slack_page(manual, user))
        except SlackApiError:  # not in that channel (a DM with someone else): each person by DM
            for person in manual.recipients.users:
                await deps.slack.chat_postMessage(channel=person, text=render.slack_page(manual, user))
    text, blocks = render.paged(manual)
    await _answer(deps, response_url, user, channel, text, blocks, replace=True)


@job("paging.cancel", lock="page-confirmation:{token}", retries=2)
async def cancel(deps: Deps, *, user: str, channel: str | None, response_url: str | None, token: str,
                 request: str | None) -> None:
    pending = await flows.decide(pager(deps), token=token, user=user, status="cancelled", request=request)
    text, blocks = render.cancelled(str(pending.payload.get("target")))
    await _answer(deps, response_url, user, channel, text, blocks, replace=True)
