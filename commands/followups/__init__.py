"""Incident roles and follow-ups (issue 20): `/incident role|roles|followup|followups …` (handed here by
commands/incident), the postmortem's *Add follow-up* and *Roles* buttons and their modals, and the scheduled
tracker poll and weekly overdue reminders (commands/followups/jobs.py)."""

from __future__ import annotations

import json
import logging
from datetime import date, timedelta
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import metrics
from bot.config import Config
from bot.deps import Deps
from bot.errors import DependencyDown, OpsbotError
from bot.followups import flows as followup_flows
from bot.incidents import flows, roles
from bot.models import Incident
from commands.common import (
    Respond,
    ack_deferred,
    channel_of,
    defer,
    ephemeral,
    error_text,
    request_key,
    right_after_ack,
    user_of,
)
from commands.followups import jobs, render
from commands.followups.ids import Action, Callback, Field, role_field
from commands.followups.parse import is_lifecycle_verb, parse
from commands.router import Router

log = logging.getLogger(__name__)
__all__ = ["HELP", "is_lifecycle_verb", "lifecycle_command", "register", "schedule"]
HELP = render.HELP
REMIND_EVERY_RUN = 3600  # seconds between overdue checks (each follow-up is reminded at most once a week)


async def lifecycle_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    """`/incident role|roles|followup|followups …`: parsed in the ack, run by the followups.command job."""
    metrics.count_command("incident")
    try:
        cmd = parse(command.get("text"), deps.config, today=deps.clock().date())
    except OpsbotError as exc:
        await ack(ephemeral(error_text(exc)))
        return
    read_only = cmd.verb in ("roles", "followups")
    await ack_deferred(ack, deps, jobs.COMMAND, once=None if read_only else request_key(command),
                       user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), cmd=cmd.__dict__)


def register(app: Router) -> None:
    app.action(Action.ADD_FOLLOWUP)(add_pressed)
    app.action(Action.PICK_ROLES)(roles_pressed)
    app.view(Callback.ADD_FOLLOWUP)(followup_submitted)
    app.view(Callback.ROLES)(roles_submitted)


def schedule(deps: Deps) -> None:
    tracker = deps.config.incidents.tracker
    if tracker is not None:
        deps.scheduler.every(jobs.POLL, tracker.poll_every, partial(deps.run_job, jobs.POLL))
    deps.scheduler.every(jobs.REMIND, timedelta(seconds=REMIND_EVERY_RUN), partial(deps.run_job, jobs.REMIND))


def _button_ref(body: dict[str, Any]) -> str:
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else {}
    value = action.get("value") if isinstance(action, dict) else None
    return value if isinstance(value, str) else ""


async def _open(deps: Deps, body: dict[str, Any], respond: Respond, *, which: str) -> None:
    try:
        incident = await flows.locate(deps.db, ref=_button_ref(body) or None, channel_id=channel_of(body))
    except OpsbotError as exc:
        await respond(text=error_text(exc), response_type="ephemeral", replace_original=False)
        return
    if which == "roles":
        held = await followup_flows.holders(deps.db, incident=incident)
        view = render.roles_modal(deps.config, incident, held, channel_of(body))
    else:
        view = render.followup_modal(incident, channel_of(body))
    await deps.slack.views_open(trigger_id=body.get("trigger_id") or "", view=view)


async def add_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond, deps: Deps) -> None:
    await ack()
    right_after_ack(deps, _open(deps, body, respond, which="followup"), name="followups.modal", respond=respond)


async def roles_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond, deps: Deps) -> None:
    await ack()
    right_after_ack(deps, _open(deps, body, respond, which="roles"), name="roles.modal", respond=respond)


def _value(view: dict[str, Any], field: str) -> Any:
    element = ((view.get("state") or {}).get("values") or {}).get(field, {}).get(field) or {}
    return element.get("value") or element.get("selected_user") or element.get("selected_date")


def _metadata(view: dict[str, Any]) -> tuple[int, str | None]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
        return int(data["incident_id"]), data.get("channel")
    except (ValueError, KeyError, TypeError):
        return 0, None


async def followup_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    text = " ".join(str(_value(view, Field.TEXT) or "").split())
    due = _value(view, Field.DUE)
    if not text:
        await ack(response_action="errors", errors={Field.TEXT: "Say what needs doing."})
        return
    try:
        due = date.fromisoformat(due).isoformat() if due else None
    except ValueError:
        await ack(response_action="errors", errors={Field.DUE: "Pick a date."})
        return
    incident_id, channel = _metadata(view)
    cmd = {"verb": "followup", "ref": f"INC-{incident_id}", "text": render.escape(text), "user": _value(view,
           Field.OWNER), "due": due}
    try:
        await defer(deps, jobs.COMMAND, once=request_key(body), user=user_of(body), channel=channel,
                    response_url=None, cmd=cmd)
    except DependencyDown as exc:  # nothing stored: the modal stays open and says why
        await ack(response_action="errors", errors={Field.TEXT: str(exc)[:150]})
        return
    await ack()


async def roles_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    incident_id, channel = _metadata(view)
    chosen = {r.name: _value(view, role_field(r.name)) for r in deps.config.incidents.roles}
    try:
        await defer(deps, jobs.ROLES_SAVED, once=request_key(body), user=user_of(body), channel=channel,
                    response_url=None, incident_id=incident_id, chosen={k: v for k, v in chosen.items() if v})
    except DependencyDown as exc:
        await ack(response_action="errors", errors={role_field(roles.COMMANDER): str(exc)[:150]})
        return
    await ack()


async def postmortem_extra(deps: Deps, incident_id: int) -> tuple[str, list[dict[str, Any]]]:
    """The postmortem's roles and follow-ups (markdown) and its *Add follow-up* / *Roles* buttons."""
    read = await followup_flows.postmortem(deps.db, incident_id=incident_id)
    if read is None:
        return "", []
    incident, held, rows = read
    return (render.postmortem_section(deps.config, held, rows, now=deps.clock()),
            render.postmortem_buttons(incident))


async def summary_roles(deps: Deps, incident: Incident, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's blocks with the incident's roles; unchanged when they cannot be read (the summary goes on)."""
    try:
        held = await followup_flows.holders(deps.db, incident=incident)
    except Exception as exc:
        log.warning("reading the roles of %s failed: %s", incident.ref, type(exc).__name__)
        return blocks
    return render.with_roles(deps.config, held, incident, blocks)


def chosen_roles(config: Config, view: dict[str, Any]) -> dict[str, str]:
    """role → user picked in a submitted modal (the declare modal's optional role pickers)."""
    picked = {r.name: _value(view, role_field(r.name)) for r in config.incidents.roles if r.name != roles.COMMANDER}
    return {name: user for name, user in picked.items() if isinstance(user, str) and user}


async def defer_declared_roles(deps: Deps, view: dict[str, Any], *, user: str, dedup_key: str | None,
                               once: str | None) -> None:
    """The declare modal's role picks, given by a job once the incident is set up (its dedup key finds it)."""
    chosen = chosen_roles(deps.config, view)
    if not (chosen and dedup_key):
        return
    try:
        await defer(deps, jobs.DECLARED_ROLES, once=once, user=user, channel=None, response_url=None,
                    dedup_key=dedup_key, chosen=chosen)
    except DependencyDown:  # the declaration's own enqueue fails the same way and says so in the modal
        log.warning("the declare modal's roles could not be queued")
