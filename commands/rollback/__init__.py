"""`/rollback <service> [env] [to <version>]`: modal, approvals in the ops channel, provider run, verification."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import metrics, rollbacks
from bot.config.rollbacks import VERSION_RE
from bot.deps import Deps
from bot.errors import InvalidInput, OpsbotError
from commands.blocks import state_value
from commands.common import ephemeral, error_text, parse_id, refuse, request_key, run_after_ack, split_args, user_of
from commands.rollback import flow, render
from commands.rollback.ids import Ids

HELP = [
    ("/rollback <service> [env] [to <version>]",
     "Roll a service back (default: the previous successful version); approvals in the ops channel"),
]
USAGE = "Usage: `/rollback <service> [env] [to <version>]`"


def parse(words: list[str]) -> tuple[str, str | None, str | None]:
    """(service, environment or None, version or None) from the command's words."""
    if not words:
        raise InvalidInput(USAGE)
    service, rest = words[0], words[1:]
    environment = None
    if rest and rest[0].lower() != "to":
        environment, rest = rest[0], rest[1:]
    version = None
    if rest:
        if rest[0].lower() != "to" or len(rest) != 2:
            raise InvalidInput(USAGE)
        version = rollbacks.check_version(rest[1])
    return service, environment, version


def submission_errors(version: str, reason: str, current: str | None) -> dict[str, str]:
    errors = {}
    if not VERSION_RE.match(version):
        errors[Ids.VERSION_BLOCK.value] = ("Enter a version: letters, digits and . _ : / @ + - "
                                           "(at most 128, not starting with - or .).")
    elif current is not None and version == current:
        errors[Ids.VERSION_BLOCK.value] = f"{version} is the version running now; pick an earlier one."
    if not reason:
        errors[Ids.REASON_BLOCK.value] = "Say why you are rolling back (audited and shown to approvers)."
    return errors


def _metadata(raw: Any) -> dict[str, Any] | None:
    """The request modal's private_metadata, or None when it is not one opsbot wrote."""
    try:
        meta = json.loads(raw or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("service"), str) \
            or not isinstance(meta.get("environment"), str):
        return None
    return meta


def register(app: AsyncApp, deps: Deps) -> None:
    @app.command("/rollback")
    async def rollback_command(ack: AsyncAck, command: dict[str, Any], respond: Any) -> None:
        metrics.count_command("rollback")
        try:
            service, environment, version = parse(split_args(command.get("text")))
            found = rollbacks.target(deps.config, service, environment)
        except OpsbotError as exc:
            services = ", ".join(f"`{s}`" for s in rollbacks.services(deps.config)) or "(none configured)"
            text = error_text(exc) + ("" if "Valid" in str(exc) else f"\nServices: {services}.")
            await ack(ephemeral(text))
            return
        await ack()
        user, channel = command["user_id"], command.get("channel_id")

        async def open_modal() -> None:
            await deps.require(user=user, action="rollback", target=rollbacks.key(found.service, found.environment),
                               environment=found.environment)
            await deps.ratelimit.check(user, "rollback")
            async with deps.db.session() as session:
                plan = await rollbacks.plan(session, config=deps.config, service=found.service,
                                            environment=found.environment, version=version)
            await deps.slack.views_open(trigger_id=command["trigger_id"],
                                        view=render.request_modal(plan, channel=channel))

        run_after_ack(deps, open_modal(), name="rollback.modal", respond=respond, urgent=True)

    @app.view(Ids.REQUEST.value)
    async def rollback_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = _metadata(view.get("private_metadata"))
        if meta is None:  # not a modal opsbot opened: nothing to roll back
            await ack()
            return
        values = view.get("state", {}).get("values", {})
        version = (state_value(values, Ids.VERSION_BLOCK, Ids.VERSION) or "").strip()
        reason = (state_value(values, Ids.REASON_BLOCK, Ids.REASON) or "").strip()
        errors = submission_errors(version, reason, meta.get("from"))
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user = user_of(body)
        run_after_ack(deps, flow.submit(deps, user=user, service=meta["service"], environment=meta["environment"],
                                        from_version=meta.get("from"), to_version=version, reason=reason,
                                        channel=meta.get("channel")),
                      name="rollback.submit", user=user, channel=meta.get("channel"), once=request_key(body))

    def decision(verb: Any, name: str) -> Any:
        """An Approve or Reject press: the button's value is the rollback id (a bad one is told, nothing looked up)."""

        async def listener(ack: AsyncAck, body: dict[str, Any], respond: Any) -> None:
            await ack()
            try:
                work = verb(deps, rollback_id=parse_id(body["actions"][0].get("value"), what="rollback"),
                            user=user_of(body))
            except InvalidInput as exc:
                work = refuse(exc)
            run_after_ack(deps, work, name=name, respond=respond, once=request_key(body))

        return listener

    app.action(Ids.APPROVE.value)(decision(flow.approve, "rollback.approve"))
    app.action(Ids.REJECT.value)(decision(flow.reject, "rollback.reject"))

    async def expire_rollbacks() -> None:
        await flow.expire(deps)

    deps.scheduler.every("rollbacks.expire", timedelta(seconds=30), expire_rollbacks)
