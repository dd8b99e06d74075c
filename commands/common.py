"""What every command family shares: ack bodies, background hand-off, error messages, argument splitting."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import worker
from bot.deps import Deps
from bot.errors import DependencyDown, InvalidInput, OpsbotError
from bot.idempotency import first_time

log = logging.getLogger(__name__)
Respond = Callable[..., Awaitable[Any]]

_SHELL_SPECIAL = frozenset("\"'\\")  # quotes and escapes; anything else shlex splits on its whitespace
_WORD = re.compile(r"[^ \t\r\n]+")
GENERIC_FAILURE = "Something went wrong on opsbot's side; it has been logged. Please try again."
MAX_ID = 2**31 - 1  # the id columns in bot/models.py are Integer (PostgreSQL integer)


def parse_id(value: object, *, what: str) -> int:
    """A database id from a Slack-supplied value (a button's value): a positive whole number within the id
    columns' range (`Integer`: PostgreSQL's 4-byte integer), else InvalidInput saying so. A forged or stale
    value then never reaches a query, where PostgreSQL would refuse it and SQLite overflow."""
    text = value.strip() if isinstance(value, str) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) <= MAX_ID):
        shown = text[:20].replace("`", "'") + ("…" if len(text) > 20 else "")
        raise InvalidInput(f"`{shown}` is not a valid {what} id (a whole number from 1 to {MAX_ID}); "
                           "the button may be from an old or altered message.")
    return int(text)


async def refuse(exc: OpsbotError) -> None:
    """Background work that only tells the user `exc` (through run_after_ack's error report): for a button
    whose value is invalid, since a button's ack carries no text."""
    raise exc


def split_args(text: str | None) -> list[str]:
    """Shell-like words (quotes group words); never raises on unbalanced quotes."""
    text = (text or "").strip()
    if not text:
        return []
    if not any(char in text for char in _SHELL_SPECIAL):
        return _WORD.findall(text)  # what shlex would return, at a tenth of the cost (this runs on every ack)
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def error_text(exc: BaseException) -> str:
    """The message a user sees for a failure: domain errors speak for themselves, the rest stays generic."""
    if isinstance(exc, OpsbotError):
        return f":warning: {exc}"
    if isinstance(exc, SlackApiError):
        return f":warning: Slack refused the request ({exc.response.get('error', 'error')})."
    return f":warning: {GENERIC_FAILURE}"


def ephemeral(text: str, blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"response_type": "ephemeral", "text": text}
    if blocks:
        body["blocks"] = blocks
    return body


def request_key(body: dict[str, Any]) -> str | None:
    """What identifies one user interaction across Slack redeliveries and double submissions: the view's id
    (and hash) for a form submission, the event id for an event, else the trigger id (commands, buttons,
    shortcuts). None when the request carries none of them."""
    view = body.get("view")
    if body.get("type") == "view_submission" and isinstance(view, dict) and view.get("id"):
        return f"view:{view['id']}:{view.get('hash') or ''}"
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    trigger = body.get("trigger_id")
    return f"trigger:{trigger}" if trigger else None


def run_after_ack(deps: Deps, work: Coroutine[Any, Any, Any], *, name: str,
                  respond: Respond | None = None, user: str | None = None,
                  channel: str | None = None, urgent: bool = False, once: str | None = None) -> None:
    """Hand slow work to the background; failures are told to the user (response_url, else ephemeral/DM).

    `urgent=True` for work that opens a modal: it skips the queue that lets acks go first in a burst,
    because a trigger_id expires 3 s after the click.

    `once` (usually `request_key(body)`) makes the work idempotent under redelivery: the first request with
    that key runs it, across processes and replicas (a primary key in `processed_requests` decides); a
    redelivered or double-submitted copy is acknowledged and does nothing."""

    async def report(exc: BaseException) -> None:
        text = error_text(exc)
        if respond is not None:
            await respond(text=text, response_type="ephemeral", replace_original=False)
        elif user is not None:
            await tell_user(deps, user=user, channel=channel, text=text)

    if not deps.tasks.accepting:
        work.close()
        raise DependencyDown("opsbot is restarting; please try again in a few seconds.")
    current = worker.CURRENT.get()
    if isinstance(current, worker.Forward) and not urgent:
        work.close()  # the worker process replays this request and runs it there (bot/worker.py)
        current.wanted = True
        current.report = current.report or report
        return
    if isinstance(current, worker.Replay) and urgent:
        work.close()  # the web process already did it, while the trigger_id was fresh
        return
    if once is not None:
        work = _once(deps, f"{name}:{once}", work)
    task = deps.tasks.spawn(work, name=name, on_error=report, urgent=urgent)
    if isinstance(current, worker.Replay):
        current.tasks.append(task)


async def _once(deps: Deps, key: str, work: Coroutine[Any, Any, Any]) -> Any:
    try:
        fresh = await first_time(deps.db, key, clock=deps.clock)
    except BaseException:
        work.close()
        raise
    if not fresh:
        work.close()
        log.info("redelivered request %s ignored", key)
        return None
    return await work


async def tell_user(deps: Deps, *, user: str, channel: str | None, text: str,
                    blocks: list[dict[str, Any]] | None = None) -> None:
    """An ephemeral message in `channel`, or a DM when there is no channel or the bot is not in it."""
    if channel:
        try:
            await deps.slack.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
        except SlackApiError as exc:
            log.info("postEphemeral failed (%s); sending a DM", exc.response.get("error"))
    await deps.slack.chat_postMessage(channel=user, text=text, blocks=blocks)


def user_of(body: dict[str, Any]) -> str:
    """The acting user's id in any payload shape (slash command, block_actions, view_submission)."""
    user = body.get("user")
    if isinstance(user, dict):
        return str(user.get("id", ""))
    return str(body.get("user_id") or "")


def channel_of(body: dict[str, Any]) -> str | None:
    channel = body.get("channel")
    if isinstance(channel, dict):
        return channel.get("id")
    container = body.get("container") or {}
    return body.get("channel_id") or container.get("channel_id")
