"""Actions: parameters validated against `actions:`, and the `ActionRun` row's life.

States: pending_confirm -> pending_approval -> running -> succeeded | failed, or pending_confirm ->
cancelled, pending_approval -> rejected. Read-only actions skip the confirmation. Every transition is a
conditional write (`WHERE status = …`, `version` bumped) so two presses never both win, and is audited."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.config import Config
from bot.config.actions import Action, EnumParam, IntegerParam, NameParam, Param, PatternParam
from bot.db import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import ActionRun

Value = str | int
FINISHED = ("succeeded", "failed", "cancelled", "rejected", "expired")
# An unanswered confirmation is dropped after this long; approvals wait `rollback.approval_timeout`.
CONFIRM_TTL = timedelta(minutes=15)
# A run with no result this long after its runner's timeout was lost (opsbot restarted mid-run).
LOST_AFTER = timedelta(minutes=10)


@dataclass(frozen=True)
class Request:
    """A validated `/run`: the action, its environment and typed parameter values."""

    action: str
    environment: str
    params: dict[str, Value]
    read_only: bool
    destructive: bool
    approvals: int

    def shown(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params.items())


def services(config: Config) -> list[str]:
    """Service names the config knows: rollbacks' and the services health checks are tagged with."""
    names = list(config.rollbacks)
    for env in config.environments.values():
        for check in env.checks:
            names += [s for s in check.services if s not in names]
    return names


def get_action(config: Config, name: str) -> tuple[str, Action]:
    for key, action in config.actions.items():
        if key.lower() == name.lower():
            return key, action
    raise NotFound("action", name, list(config.actions))


def environment_of(config: Config, name: str, action: Action, environment: str | None) -> str:
    envs = list(action.environments)
    if not environment:
        if config.default_environment in envs:
            return config.default_environment
        if len(envs) == 1:
            return envs[0]
        raise InvalidInput(f"Say which environment to run `{name}` in: {', '.join(f'`{e}`' for e in envs)}.")
    found = next((e for e in envs if e.lower() == environment.lower()), None)
    if found is None:
        raise NotFound("environment", environment, envs)
    return found


def usage(name: str, action: Action) -> str:
    parts = [f"/run {name}"]
    if len(action.environments) > 1:
        parts.append("[" + "|".join(action.environments) + "]")
    for key, param in action.params.items():
        shown = f"{key}={describe(param)}"
        parts.append(f"[{shown}]" if param.default is not None else shown)
    return " ".join(parts)


def describe(param: Param) -> str:
    if isinstance(param, EnumParam):
        return "|".join(param.values)
    if isinstance(param, IntegerParam):
        return f"<{param.describe()}>"
    if isinstance(param, PatternParam):
        return f"<{param.pattern}>"
    return f"<{param.type}>"


def check_value(config: Config, key: str, param: Param, raw: str) -> Value:
    """The typed value of one parameter, or InvalidInput naming the valid values."""
    if isinstance(param, EnumParam):
        found = next((v for v in param.values if v.lower() == raw.lower()), None)
        if found is None:
            raise InvalidInput(f"`{_shown(raw)}` is not a valid {key}. Valid values: "
                               f"{', '.join(f'`{v}`' for v in param.values)}.")
        return found
    if isinstance(param, IntegerParam):
        text = raw.strip()
        if not re.fullmatch(r"-?[0-9]{1,18}", text) or not param.accepts(int(text)):
            raise InvalidInput(f"`{_shown(raw)}` is not a valid {key}: a whole number in {param.describe()}.")
        return int(text)
    if isinstance(param, PatternParam):
        if len(raw) > param.max_length or not re.fullmatch(param.pattern, raw):
            raise InvalidInput(f"`{_shown(raw)}` is not a valid {key}: it must match `{param.pattern}` "
                               f"(at most {param.max_length} characters).")
        return raw
    assert isinstance(param, NameParam)
    valid = services(config) if param.type == "service" else list(config.environments)
    found = next((v for v in valid if v.lower() == raw.lower()), None)
    if found is None:
        raise NotFound(param.type, _shown(raw), valid)
    return found


