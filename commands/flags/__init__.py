"""`/killswitch`, `/flag`, `/flags`, the confirmation buttons, and the read-only `GET /flags` for builtin flags."""

from __future__ import annotations

import time
from typing import Any

from slack_bolt.async_app import AsyncAck
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot import flags, metrics
from bot.deps import Deps
from bot.errors import DependencyDown, InvalidInput, NotFound, OpsbotError
from bot.flags import FlagChange, Target
from bot.providers.flags_builtin import row_state
from commands.common import ack_deferred, channel_of, ephemeral, error_text, request_key, split_args, user_of
from commands.flags.ids import Action
from commands.router import Router

HELP = [
    ("/killswitch <flag> on|off [env]", "Engage or release a kill switch (confirmed, audited, posted to #ops)"),
    ("/flag <name> enable|disable [env]", "Turn a feature flag on or off"),
    ("/flag <name> rollout <0-100> [env]", "Set a flag's rollout percentage"),
    ("/flags [env]", "Current state of every flag, read live from its store"),
]
KILLSWITCH_USAGE = "Usage: `/killswitch <flag> on|off [environment]`"
FLAG_USAGE = "Usage: `/flag <name> enable|disable [environment]` or `/flag <name> rollout <0-100> [environment]`"
_ON = {"on": True, "engage": True, "off": False, "release": False}
_ENABLE = {"enable": True, "on": True, "disable": False, "off": False}


# -- parsing (pure) ---------------------------------------------------------------------------

def parse_killswitch(text: str | None) -> tuple[str, FlagChange, str | None]:
    words = split_args(text)
    if len(words) not in (2, 3) or words[1].lower() not in _ON:
        raise InvalidInput(KILLSWITCH_USAGE)
    return words[0], FlagChange(kill_switch=_ON[words[1].lower()]), (words[2] if len(words) == 3 else None)


def parse_rollout(value: str) -> int:
    digits = value.strip().removesuffix("%")
    if not digits.isdigit() or not 0 <= int(digits) <= 100:
        raise InvalidInput(f"Rollout must be a whole percentage from 0 to 100, not `{value}`.")
    return int(digits)


def parse_flag(text: str | None) -> tuple[str, FlagChange, str | None]:
    words = split_args(text)
    if len(words) < 2:
        raise InvalidInput(FLAG_USAGE)
    verb = words[1].lower()
    if verb == "rollout" and len(words) in (3, 4):
        return words[0], FlagChange(rollout=parse_rollout(words[2])), (words[3] if len(words) == 4 else None)
    if verb in _ENABLE and len(words) in (2, 3):
        return words[0], FlagChange(enabled=_ENABLE[verb]), (words[2] if len(words) == 3 else None)
    raise InvalidInput(FLAG_USAGE)


def validate(deps: Deps, action: str, text: str | None) -> tuple[Target, FlagChange]:
    """Everything that needs no I/O: syntax, the flag and environment against opsbot.yml, the store's fields."""
    name, change, environment = (parse_killswitch if action == "killswitch" else parse_flag)(text)
    target = flags.resolve(deps.config, name, environment)
    flags.check_change(target, change, action)
    return target, change


# -- listeners --------------------------------------------------------------------------------

def _token(body: dict[str, Any]) -> str:
    """The confirmation token in a button press (empty when the payload is not what a button sends)."""
    actions = body.get("actions")
    action = actions[0] if isinstance(actions, list) and actions else None
    return str(action.get("value") or "") if isinstance(action, dict) else ""


