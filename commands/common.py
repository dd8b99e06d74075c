"""What every command family shares: ack bodies, background hand-off, error messages, argument splitting."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.deps import Deps
from bot.errors import DependencyDown, InvalidInput, OpsbotError
from bot.slack import SharedSessionRespond

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


def refuse(deps: Deps, exc: OpsbotError, *, respond: Respond | None = None, user: str | None = None,
                 channel: str | None = None) -> None:
    """Tell the user `exc` right after the ack: for a button whose value is invalid, since a button's ack
    carries no text."""
    right_after_ack(deps, _raise(exc), name="refuse", respond=respond, user=user, channel=channel)


async def _raise(exc: OpsbotError) -> None:
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


async def defer(deps: Deps, name: str, *, once: str | None = None, **kwargs: Any) -> None:
    """Enqueue the named job `name` (bot/jobs.py) with plain JSON arguments; call it before the ack.

    It returns once the job is stored (on PostgreSQL: committed), so an acknowledged request's work survives
    any crash after it. The requester's `user`, `channel` and `response_url` among the arguments are where a
    job that fails for good reports it. `once` (usually `request_key(body)`) makes the job run once per
    Slack interaction: a redelivered or double-submitted copy does nothing (bot/queue.py)."""
    await deps.queue.defer(name, kwargs, once=once)


async def ack_deferred(ack: Any, deps: Deps, name: str, *, answer: dict[str, Any] | None = None,
                       once: str | None = None, **kwargs: Any) -> None:
    """`defer`, then ack with `answer` (or an empty ack); when the job cannot be stored, the ack says so and
    nothing is done."""
    try:
        await defer(deps, name, once=once, **kwargs)
    except DependencyDown as exc:
        await ack(ephemeral(error_text(exc)))
        return
    await (ack(answer) if answer is not None else ack())


def right_after_ack(deps: Deps, work: Coroutine[Any, Any, Any], *, name: str,
                    respond: Respond | None = None, user: str | None = None, channel: str | None = None) -> None:
    """Work that must run in this process right after the ack, not as a job: opening a modal, whose
    trigger_id expires 3 s after the click (a queued open could come too late, and a lost one costs a
    click). Failures are told to the user (response_url, else ephemeral/DM)."""

    async def report(exc: BaseException) -> None:
        await tell(deps, text=error_text(exc), respond=respond, user=user, channel=channel)

    if not deps.tasks.accepting:
        work.close()
        raise DependencyDown("opsbot is restarting; please try again in a few seconds.")
    deps.tasks.spawn(work, name=name, on_error=report, urgent=True)


def responder(deps: Deps, response_url: str | None) -> Respond | None:
    """`respond()` for a job: the request's response_url over the app's shared session."""
    if not response_url:
        return None
    return SharedSessionRespond(response_url, deps.slack)


async def tell(deps: Deps, *, text: str, blocks: list[dict[str, Any]] | None = None, respond: Respond | None = None,
               user: str | None = None, channel: str | None = None) -> None:
    """An ephemeral answer: through `respond` when there is one, else to `user` in `channel` (or a DM)."""
    if respond is not None:
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
    elif user:
        await tell_user(deps, user=user, channel=channel, text=text, blocks=blocks)


async def report_failure(deps: Deps, args: Mapping[str, Any], exc: BaseException) -> None:
    """A job failed for good: its requester (the job's `response_url`, else `user` in `channel`) is told."""
    response_url = args.get("response_url")
    user, channel = args.get("user"), args.get("channel")
    await tell(deps, text=error_text(exc), respond=responder(deps, response_url if isinstance(response_url, str)
                                                            else None),
               user=user if isinstance(user, str) else None, channel=channel if isinstance(channel, str) else None)


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

