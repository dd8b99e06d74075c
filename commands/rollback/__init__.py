"""`/rollback <service> [env] [to <version>]`: modal, approvals in the ops channel, provider run, verification."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import metrics, rollbacks
from bot.config.rollbacks import VERSION_RE
from bot.deps import Deps
from bot.errors import InvalidInput, OpsbotError
from bot.rollbacks import flows
from commands.blocks import state_value
from commands.common import (
    ack_deferred,
    channel_of,
    ephemeral,
    error_text,
    parse_id,
    refuse,
    request_key,
    right_after_ack,
    split_args,
    user_of,
)
from commands.rollback import render
from commands.rollback.ids import Ids
from commands.router import Router

HELP = [
    ("/rollback <service> [env] [to <version>]",
     "Roll a service back (default: the previous successful version); approvals in the ops channel"),
]
USAGE = "Usage: `/rollback <service> [env] [to <version>]`"
EXPIRE_EVERY = timedelta(seconds=30)


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


def submission_errors(version: str, reason: str, current: str | None, *, confirm_as: str | None = None,
                      confirmed: str | None = None) -> dict[str, str]:
    """Field errors of the request modal; `confirm_as` is the service name a destructive target asks to type."""
    errors = {}
    if confirm_as is not None and (confirmed or "").strip() != confirm_as:
        errors[Ids.CONFIRM_BLOCK.value] = (f"This rollback is destructive: type the service name `{confirm_as}` "
                                           "exactly to confirm it.")
    if not version:
        errors[Ids.VERSION_BLOCK.value] = "Pick a version or type one."
    elif not VERSION_RE.match(version):
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


async def rollback_command(ack: AsyncAck, command: dict[str, Any], respond: Any, deps: Deps) -> None:
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
        plan = await flows.prepare(deps, user=user, found=found, version=version)
        await deps.slack.views_open(trigger_id=command["trigger_id"], view=render.request_modal(plan, channel=channel))

    # The trigger_id expires 3 s after the command: the modal opens in this process, not as a job.
    right_after_ack(deps, open_modal(), name="rollback.modal", respond=respond)


async def rollback_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], deps: Deps) -> None:
    meta = _metadata(view.get("private_metadata"))
    if meta is None:  # not a modal opsbot opened: nothing to roll back
        await ack()
        return
    values = view.get("state", {}).get("values", {})
    typed = (state_value(values, Ids.OTHER_VERSION_BLOCK, Ids.OTHER_VERSION) or "").strip()
    version = typed or (state_value(values, Ids.VERSION_BLOCK, Ids.VERSION) or "").strip()
    reason = (state_value(values, Ids.REASON_BLOCK, Ids.REASON) or "").strip()
    try:  # the config decides whether the name must be typed, never the modal's own say
        destructive = rollbacks.target(deps.config, meta["service"], meta["environment"]).destructive
    except OpsbotError:
        destructive = False  # the job reports the unknown service
    errors = submission_errors(version, reason, meta.get("from"), confirm_as=meta["service"] if destructive else None,
                               confirmed=state_value(values, Ids.CONFIRM_BLOCK, Ids.CONFIRM))
    if errors:
        if typed and Ids.VERSION_BLOCK.value in errors and Ids.OTHER_VERSION_BLOCK.value in _blocks(view):
            errors[Ids.OTHER_VERSION_BLOCK.value] = errors.pop(Ids.VERSION_BLOCK.value)
        await ack(response_action="errors", errors=errors)
        return
    await ack_deferred(ack, deps, "rollback.submit", once=request_key(body), user=user_of(body),
                       channel=meta.get("channel"), response_url=None, service=meta["service"],
                       environment=meta["environment"], from_version=meta.get("from"), to_version=version,
                       reason=reason)


def _blocks(view: dict[str, Any]) -> set[str]:
    return {str(b.get("block_id")) for b in view.get("blocks", []) if isinstance(b, dict)}


async def rollback_from_deploy(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    """The Roll back button under a failed deploy: the request modal for that service and environment."""
    try:
        value = json.loads(body["actions"][0].get("value") or "")
        found = rollbacks.target(deps.config, str(value["service"]), str(value["environment"]))
    except (TypeError, ValueError, KeyError):
        await ack()
        refuse(deps, InvalidInput("This button does not name a rollback target."), respond=respond)
        return
    except OpsbotError as exc:
        await ack()
        refuse(deps, exc, respond=respond)
        return
    await ack()
    user, channel = user_of(body), channel_of(body)
    failed = value.get("version")
    reason = f"The deploy of {failed} failed." if isinstance(failed, str) and VERSION_RE.match(failed) else None

    async def open_modal() -> None:
        plan = await flows.prepare(deps, user=user, found=found, version=None)
        await deps.slack.views_open(trigger_id=body["trigger_id"],
                                    view=render.request_modal(plan, channel=channel, reason=reason))

    right_after_ack(deps, open_modal(), name="rollback.modal", respond=respond)


async def _decision(name: str, ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    """An Approve or Reject press: the button's value is the rollback id (a bad one is told, nothing looked up)."""
    try:
        rollback_id = parse_id(body["actions"][0].get("value"), what="rollback")
    except InvalidInput as exc:
        await ack()
        refuse(deps, exc, respond=respond)
        return
    await ack_deferred(ack, deps, name, once=request_key(body), user=user_of(body), channel=channel_of(body),
                       response_url=body.get("response_url"), rollback_id=rollback_id)


async def approve_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _decision("rollback.approve", ack, body, respond, deps)


async def reject_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _decision("rollback.reject", ack, body, respond, deps)


def register(app: Router) -> None:
    app.command("/rollback")(rollback_command)
    app.view(Ids.REQUEST.value)(rollback_submitted)
    app.action(Ids.APPROVE.value)(approve_pressed)
    app.action(Ids.REJECT.value)(reject_pressed)
    app.action(Ids.FROM_DEPLOY.value)(rollback_from_deploy)


def schedule(deps: Deps) -> None:
    """Approval expiry (and the lost-run sweep): the `rollbacks.expire` job every 30 s."""
    deps.scheduler.every("rollbacks.expire", EXPIRE_EVERY, partial(deps.run_job, "rollbacks.expire"))
