"""An action run's life: request (permission, rate limit, the row), confirmation, approvals, the run with
its output, the incident timeline and a runbook step — told to people through an `ActionNotifier`.

Every step is a named job (commands/run/jobs.py) and may run twice: transitions are conditional writes, and
the run claims its start (`started_at`) before the runner runs, so a runner never runs twice."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import update

from bot import actions, audit, timeline
from bot.actions import runners
from bot.errors import Conflict
from bot.models import ActionRun

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
EXECUTE_JOB = "actions.execute"  # defined by the Slack layer's jobs module
TIMELINE_KIND = "action"


class ActionNotifier(Protocol):
    """What people see of a run. A lost post or update never stops or fails the run."""

    async def confirm(self, run: ActionRun, *, destructive: bool) -> None:
        """Ask the requester (ephemeral Confirm/Cancel)."""
        ...

    async def card(self, run: ActionRun) -> None:
        """Post the run's message where it was asked (or update it when posted): status, approvals."""
        ...

    async def progress(self, run: ActionRun, text: str) -> None: ...

    async def result(self, run: ActionRun, outcome: runners.Outcome) -> None:
        """The output (or table) in the run message's thread."""
        ...

    async def told(self, run: ActionRun, text: str) -> None:
        """An answer to whoever acted (ephemeral)."""
        ...

    async def step_changed(self, runbook_run_id: int) -> None:
        """A runbook checklist whose step this run is: redraw it."""
        ...


def described(run: ActionRun) -> str:
    params = " ".join(f"{k}={v}" for k, v in (run.params or {}).items())
    return f"`{run.action}` in *{run.environment}*" + (f" (`{params}`)" if params else "")


async def request(deps: Deps, notifier: ActionNotifier, *, user: str, channel: str | None, action: str,
                  environment: str | None, params: dict[str, Any], runbook_run_id: int | None = None,
                  step: int | None = None, incident_id: int | None = None) -> ActionRun:
    """Validate, check permission and the rate limit, store the run; then ask for confirmation (anything not
    read-only) or go on (approvals, or the run itself)."""
    req = actions.validate(deps.config, action=action, environment=environment, params=params)
    target = f"{req.action}/{req.environment}"
    await deps.require(user=user, action=f"action:{req.action}", target=target, environment=req.environment)
    await deps.ratelimit.check(user, "action")
    async with deps.db.session() as session:
        if incident_id is None:
            incident = await timeline.open_incident_in_channel(session, channel)
            incident_id = incident.id if incident else None
        run = await actions.create(session, clock=deps.clock, request=req, user=user, channel=channel,
                                   incident_id=incident_id, runbook_run_id=runbook_run_id, step=step)
    if run.status == "pending_confirm":
        await notifier.confirm(run, destructive=req.destructive)
        return run
    await proceed(deps, notifier, run)
    return run


async def proceed(deps: Deps, notifier: ActionNotifier, run: ActionRun) -> None:
    """After the request or its confirmation: the run's message, and the run when nothing else is awaited."""
    if run.incident_id is not None:
        async with deps.db.session() as session:
            await timeline.add_event(session, clock=deps.clock, incident_id=run.incident_id, actor=run.requested_by,
                                     kind=TIMELINE_KIND, text=f"Run #{run.id}: {_plain(run)} requested",
                                     data={"run_id": run.id})
    await notifier.card(run)
    if run.status == "running":
        await start(deps, run.id)


async def start(deps: Deps, run_id: int) -> None:
    await deps.queue.defer(EXECUTE_JOB, {"run_id": run_id}, once=f"action-run:{run_id}")


async def confirm(deps: Deps, notifier: ActionNotifier, *, run_id: int, user: str) -> None:
    async with deps.db.session() as session:
        run = await actions.get(session, run_id)
    actions.get_action(deps.config, run.action)  # still configured
    # Right before the effect: group membership read from Slack now.
    await deps.require(user=user, action=f"action:{run.action}", target=actions.key(run),
                       environment=run.environment, fresh=True)
    status = "pending_approval" if run.approvals_required else "running"
    async with deps.db.session() as session:
        run = await actions.transition(session, clock=deps.clock, run_id=run_id, expect=("pending_confirm",),
                                       status=status, user=user, audit_action=f"action:{run.action}.confirm",
                                       only_requester=True)
    await notifier.told(run, f"Confirmed: {described(run)}" + (
        f" waits for {run.approvals_required} approval(s)." if status == "pending_approval" else " is starting."))
    await proceed(deps, notifier, run)


async def cancel(deps: Deps, notifier: ActionNotifier, *, run_id: int, user: str) -> None:
    async with deps.db.session() as session:
        run = await actions.transition(session, clock=deps.clock, run_id=run_id, expect=("pending_confirm",),
                                       status="cancelled", user=user, audit_action="action.cancel",
                                       only_requester=True, decided_by=user)
    await notifier.told(run, f"Cancelled: {described(run)} did not run.")
    await _step(deps, notifier, run)


async def approve(deps: Deps, notifier: ActionNotifier, *, run_id: int, user: str) -> None:
    async with deps.db.session() as session:
        run = await actions.get(session, run_id)
    if run.status == "running" and user in (run.approved_by or []):
        await start(deps, run.id)  # this approval started it (an earlier run of this job): make sure it runs
        return
    await deps.require(user=user, action=f"action:{run.action}", target=actions.key(run),
                       environment=run.environment, fresh=True)
    async with deps.db.session() as session:
        run = await actions.approve(session, clock=deps.clock, run_id=run_id, user=user)
    await notifier.card(run)
    if run.status == "running":
        await start(deps, run.id)


