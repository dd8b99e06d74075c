"""bolt listeners for `/incident`, the shortcuts, the buttons and the modals. Each parses (pure), acks,
and hands the rest to `flows` in the background."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError

from bot import incidents, metrics
from bot.deps import Deps
from bot.errors import Conflict, OpsbotError
from bot.idempotency import first_time
from bot.incidents import Declaration
from commands.common import Respond, channel_of, ephemeral, error_text, run_after_ack, user_of
from commands.incident import flows, modals, open_declare_modal, render
from commands.incident.ids import Action, Callback
from commands.incident.parse import Command, parse, unescape

log = logging.getLogger(__name__)
MUTATING = ("update", "ack", "severity", "assign", "resolve")


def register(app: AsyncApp, deps: Deps) -> None:
    @app.command("/incident")
    async def incident_command(ack: AsyncAck, command: dict[str, Any], respond: Respond) -> None:
        metrics.COMMANDS.labels(command="incident").inc()
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
            run_after_ack(deps, _open_once(open_declare_modal(deps, trigger_id=command["trigger_id"], user_id=user,
                                                              severity=cmd.severity)),
                          name="incident.modal", respond=respond)
            return
        if cmd.verb == "open":
            await ack(ephemeral(f"Declaring a {cmd.severity} incident: {cmd.text}…"))
            request = Declaration(title=cmd.text, severity=cmd.severity or "", reporter_id=user, commander_id=user)
            work = flows.declare(deps, request=request, dedup_key=f"trigger:{command['trigger_id']}",
                                 respond=respond)
        else:
            await ack()
            work = run_command(deps, cmd, user=user, channel_id=channel, respond=respond,
                               dedup_key=f"incident:{command['trigger_id']}")
        run_after_ack(deps, work, name=f"incident.{cmd.verb}", respond=respond)

    @app.shortcut(Callback.GLOBAL_SHORTCUT)
    async def global_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        run_after_ack(deps, open_declare_modal(deps, trigger_id=body["trigger_id"], user_id=user_of(body)),
                      name="incident.shortcut", user=user_of(body))

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
            await open_declare_modal(deps, trigger_id=body["trigger_id"], user_id=user_of(body),
                                     description=unescape(message.get("text")) or None, source_link=link)

        run_after_ack(deps, work(), name="incident.shortcut", user=user_of(body), channel=channel)

    @app.view(Callback.DECLARE)
    async def declare_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = user_of(body)
        submitted = modals.parse_declare(deps.config, view, user_id=user)
        if submitted.request is None:
            await ack(response_action="errors", errors=submitted.errors)
            return
        await ack()
        # The view id is the same for a double submit: the second one finds the first incident.
        run_after_ack(deps, flows.declare(deps, request=submitted.request, dedup_key=f"view:{view['id']}"),
                      name="incident.declare", user=user)

    @app.view(Callback.UPDATE)
    async def update_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        update, errors = modals.parse_update(view)
        if update is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        cmd = Command("update", status=update.status, text=update.text)
        run_after_ack(deps, run_command(deps, cmd, user=user_of(body), channel_id=None, respond=None,
                                        incident_id=update.incident_id, impact=update.impact, eta=update.eta,
                                        dedup_key=f"incident:{view['id']}"),
                      name="incident.update", user=user_of(body))

    @app.view(Callback.RESOLVE)
    async def resolve_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        parsed, errors = modals.parse_resolve(view)
        if parsed is None:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        incident_id, summary = parsed
        run_after_ack(deps, run_command(deps, Command("resolve", text=summary), user=user_of(body), channel_id=None,
                                        respond=None, incident_id=incident_id, dedup_key=f"incident:{view['id']}"),
                      name="incident.resolve", user=user_of(body))

    @app.action(Action.ACKNOWLEDGE)
    async def acknowledge_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, run_command(deps, Command("ack"), user=user_of(body), channel_id=None, respond=respond,
                                        incident_id=_button_incident(body), dedup_key=f"incident:{body['trigger_id']}"),
                      name="incident.ack", respond=respond)

    @app.action(Action.POST_UPDATE)
    async def update_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, _open_modal(deps, body, modals.update_modal), name="incident.update_modal",
                      respond=respond)

    @app.action(Action.RESOLVE)
    async def resolve_pressed(ack: AsyncAck, body: dict[str, Any], respond: Respond) -> None:
        await ack()
        run_after_ack(deps, _open_modal(deps, body, modals.resolve_modal), name="incident.resolve_modal",
                      respond=respond)


async def _open_once(opening: Awaitable[None]) -> None:
    """A Slack retry carries the same trigger id: its modal is already open, which is not an error."""
    try:
        await opening
    except SlackApiError as exc:
        if exc.response.get("error") != "exchanged_trigger_id":
            raise
        log.info("modal already opened for this trigger (a retried request)")


def _button_incident(body: dict[str, Any]) -> int:
    actions = body.get("actions") or [{}]
    return int(actions[0].get("value") or 0)


async def _open_modal(deps: Deps, body: dict[str, Any], build: Any) -> None:
    async with deps.db.session() as session:
        incident = await incidents.get(session, incident_id=_button_incident(body))
    if incident.status == incidents.RESOLVED:
        raise Conflict(f"{incident.ref} is already resolved.")
    await deps.slack.views_open(trigger_id=body["trigger_id"], view=build(incident))


async def run_command(deps: Deps, cmd: Command, *, user: str, channel_id: str | None, respond: Respond | None,
                      incident_id: int | None = None, impact: str | None = None, eta: str | None = None,
                      dedup_key: str | None = None) -> None:
    """Everything but declaring: find the incident (by ref, id or channel), check permission, change, tell.

    A change runs once per `dedup_key` (trigger or view id): Slack retries and double submits are no-ops."""
    find = {"ref": cmd.ref, "channel_id": channel_id, "incident_id": incident_id}
    if cmd.verb in MUTATING and dedup_key and not await first_time(deps.db, dedup_key, clock=deps.clock):
        log.info("duplicate %s request %s ignored", cmd.verb, dedup_key)
        return
    now = deps.clock()

    async def answer(text: str, blocks: list[dict[str, Any]]) -> None:
        if respond is not None:
            await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    if cmd.verb == "list":
        async with deps.db.session() as session:
            rows = await incidents.list_open(session, config=deps.config)
        await answer(*render.incident_list(rows, now=now))
    elif cmd.verb in ("show", "timeline", "postmortem"):
        async with deps.db.session() as session:
            if incident_id is not None:
                incident = await incidents.get(session, incident_id=incident_id)
            else:
                incident = await incidents.find(session, ref=cmd.ref, channel_id=channel_id)
            timeline = await incidents.events(session, incident_id=incident.id)
        if cmd.verb == "show":
            await answer(*render.show(incident, flows.severity_of(deps, incident), now=now, timeline=timeline))
        elif cmd.verb == "timeline":
            await answer(*render.timeline(incident, timeline))
        else:
            await answer(*render.postmortem(incidents.postmortem(deps.config, incident, timeline)))
    elif cmd.verb == "update":
        incident, timeline, _ = await flows.change(
            deps, actor=user, action="incident.update", **find,
            mutate=lambda s, i: incidents.post_update(s, clock=deps.clock, incident=i, actor=user, text=cmd.text,
                                                      status=cmd.status, impact=impact, eta=eta))
        await flows.broadcast_status(deps, incident, timeline)
    elif cmd.verb == "ack":
        incident, timeline, changed = await flows.change(
            deps, actor=user, action="incident.update", **find,
            mutate=lambda s, i: incidents.acknowledge(s, clock=deps.clock, incident=i, actor=user))
        if not changed:
            await answer(*render.note(f"{incident.ref} was already acknowledged by <@{incident.acknowledged_by}>."))
            return
        await flows.announce_change(deps, incident, timeline, f"✋ <@{user}> acknowledged {incident.ref}.")
    elif cmd.verb == "severity":
        incident, timeline, old = await flows.change(
            deps, actor=user, action="incident.severity", **find,
            mutate=lambda s, i: incidents.change_severity(s, config=deps.config, clock=deps.clock, incident=i,
                                                          actor=user, severity=cmd.severity or ""))
        line = f"🔺 <@{user}> changed the severity of {incident.ref}: {old} → {incident.severity}."
        await flows.announce_change(deps, incident, timeline, line, topic=True)
        severity = deps.config.severity(incident.severity)
        if severity.immediate and incident.acknowledged_at is None and incident.escalated_at is None:
            await flows.escalate(deps, incident)
    elif cmd.verb == "assign":
        incident, timeline, old = await flows.change(
            deps, actor=user, action="incident.assign", **find,
            mutate=lambda s, i: incidents.assign(s, clock=deps.clock, incident=i, actor=user,
                                                 commander_id=cmd.user or ""))
        if incident.channel_id:
            await flows.invite(deps, incident.channel_id, [incident.commander_id])
        await flows.announce_change(deps, incident, timeline,
                                    f"🧑‍✈️ <@{incident.commander_id}> is now the incident commander of "
                                    f"{incident.ref} (was <@{old}>, changed by <@{user}>).", topic=True)
    elif cmd.verb == "resolve":
        deps.ratelimit.check(user, "incident.resolve")
        incident, timeline, _ = await flows.change(
            deps, actor=user, action="incident.resolve", **find,
            mutate=lambda s, i: incidents.resolve(s, clock=deps.clock, incident=i, actor=user, summary=cmd.text))
        await flows.resolved(deps, incident, timeline)