async def _change_command(action: str, ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command(action)
    try:
        target, change = validate(deps, action, command.get("text"))
    except OpsbotError as exc:
        await ack(ephemeral(error_text(exc)))
        return
    reading = ephemeral(f"Reading `{target.flag}` in {target.environment}…")
    await ack_deferred(ack, deps, "flags.propose", answer=reading,
                       once=request_key(command), user=command["user_id"], channel=command.get("channel_id"),
                       response_url=command.get("response_url"), action=action, flag=target.flag,
                       environment=target.environment, change=change.as_dict(), requested_at=time.time())


async def killswitch_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    await _change_command("killswitch", ack, command, deps)


async def flag_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    await _change_command("flag", ack, command, deps)


async def flags_command(ack: AsyncAck, command: dict[str, Any], deps: Deps) -> None:
    metrics.count_command("flags")
    words = split_args(command.get("text"))
    environment = words[0] if words else None
    valid = flags.environment_names(deps.config)
    if environment:
        environment = next((e for e in valid if e.lower() == environment.lower()), None)
    if len(words) > 1 or (words and environment is None):
        await ack(ephemeral(error_text(NotFound("environment", " ".join(words), valid))))
        return
    await ack_deferred(ack, deps, "flags.list", answer=ephemeral("Reading flags…"), user=command["user_id"],
                       channel=command.get("channel_id"), response_url=command.get("response_url"),
                       environment=environment, requested_at=time.time())


async def _decision(name: str, ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    """A Confirm or Cancel press: one job per press, one at a time per confirmation (its token)."""
    await ack_deferred(ack, deps, name, once=request_key(body), user=user_of(body), channel=channel_of(body),
                       response_url=body.get("response_url"), token=_token(body), request=request_key(body))


async def confirm_pressed(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await _decision("flags.confirm", ack, body, deps)


async def cancel_pressed(ack: AsyncAck, body: dict[str, Any], deps: Deps) -> None:
    await _decision("flags.cancel", ack, body, deps)


def register(app: Router) -> None:
    app.command("/killswitch")(killswitch_command)
    app.command("/flag")(flag_command)
    app.command("/flags")(flags_command)
    app.action(Action.CONFIRM.value)(confirm_pressed)
    app.action(Action.CANCEL.value)(cancel_pressed)


# -- GET /flags (builtin flags, read-only) -------------------------------------------------------

def _builtin(deps: Deps) -> dict[str, list[str]]:
    """Builtin flags by name, with their environments."""
    return {name: [env for env, store in flag.environments.items() if store.provider == "builtin"]
            for name, flag in deps.config.flags.items()
            if any(store.provider == "builtin" for store in flag.environments.values())}


def _flag_json(name: str, environment: str, row: Any) -> dict[str, Any]:
    state = row_state(row)
    return {"name": name, "environment": environment, "enabled": state.enabled, "kill_switch": state.kill_switch,
            "rollout_percentage": state.rollout, "active": state.active,
            "updated_at": row.updated_at.isoformat() if row is not None else None,
            "updated_by": row.updated_by if row is not None else None}


def routes(deps: Deps) -> list[BaseRoute]:
    async def rows(names: list[str], environment: str | None) -> dict[tuple[str, str], Any]:
        return await flags.builtin_rows(deps.db, names, environment)

    def environment_of(request: Request) -> str | None:
        return request.query_params.get("environment") or None

    async def list_flags(request: Request) -> Response:
        environment = environment_of(request)
        builtin = _builtin(deps)
        try:
            found = await rows(list(builtin), environment)
        except DependencyDown as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        items = [_flag_json(name, env, found.get((name, env))) for name, envs in builtin.items()
                 for env in envs if environment in (None, env)]
        return JSONResponse({"flags": items})

    async def one_flag(request: Request) -> Response:
        name = request.path_params["name"]
        environment = environment_of(request)
        builtin = _builtin(deps)
        if name not in builtin:
            return JSONResponse({"error": f"unknown flag {name!r}", "flags": sorted(builtin)}, status_code=404)
        if environment is not None and environment not in builtin[name]:
            return JSONResponse({"error": f"flag {name!r} has no environment {environment!r}",
                                 "environments": builtin[name]}, status_code=404)
        try:
            found = await rows([name], environment)
        except DependencyDown as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        if environment is not None:
            return JSONResponse(_flag_json(name, environment, found.get((name, environment))))
        return JSONResponse({"name": name, "environments": {
            env: _flag_json(name, env, found.get((name, env))) for env in builtin[name]}})

    return [Route("/flags", list_flags, methods=["GET"]), Route("/flags/{name}", one_flag, methods=["GET"])]