async def reject(deps: Deps, notifier: ActionNotifier, *, run_id: int, user: str) -> None:
    async with deps.db.session() as session:
        run = await actions.get(session, run_id)
    if user != run.requested_by:  # requesters may withdraw their own
        await deps.require(user=user, action=f"action:{run.action}", target=actions.key(run),
                           environment=run.environment)
    async with deps.db.session() as session:
        run = await actions.transition(session, clock=deps.clock, run_id=run_id, expect=("pending_approval",),
                                       status="rejected", user=user, audit_action="action.reject", decided_by=user)
    await notifier.card(run)
    await _finished_on_timeline(deps, run, f"Run #{run.id}: {_plain(run)} rejected by <@{user}>")
    await _step(deps, notifier, run)


async def _claim(deps: Deps, run_id: int) -> ActionRun | None:
    """Record the start; None when an earlier run of this job already did (the runner does not run again)."""
    async with deps.db.session() as session:
        result = await session.execute(
            update(ActionRun).where(ActionRun.id == run_id, ActionRun.status == "running",
                                    ActionRun.started_at.is_(None))
            .values(started_at=deps.clock(), version=ActionRun.version + 1))
        run = await actions.get(session, run_id)
        if getattr(result, "rowcount", 0) != 1:
            return None
        await audit.record(session, clock=deps.clock, actor=run.requested_by, action=f"action:{run.action}.start",
                           target=actions.key(run), after={"run_id": run.id, "params": run.params})
        return run


async def execute(deps: Deps, notifier: ActionNotifier, run_id: int) -> None:
    """Run it and record the result; the row always ends finished once it started."""
    run = await _claim(deps, run_id)
    if run is None:
        log.warning("action run #%s is not waiting to run (started before, or not approved); not running it",
                    run_id)
        return
    outcome = runners.Outcome("failed", "opsbot hit an internal error (logged).")
    try:
        name, action = actions.get_action(deps.config, run.action)
        runner = action.environments[run.environment]
        # The stored values are checked again against today's config before anything runs.
        req = actions.validate(deps.config, action=name, environment=run.environment, params=run.params or {})
        current = run

        async def progress(text: str) -> None:
            await notifier.progress(current, text)

        await notifier.card(run)
        outcome = await runners.run(runner, action=name, environment=run.environment, run_id=run.id,
                                    requested_by=run.requested_by, params=req.params, http=deps.http,
                                    scrub=deps.scrubber, progress=progress, destructive=req.destructive)
    except Exception:
        log.exception("action run #%s failed inside opsbot", run_id)
    finally:
        run = await _finish(deps, run.id, outcome)
    await notifier.result(run, outcome)
    await notifier.card(run)
    await _finished_on_timeline(deps, run, f"Run #{run.id}: {_plain(run)} {run.status}: {outcome.detail}")
    await _step(deps, notifier, run)


async def _finish(deps: Deps, run_id: int, outcome: runners.Outcome) -> ActionRun:
    async with deps.db.session() as session:
        result = await session.execute(
            update(ActionRun).where(ActionRun.id == run_id, ActionRun.status == "running")
            .values(status=outcome.status, detail=deps.scrubber(outcome.detail)[:4000],
                    output=None if outcome.output is None else deps.scrubber(outcome.output),
                    finished_at=deps.clock(), version=ActionRun.version + 1))
        run = await actions.get(session, run_id)
        if getattr(result, "rowcount", 0) != 1:
            raise Conflict(f"Run #{run_id} was already finished.")
        await audit.record(session, clock=deps.clock, actor=run.requested_by, action=f"action:{run.action}.finish",
                           target=actions.key(run), outcome="ok" if outcome.succeeded else "failed",
                           after={"run_id": run.id, "status": run.status}, detail=run.detail)
        return run


async def _finished_on_timeline(deps: Deps, run: ActionRun, text: str) -> None:
    if run.incident_id is None:
        return
    async with deps.db.session() as session:
        await timeline.add_event(session, clock=deps.clock, incident_id=run.incident_id, actor=run.requested_by,
                                 kind=TIMELINE_KIND, text=deps.scrubber(text)[:2000],
                                 data={"run_id": run.id, "status": run.status})


async def _step(deps: Deps, notifier: ActionNotifier, run: ActionRun) -> None:
    if run.runbook_run_id is None or run.step is None:
        return
    from bot import runbooks

    async with deps.db.session() as session:
        await runbooks.action_finished(session, clock=deps.clock, run=run)
    await notifier.step_changed(run.runbook_run_id)


def _plain(run: ActionRun) -> str:
    params = " ".join(f"{k}={v}" for k, v in (run.params or {}).items())
    return f"{run.action} in {run.environment}" + (f" ({params})" if params else "")


async def expire(deps: Deps, notifier: ActionNotifier) -> None:
    """The scheduled sweep: expired confirmations and approvals, lost runs; their messages and steps."""
    async with deps.db.session() as session:
        changed = await actions.expire_due(session, clock=deps.clock, config=deps.config)
    for run in changed:
        if run.message_ts:  # an unconfirmed run has no message of its own (its confirmation was ephemeral)
            await notifier.card(run)
        if run.status == "failed":
            await _finished_on_timeline(deps, run, f"Run #{run.id}: {_plain(run)} failed: {run.detail}")
        await _step(deps, notifier, run)
