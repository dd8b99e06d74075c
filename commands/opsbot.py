"""`/opsbot`: help and whoami, the command that proves the wiring."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck

from bot import __version__, metrics
from bot.deps import Deps
from bot.jobs import job
from commands import blocks as bk
from commands import help_entries
from commands.common import ack_deferred, defer, ephemeral, request_key, responder, split_args, tell
from commands.router import Router

HELP = [
    ("/opsbot help", "List every command"),
    ("/opsbot whoami", "Your Slack id and what you may do in each environment"),
]


def render_help(entries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    lines = "\n".join(f"`{usage}` — {text}" for usage, text in entries)
    return [bk.header("opsbot commands"), bk.section(lines), bk.context(f"opsbot {__version__}")]


def render_whoami(user: str, rows: list[tuple[str, str, bool, str]]) -> list[dict[str, Any]]:
    """rows: (action, environment, allowed, reason)."""
    lines = [f"{'✅' if ok else '🚫'} `{action}` in *{env}* — {reason}" for action, env, ok, reason in rows]
    return [bk.section(f"You are <@{user}> (`{user}`)."), bk.section("\n".join(lines) or "No environments configured.")]


async def whoami_rows(deps: Deps, user: str) -> list[tuple[str, str, bool, str]]:
    environments = list(deps.config.environments) or ["*"]
    rows = []
    for env in environments:
        for action in ("killswitch", "flag", "rollback", "rollback.approve", "incident.resolve"):
            decision = await deps.authorizer.decide(user, action, env)
            rows.append((action, env, decision.allowed, decision.reason))
    return rows


MENTION_HELP = "Hi! I answer slash commands: try `/opsbot help`, `/incident open P1 <title>` or `/health`."


async def mentioned(event: dict[str, Any], body: dict[str, Any], deps: Deps) -> None:
    # Events are acked by bolt when this returns; the reply is a job, once per event_id (Slack redelivers
    # with X-Slack-Retry-Num when an answer was slow).
    await defer(deps, "opsbot.mention", once=request_key(body), channel=event["channel"],
                thread_ts=event.get("thread_ts") or event.get("ts"))


async def opsbot_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("opsbot")
    words = split_args(command.get("text"))
    sub = words[0].lower() if words else "help"
    if sub == "help":
        await ack(ephemeral("opsbot commands", render_help(help_entries())))
    elif sub == "whoami":
        # Group membership may need a Slack call: ack first, answer through response_url.
        await ack_deferred(ack, deps, "opsbot.whoami", user=command["user_id"], channel=command.get("channel_id"),
                           response_url=command.get("response_url"))
    else:
        await ack(ephemeral(f"Unknown subcommand `{sub}`. Try `/opsbot help` or `/opsbot whoami`."))


def register(app: Router) -> None:
    app.event("app_mention")(mentioned)
    app.command("/opsbot")(opsbot_command)


@job("opsbot.mention", retries=2)
async def reply_to_mention(deps: Deps, *, channel: str, thread_ts: str | None) -> None:
    await deps.slack.chat_postMessage(channel=channel, text=MENTION_HELP, thread_ts=thread_ts)


@job("opsbot.whoami", retries=2)
async def whoami(deps: Deps, *, user: str, channel: str | None, response_url: str | None) -> None:
    rows = await whoami_rows(deps, user)
    await tell(deps, text="Your permissions", blocks=render_whoami(user, rows), respond=responder(deps, response_url),
               user=user, channel=channel)
