"""bolt listeners for `/incident`, the shortcuts, the buttons and the modals. Each parses (pure), enqueues a
named job (commands/incident/jobs.py) and acks; opening a modal (whose trigger_id lives 3 s) is the one
thing done right after the ack in this process."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck
from slack_sdk.errors import SlackApiError

from bot import incidents, metrics
from bot.deps import Deps
from bot.errors import DependencyDown, OpsbotError
from bot.incidents import AlreadyDone, Declaration, flows
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
from commands.followups import defer_declared_roles, is_lifecycle_verb, lifecycle_command
from commands.incident import modals, open_declare_modal, render
from commands.incident.ids import Action, Callback, Field
from commands.incident.jobs import MUTATING
from commands.incident.parse import Command, parse, unescape
from commands.insights import is_stats, stats_command
from commands.router import Router
from commands.runbook import incident_runbook_command, is_runbook_verb
from commands.statuspage import is_publish, publish_command
from commands.statuspage import modal as status_modal

log = logging.getLogger(__name__)
ModalBuilder = Callable[[Incident, str | None], dict[str, Any]]


def register(app: Router) -> None:
    app.command("/incident")(incident_command)
    app.shortcut(Callback.GLOBAL_SHORTCUT)(global_shortcut)
    app.shortcut(Callback.MESSAGE_SHORTCUT)(message_shortcut)
    app.view(Callback.DECLARE)(declare_submitted)
    app.view(Callback.UPDATE)(update_submitted)
    app.view(Callback.RESOLVE)(resolve_submitted)
    app.action(Action.ACKNOWLEDGE)(acknowledge_pressed)
    app.action(Action.POST_UPDATE)(update_pressed)
    app.action(Action.RESOLVE)(resolve_pressed)


async def incident_command(ack: AsyncAck, command: dict[str, Any], respond: Respond, deps: Deps) -> None:
    metrics.count_command("incident")
    user, channel = command["user_id"], command.get("channel_id")
    if is_publish(command.get("text")):  # `/incident publish …`: the status page (commands/statuspage)
        await publish_command(ack, command, deps)
        return
    if is_runbook_verb(command.get("text")):  # `/incident runbook <name>`: a checklist (commands/runbook)
        await incident_runbook_command(ack, command, deps)
        return
    if is_lifecycle_verb(command.get("text")):  # role, roles, followup, followups (commands/followups)
        await lifecycle_command(ack, command, deps)
        return
    if is_stats(command.get("text")):  # `/incident stats …`: numbers and a chart (commands/insights)
        await stats_command(ack, command, deps)
        return
    try:
        cmd = parse(command.get("text"), deps.config)
    except OpsbotError as exc:  # unknown severity or bad usage: nothing is created
        await ack(ephemeral(error_text(exc)))
        return
    if cmd.verb == "help":
        await ack(ephemeral("Incident commands", render.help_blocks(deps.config.severities)))
        return
    if cmd.verb == "modal":
        await ack()
        opening = open_declare_modal(deps, trigger_id=command.get("trigger_id") or "", user_id=user,
                                     severity=cmd.severity)
        right_after_ack(deps, _open_once(opening), name="incident.modal", respond=respond)
        return
    requester = {"user": user, "channel": channel, "response_url": command.get("response_url")}
    once = request_key(command)
    if cmd.verb == "open":
        declaration = Declaration(title=cmd.text, severity=cmd.severity or "", reporter_id=user,
                                  **{"commander_id": user, **cmd.fields})  # key=value pairs (parse.FIELD_KEYS)
        await ack_deferred(ack, deps, "incident.declare", answer=ephemeral(
            f"Declaring a {cmd.severity} incident: {cmd.text}…"), once=once, **requester,
            declaration=dataclasses.asdict(declaration), dedup_key=_key("trigger", command.get("trigger_id")))
    elif cmd.verb not in MUTATING:  # list, show, timeline, postmortem
        await ack_deferred(ack, deps, "incident.read", **requester, verb=cmd.verb, ref=cmd.ref,
                           requested_at=time.time())
    else:  # a change runs once per request, under the incident's lock
        args = _change_args(cmd, request=once)
        number = incidents.parse_ref(cmd.ref) if cmd.ref else None
        if number is not None:
            await ack_deferred(ack, deps, MUTATING[cmd.verb], once=once, **requester, incident_id=number, **args)
        else:  # named by the channel it is run in: found first (jobs.locate)
            await ack_deferred(ack, deps, "incident.locate", once=once, **requester, verb=cmd.verb, args=args,
                               request=once)


def _change_args(cmd: Command, *, request: str | None) -> dict[str, Any]:
    """The job arguments of a change, besides the requester and the incident."""
    if cmd.verb == "update":
        return {"text": cmd.text, "status": cmd.status, "request": request}
    if cmd.verb == "severity":
        return {"severity": cmd.severity or ""}
    if cmd.verb == "assign":
        return {"commander": cmd.user or ""}
    if cmd.verb == "resolve":
        return {"summary": cmd.text}
    return {}


async def global_shortcut(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await ack()
    right_after_ack(deps, open_declare_modal(deps, trigger_id=body.get("trigger_id") or "", user_id=user_of(body)),
                    name="incident.shortcut", user=user_of(body))


async def message_shortcut(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await ack()
    right_after_ack(deps, _open_from_message(deps, body), name="incident.shortcut", user=user_of(body),
                    channel=channel_of(body))


async def _open_from_message(deps: Deps, body: dict[str, Any]) -> None:
    """The declare modal pre-filled with the message, linking back to it."""
    message, channel = body.get("message") or {}, channel_of(body)
    link = None
    if channel and message.get("ts"):
        try:
            link = (await deps.slack.chat_getPermalink(channel=channel, message_ts=message["ts"])).get("permalink")
        except Exception as exc:  # the modal opens without the link
            log.warning("permalink failed: %s", type(exc).__name__)
    await open_declare_modal(deps, trigger_id=body.get("trigger_id") or "", user_id=user_of(body),
                             description=unescape(message.get("text")) or None, source_link=link)


async def declare_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    user = user_of(body)
    submitted = modals.parse_declare(deps.config, view, user_id=user)
    if submitted.request is None:
        await ack(response_action="errors", errors=submitted.errors)
        return
    # The view id is the same for a double submit: the second one finds the first incident.
    await defer_declared_roles(deps, view, user=user, dedup_key=_key("view", view.get("id")), once=request_key(body))
    await _defer_submission(ack, deps, Field.TITLE, "incident.declare", once=request_key(body), user=user,
                            channel=None, response_url=None, declaration=dataclasses.asdict(submitted.request),
                            dedup_key=_key("view", view.get("id")))


async def update_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    update, errors = modals.parse_update(view)
    public, public_errors = status_modal.parse_publish(deps.config, view)  # "Publish to status page"
    if update is None or public_errors:
        await ack(response_action="errors", errors={**errors, **public_errors})
        return
    once = request_key(body)
    if public is not None:
        await status_modal.defer_publish(deps, once=once, user=user_of(body), channel=update.channel,
                                         incident_id=update.incident_id, status=update.status, text=public)
    await _defer_submission(ack, deps, Field.MESSAGE, "incident.update", once=once, user=user_of(body),
                            channel=update.channel, response_url=None, incident_id=update.incident_id,
                            text=update.text, status=update.status, impact=update.impact, eta=update.eta,
                            request=once)


async def resolve_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    parsed, errors = modals.parse_resolve(view)
    if parsed is None:
        await ack(response_action="errors", errors=errors)
        return
    await _defer_submission(ack, deps, Field.SUMMARY, "incident.resolve", once=request_key(body),
                            user=user_of(body), channel=parsed.channel, response_url=None,
                            incident_id=parsed.incident_id, summary=parsed.summary)


async def _defer_submission(ack: AsyncAck, deps: Deps, field: str, name: str, *, once: str | None,
                            **kwargs: Any) -> None:
    """Enqueue, then close the modal; when the job cannot be stored the modal stays open and says so."""
    try:
        await defer(deps, name, once=once, **kwargs)
    except DependencyDown as exc:
        await ack(response_action="errors", errors={field: str(exc)[:150]})
        return
    await ack()


async def acknowledge_pressed(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await ack_deferred(ack, deps, "incident.ack", once=request_key(body), user=user_of(body),
                       channel=channel_of(body), response_url=body.get("response_url"),
                       incident_id=_button_incident(body))


async def update_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond, deps: Deps) -> None:
    await ack()
    right_after_ack(deps, _open_modal(deps, body, status_modal.update_modal(deps.config), respond),
                    name="incident.update_modal",
                    respond=respond)


async def resolve_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond, deps: Deps) -> None:
    await ack()
    right_after_ack(deps, _open_modal(deps, body, modals.resolve_modal, respond), name="incident.resolve_modal",
                    respond=respond)


async def _open_once(opening: Awaitable[Any]) -> None:
    """A Slack retry carries the same trigger id: its modal is already open, which is not an error."""
    try:
        await opening
    except SlackApiError as exc:
        if exc.response.get("error") != "exchanged_trigger_id":
            raise
        log.info("modal already opened for this trigger (a retried request)")


def _key(kind: str, value: object) -> str | None:
    """An idempotency key from a trigger or view id; none when Slack sent none (never a shared key)."""
    return f"{kind}:{value}" if isinstance(value, str) and value else None


def _button_incident(body: dict[str, Any]) -> int:
    """The incident id a button carries; 0 (which no incident has) for anything malformed."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else {}
    value = action.get("value") if isinstance(action, dict) else None
    if not isinstance(value, str):
        return 0
    return incidents.parse_ref(value) or 0


async def _open_modal(deps: Deps, body: dict[str, Any], build: ModalBuilder, respond: Respond) -> None:
    """The update or resolve modal of an open incident; a resolved one is answered with who resolved it."""
    try:
        incident = await flows.still_open(deps.db, clock=deps.clock, incident_id=_button_incident(body))
    except AlreadyDone as done:
        text, blocks = render.already_done(str(done))
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        return
    await _open_once(deps.slack.views_open(trigger_id=body.get("trigger_id") or "",
                                           view=build(incident, channel_of(body))))
