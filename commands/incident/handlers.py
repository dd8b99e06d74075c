"""bolt listeners for `/incident`, the shortcuts, the buttons and the modals. Each parses (pure), acks,
and hands the rest to `flows` in the background."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError

from bot import incidents, metrics
from bot.deps import Deps
from bot.errors import OpsbotError
from bot.incidents import AlreadyDone, Declaration
from commands.common import Respond, channel_of, ephemeral, error_text, request_key, run_after_ack, user_of
from commands.incident import actions, flows, modals, open_declare_modal, render
from commands.incident.ids import Action, Callback
from commands.incident.parse import Command, parse, unescape

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    @app.command("/incident")
    async def incident_command(ack: AsyncAck, command: dict[str, Any], respond: Respond) -> None:
        metrics.count_command("incident")
        user, channel = command["user_id"], command.get("channel_id")
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
            run_after_ack(deps, _open_once(opening), name="incident.modal", respond=respond, urgent=True)
            return
        once = None
        work: Coroutine[Any, Any, Any]
        if cmd.verb == "open":
            await ack(ephemeral(f"Declaring a {cmd.severity} incident: {cmd.text}…"))
            request = Declaration(title=cmd.text, severity=cmd.severity or "", reporter_id=user, commander_id=user)
            work = flows.declare(deps, request=request, dedup_key=_key("trigger", command.get("trigger_id")),
                                 respond=respond)
        else:
            await ack()
            work = actions.run(deps, cmd, user=user, channel_id=channel, respond=respond)
            once = request_key(command) if cmd.verb in actions.MUTATING else None  # a change runs once
        run_after_ack(deps, work, name=f"incident.{cmd.verb}", respond=respond, once=once)

    @app.shortcut(Callback.GLOBAL_SHORTCUT)
    async def global_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        run_after_ack(deps, open_declare_modal(deps, trigger_id=body.get("trigger_id") or "", user_id=user_of(body)),
                      name="incident.shortcut", user=user_of(body), urgent=True)

    @app.shortcut(Callback.MESSAGE_SHORTCUT)
    async def message_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        message, channel = body.get("message") or {}, channel_of(body)

        async def work() -> None:
            link = None
            if channel and message.get("ts"):
                response = await flows.quietly("permalink", deps.slack.chat_getPermalink(
                    channel=channel, message_ts=message["ts"]))
                link = response.get("permalink") if response is not None else None
            await open_declare_modal(deps, trigger_id=body.get("trigger_id") or "", user_id=user_of(body),
                                     description=unescape(message.get("text")) or None, source_link=link)

        run_after_ack(deps, work(), name="incident.shortcut", user=user_of(body), channel=channel, urgent=True)

    @app.view(Callback.DECLARE)
    async def declare_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = user_of(body)
        submitted = modals.parse_declare(deps.config, view, user_id=user)
        if submitted.request is None:
            await ack(response_action="errors", errors=submitted.errors)
            return
        await ack()
        # The view id is the same for a double submit: the second one finds the first incident.
        run_after_ack(deps, flows.declare(deps, request=submitted.request, dedup_key=_key("view", view.get("id"))),
                      name="incident.declare", user=user)

    @app.view(Callback.UPDATE)
    async def update_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        update, errors = modals.parse_update(view)
        if update is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        cmd = Command("update", status=update.status, text=update.text)
        run_after_ack(deps, actions.run(deps, cmd, user=user_of(body), channel_id=update.channel, respond=None,
                                        incident_id=update.incident_id, impact=update.impact, eta=update.eta),
                      name="incident.update", user=user_of(body), channel=update.channel, once=request_key(body))

    @app.view(Callback.RESOLVE)
    async def resolve_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        parsed, errors = modals.parse_resolve(view)
        if parsed is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        run_after_ack(deps, actions.run(deps, Command("resolve", text=parsed.summary), user=user_of(body),
                                        channel_id=parsed.channel, respond=None, incident_id=parsed.incident_id),
                      name="incident.resolve", user=user_of(body), channel=parsed.channel, once=request_key(body))

    @app.action(Action.ACKNOWLEDGE)
    async def acknowledge_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, actions.run(deps, Command("ack"), user=user_of(body), channel_id=None, respond=respond,
                                        incident_id=_button_incident(body)),
                      name="incident.ack", respond=respond, once=request_key(body))

    @app.action(Action.POST_UPDATE)
    async def update_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, _open_modal(deps, body, modals.update_modal, respond), name="incident.update_modal",
                      urgent=True, respond=respond, once=request_key(body))

    @app.action(Action.RESOLVE)
    async def resolve_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, _open_modal(deps, body, modals.resolve_modal, respond), name="incident.resolve_modal",
                      urgent=True, respond=respond, once=request_key(body))


async def _open_once(opening: Awaitable[None]) -> None:
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


async def _open_modal(deps: Deps, body: dict[str, Any], build: Any, respond: Respond) -> None:
    """The update or resolve modal of an open incident; a resolved one is answered with who resolved it."""
    try:
        async with deps.db.session() as session:
            incident = await incidents.get(session, incident_id=_button_incident(body))
            await incidents.require_open(session, clock=deps.clock, incident=incident)
    except AlreadyDone as done:
        text, blocks = render.already_done(str(done))
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        return
    await deps.slack.views_open(trigger_id=body.get("trigger_id") or "", view=build(incident, channel_of(body)))