def _shown(raw: str) -> str:
    text = raw[:64].replace("`", "'")
    return text + ("…" if len(raw) > 64 else "")


def validate(config: Config, *, action: str, environment: str | None, params: dict[str, Any]) -> Request:
    """Everything checked before anything runs (pure: config only); values that were validated before
    (a job's arguments, a runbook step's) go through the same checks again."""
    name, found = get_action(config, action)
    env = environment_of(config, name, found, environment)
    unknown = [key for key in params if key not in found.params]
    if unknown:
        valid = ", ".join(f"`{k}`" for k in found.params) or "none"
        raise InvalidInput(f"`{_shown(unknown[0])}` is not a parameter of `{name}` (its parameters: {valid}). "
                           f"Usage: `{usage(name, found)}`")
    values: dict[str, Value] = {}
    for key, param in found.params.items():
        if key in params:
            values[key] = check_value(config, key, param, str(params[key]))
        elif param.default is not None:
            values[key] = param.default
        else:
            raise InvalidInput(f"`{name}` needs `{key}={describe(param)}`. Usage: `{usage(name, found)}`")
    return Request(name, env, values, read_only=found.is_read_only(env), destructive=found.destructive,
                   approvals=found.approvals_in(env))


def parse_words(words: list[str]) -> tuple[str, str | None, dict[str, str]]:
    """(action, environment or None, raw key=value parameters) of `/run <action> [env] [key=value …]`."""
    if not words:
        raise InvalidInput("Usage: `/run <action> [env] [key=value …]`")
    name, environment = words[0], None
    params: dict[str, str] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            if environment is not None or params:
                raise InvalidInput(f"`{_shown(word)}`: write parameters as key=value, after the environment.")
            environment = word
            continue
        if not key or key in params:
            raise InvalidInput(f"`{_shown(word)}`: write each parameter once, as key=value.")
        params[key] = value
    return name, environment, params


# -- rows -------------------------------------------------------------------------------------


def key(run: ActionRun) -> str:
    return f"{run.action}/{run.environment}"


async def create(session: AsyncSession, *, clock: Clock, request: Request, user: str, channel: str | None,
                 incident_id: int | None, runbook_run_id: int | None = None, step: int | None = None) -> ActionRun:
    status = "pending_confirm" if not request.read_only else (
        "pending_approval" if request.approvals else "running")
    run = ActionRun(action=request.action, environment=request.environment, params=dict(request.params),
                    requested_by=user, status=status, read_only=request.read_only,
                    approvals_required=request.approvals, approved_by=[], incident_id=incident_id,
                    runbook_run_id=runbook_run_id, step=step, channel=channel, created_at=clock())
    session.add(run)
    await session.flush()
    await audit.record(session, clock=clock, actor=user, action=f"action:{request.action}", target=key(run),
                       after={"run_id": run.id, "params": dict(request.params), "status": status})
    return run


async def set_posted(db: Database, *, run_id: int, channel: str, ts: str) -> None:
    """Where the run's message is (its later states edit it, its steps go in its thread)."""
    async with db.session() as session:
        await session.execute(update(ActionRun).where(ActionRun.id == run_id).values(channel=channel, message_ts=ts))


async def get(session: AsyncSession, run_id: int) -> ActionRun:
    run = await session.get(ActionRun, run_id, populate_existing=True)
    if run is None:
        raise NotFound("action run", str(run_id), [])
    return run


