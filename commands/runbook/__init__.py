"""`/runbook <name>` (and `/incident runbook <name>`): a configured runbook posted in the channel as a checklist.

Each step has Done and Skip, and Run when it references something executable: a health check (run now), an
action (the `/run` confirmation, permissions and approvals), a kill switch (the `/killswitch` confirmation)
or a rollback (the `/rollback` modal). The checklist is edited in place; every step goes on the incident
timeline with who and when, so the postmortem lists the steps taken."""

from __future__ import annotations

import time
from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import metrics, runbooks
from bot.deps import Deps
from bot.errors import InvalidInput, OpsbotError
from commands.common import (
    ack_deferred,
    channel_of,
    ephemeral,
    error_text,
    refuse,
    request_key,
    right_after_ack,
    user_of,
)
from commands.router import Router
from commands.runbook import render
from commands.runbook.ids import Ids
from commands.runbook.jobs import POST_JOB

HELP = [("/runbook [<name>]", "Post a runbook as a checklist in this (incident) channel: Done / Skip / Run per step; "
                              "alone: list the runbooks")]


async def start_runbook(ack: AsyncAck, deps: Deps, *, text: str | None, user: str, channel: str | None,
                        response_url: str | None, once: str | None) -> None:
    """What `/runbook <name>` and `/incident runbook <name>` do: checked in the ack, posted by a job."""
    name = (text or "").strip()
    if not name:
        await ack(ephemeral(render.listing(deps.config)))
        return
    try:
        found, book = runbooks.get_runbook(deps.config, name)
    except OpsbotError as exc:
        await ack(ephemeral(error_text(exc)))
        return
    if not channel:
        await ack(ephemeral(":warning: Run this in the incident's channel."))
        return
    await ack_deferred(ack, deps, POST_JOB, answer=ephemeral(f"Posting the `{found}` checklist ({book.title})…"),
                       once=once, user=user, channel=channel, response_url=response_url, runbook=found)


async def runbook_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("runbook")
    await start_runbook(ack, deps, text=command.get("text"), user=command["user_id"],
                        channel=command.get("channel_id"), response_url=command.get("response_url"),
                        once=request_key(command))


def _value(body: dict[str, Any]) -> tuple[int, int, str]:
    try:
        return render.parse_value(body["actions"][0].get("value"))
    except (KeyError, IndexError, ValueError, AttributeError):
        raise InvalidInput("This button does not name a runbook step; the message may be old or altered.") from None


async def _mark(state: str, ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    try:
        runbook_run_id, step, _name = _value(body)
    except InvalidInput as exc:
        await ack()
        refuse(deps, exc, respond=respond)
        return
    # response_url is left out: an answer through it could replace the checklist itself.
    await ack_deferred(ack, deps, "runbooks.mark", once=request_key(body), user=user_of(body),
                       channel=channel_of(body), response_url=None, runbook_run_id=runbook_run_id, step=step,
                       state=state)


async def done_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _mark("done", ack, body, respond, deps)


async def skip_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    await _mark("skipped", ack, body, respond, deps)


async def run_pressed(ack: AsyncAck, body: dict[str, Any], respond: Any, deps: Deps) -> None:
    """Run: by the step's kind, through the feature's own confirmation and permissions."""
    user, channel = user_of(body), channel_of(body)
    try:
        runbook_run_id, index, name = _value(body)
        _found, book = runbooks.get_runbook(deps.config, name)
        step = book.steps[index] if index < len(book.steps) else None
        if step is None or not step.executable:
            raise InvalidInput("This step has nothing to run.")
    except OpsbotError as exc:
        await ack()
        refuse(deps, exc, user=user, channel=channel)
        return
    if step.kind in ("check", "action"):
        await ack_deferred(ack, deps, "runbooks.run_step", once=request_key(body), user=user, channel=channel,
                           response_url=None, runbook_run_id=runbook_run_id, step=index, kind=step.kind)
    elif step.kind == "killswitch":
        from commands.flags import validate

        try:
            target, change = validate(deps, "killswitch", f"{step.killswitch} on {step.environment or ''}".strip())
        except OpsbotError as exc:
            await ack()
            refuse(deps, exc, user=user, channel=channel)
            return
        await ack_deferred(ack, deps, "flags.propose", once=request_key(body), user=user, channel=channel,
                           response_url=None, action="killswitch", flag=target.flag, environment=target.environment,
                           change=change.as_dict(), requested_at=time.time())
    else:
        await _open_rollback(ack, body, deps, service=str(step.rollback), environment=step.environment)


async def _open_rollback(ack: AsyncAck, body: dict[str, Any], deps: Deps, *, service: str,
                         environment: str | None) -> None:
    from bot import rollbacks
    from bot.rollbacks import flows as rollback_flows
    from commands.rollback import render as rollback_render

    user, channel = user_of(body), channel_of(body)
    try:
        found = rollbacks.target(deps.config, service, environment)
    except OpsbotError as exc:
        await ack()
        refuse(deps, exc, user=user, channel=channel)
        return
    await ack()

    async def open_modal() -> None:
        plan = await rollback_flows.prepare(deps, user=user, found=found, version=None)
        await deps.slack.views_open(trigger_id=body["trigger_id"],
                                    view=rollback_render.request_modal(plan, channel=channel))

    # The trigger_id expires 3 s after the press: the rollback modal opens in this process, not as a job.
    right_after_ack(deps, open_modal(), name="runbook.rollback_modal", user=user, channel=channel)


def register(app: Router) -> None:
    app.command("/runbook")(runbook_command)
    app.action(Ids.DONE.value)(done_pressed)
    app.action(Ids.SKIP.value)(skip_pressed)
    app.action(Ids.RUN.value)(run_pressed)


def is_runbook_verb(text: str | None) -> bool:
    """`/incident runbook …` (commands/incident hands it here)."""
    words = (text or "").split(maxsplit=1)
    return bool(words) and words[0].lower() == "runbook"


async def incident_runbook_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    """`/incident runbook <name>`: the same as `/runbook <name>` in the incident's channel."""
    metrics.count_command("runbook")
    words = (command.get("text") or "").split(maxsplit=1)
    await start_runbook(ack, deps, text=words[1] if len(words) > 1 else "", user=command["user_id"],
                        channel=command.get("channel_id"), response_url=command.get("response_url"),
                        once=request_key(command))