async def transition(session: AsyncSession, *, clock: Clock, run_id: int, expect: tuple[str, ...], status: str,
                     user: str, audit_action: str, only_requester: bool = False, **values: Any) -> ActionRun:
    """Move the run from one of `expect` to `status` (the transaction's first statement); Conflict saying
    what happened instead when another press won."""
    query = update(ActionRun).where(ActionRun.id == run_id, ActionRun.status.in_(expect))
    if only_requester:
        query = query.where(ActionRun.requested_by == user)
    result = await session.execute(query.values(status=status, version=ActionRun.version + 1, **values))
    run = await get(session, run_id)
    if getattr(result, "rowcount", 0) != 1:
        if only_requester and run.requested_by != user:
            raise Conflict(f"Only <@{run.requested_by}>, who asked for run #{run.id}, can do that.")
        raise Conflict(f"Run #{run.id} of `{run.action}` is already {run.status.replace('_', ' ')}"
                       + (f" (by <@{run.decided_by}>)." if run.decided_by else "."))
    await audit.record(session, clock=clock, actor=user, action=audit_action, target=key(run),
                       after={"run_id": run.id, "status": status})
    return run


async def approve(session: AsyncSession, *, clock: Clock, run_id: int, user: str) -> ActionRun:
    """Count `user`'s approval (compare-and-set on `version`); running once enough have approved."""
    run = await get(session, run_id)
    if run.status != "pending_approval":
        raise Conflict(f"Run #{run.id} of `{run.action}` is {run.status.replace('_', ' ')}; nothing to approve.")
    if user == run.requested_by:
        raise Conflict("You asked for this run: someone else has to approve it.")
    if user in (run.approved_by or []):
        raise Conflict("You already approved this run.")
    approved = [*(run.approved_by or []), user]
    status = "running" if len(approved) >= run.approvals_required else "pending_approval"
    result = await session.execute(
        update(ActionRun).where(ActionRun.id == run_id, ActionRun.version == run.version)
        .values(approved_by=approved, status=status, version=ActionRun.version + 1))
    if getattr(result, "rowcount", 0) != 1:
        raise Conflict("Someone else decided on this run at the same moment; look at it again.")
    run = await get(session, run_id)
    await audit.record(session, clock=clock, actor=user, action=f"action:{run.action}.approve", target=key(run),
                       after={"run_id": run.id, "approved_by": approved, "status": status})
    return run


async def for_incident(session: AsyncSession, incident_id: int) -> list[ActionRun]:
    query = select(ActionRun).where(ActionRun.incident_id == incident_id).order_by(ActionRun.id)
    return list((await session.scalars(query)).all())


async def expire_due(session: AsyncSession, *, clock: Clock, config: Config) -> list[ActionRun]:
    """Confirmations nobody answered and approvals that timed out expire; runs that outlived their runner's
    timeout (their worker died) fail. The rows that changed, for their messages to be updated."""
    now = clock()
    changed: list[ActionRun] = []
    waiting = select(ActionRun).where(ActionRun.status.in_(("pending_confirm", "pending_approval", "running")))
    for run in (await session.scalars(waiting)).all():
        if run.status == "pending_confirm" and now - run.created_at > CONFIRM_TTL:
            status, detail = "expired", "Not confirmed in time."
        elif run.status == "pending_approval" and now - run.created_at > config.rollback.approval_timeout:
            status, detail = "expired", "Not approved in time."
        elif run.status == "running" and run.started_at is not None and now - run.started_at > _timeout(config, run):
            status, detail = "failed", "No result: opsbot stopped while it ran (it may have finished)."
        else:
            continue
        result = await session.execute(
            update(ActionRun).where(ActionRun.id == run.id, ActionRun.version == run.version)
            .values(status=status, detail=detail, finished_at=now, version=ActionRun.version + 1))
        if getattr(result, "rowcount", 0) == 1:
            run = await get(session, run.id)
            await audit.record(session, clock=clock, actor="opsbot", action=f"action:{run.action}.{status}",
                               target=key(run), after={"run_id": run.id, "status": status})
            changed.append(run)
    return changed


def _timeout(config: Config, run: ActionRun) -> timedelta:
    action = config.actions.get(run.action)
    runner = action.environments.get(run.environment) if action else None
    return (runner.timeout if runner is not None else timedelta(hours=1)) + LOST_AFTER
