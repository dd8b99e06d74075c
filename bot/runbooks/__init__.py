"""Runbook checklists: the `RunbookRun` row (one per incident and runbook), each step's state, who set it
and when, on the incident timeline. Plain values in, rows out; the Slack side is in commands/runbook.

Step states: open -> done | skipped | running (an action asked for) -> done | failed | open (cancelled).
Changes are compare-and-set on `version`, retried on a lost race, so two presses never overwrite each other."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit, timeline
from bot.clock import Clock
from bot.config import Config
from bot.config.runbooks import Runbook
from bot.db import Database
from bot.errors import Conflict, InvalidInput, NotFound
from bot.models import ActionRun, RunbookRun

TIMELINE_KIND = "runbook"
STATES = ("open", "done", "skipped", "running", "failed")
CAS_ATTEMPTS = 8


def get_runbook(config: Config, name: str) -> tuple[str, Runbook]:
    for key, book in config.runbooks.items():
        if key.lower() == name.strip().lower():
            return key, book
    raise NotFound("runbook", name, list(config.runbooks))


def run_key(name: str, incident_id: int | None, channel: str) -> str:
    return f"incident:{incident_id}:{name}" if incident_id is not None else f"channel:{channel}:{name}"


async def start(db: Database, *, clock: Clock, config: Config, name: str, channel: str, user: str,
                incident_id: int | None) -> tuple[RunbookRun, bool]:
    """The checklist of `name` for this incident (or channel): (row, created). Asked again, the same row."""
    name, book = get_runbook(config, name)
    key = run_key(name, incident_id, channel)
    try:
        async with db.session() as session:
            row = RunbookRun(runbook=name, incident_id=incident_id, channel=channel, started_by=user,
                             steps=[{"state": "open"} for _ in book.steps], key=key, created_at=clock())
            session.add(row)
            await session.flush()
            await audit.record(session, clock=clock, actor=user, action="runbook.start", target=name,
                               after={"runbook_run_id": row.id, "incident_id": incident_id})
            if incident_id is not None:
                await timeline.add_event(session, clock=clock, incident_id=incident_id, actor=user,
                                         kind=TIMELINE_KIND, text=f"Runbook {name} ({book.title}) posted",
                                         data={"runbook_run_id": row.id})
            return row, True
    except IntegrityError:
        async with db.session() as session:
            found = (await session.scalars(select(RunbookRun).where(RunbookRun.key == key))).first()
            if found is None:
                raise
            return found, False


async def read(db: Database, runbook_run_id: int) -> RunbookRun:
    async with db.session() as session:
        return await get(session, runbook_run_id)


async def get(session: AsyncSession, runbook_run_id: int) -> RunbookRun:
    row = await session.get(RunbookRun, runbook_run_id, populate_existing=True)
    if row is None:
        raise NotFound("runbook checklist", str(runbook_run_id), [])
    return row


async def set_posted(db: Database, *, runbook_run_id: int, channel: str, ts: str) -> None:
    async with db.session() as session:
        await session.execute(update(RunbookRun).where(RunbookRun.id == runbook_run_id)
                              .values(channel=channel, message_ts=ts))


async def mark(db: Database, *, clock: Clock, config: Config, runbook_run_id: int, step: int, state: str,
               user: str, note: str | None = None, run_id: int | None = None,
               allow_from: tuple[str, ...] = ("open", "failed", "running", "done", "skipped")) -> RunbookRun:
    """Set one step's state (who, when), on the timeline; Conflict when it already is in that state."""
    if state not in STATES:
        raise InvalidInput(f"`{state}` is not a step state")
    for _ in range(CAS_ATTEMPTS):
        async with db.session() as session:
            row = await get(session, runbook_run_id)
            steps = [dict(s) for s in row.steps or []]
            if not 0 <= step < len(steps):
                raise InvalidInput(f"Step {step + 1} is not a step of this checklist.")
            current = steps[step]
            if current.get("state") == state and state not in ("running", "failed"):
                who = current.get("by")
                raise Conflict(f"Step {step + 1} is already {state}" + (f" (by <@{who}>)." if who else "."))
            if current.get("state") not in allow_from:
                raise Conflict(f"Step {step + 1} is {current.get('state')}.")
            at = clock()
            steps[step] = {"state": state, "by": user, "at": at.isoformat(),
                           **({"note": note} if note else {}),
                           **({"run_id": run_id} if run_id is not None else {})}
            result = await session.execute(
                update(RunbookRun).where(RunbookRun.id == runbook_run_id, RunbookRun.version == row.version)
                .values(steps=steps, version=RunbookRun.version + 1))
            if getattr(result, "rowcount", 0) != 1:
                continue
            row = await get(session, runbook_run_id)
            await audit.record(session, clock=clock, actor=user, action=f"runbook.step.{state}", target=row.runbook,
                               after={"runbook_run_id": row.id, "step": step + 1, **({"note": note} if note else {})})
            if row.incident_id is not None and state != "open":
                await timeline.add_event(session, clock=clock, incident_id=row.incident_id, actor=user,
                                         kind=TIMELINE_KIND, text=step_text(config, row, step, state, note),
                                         data={"runbook_run_id": row.id, "step": step + 1, "state": state})
            return row
    raise Conflict("Too many people changed this checklist at once; press again.")


def step_text(config: Config, row: RunbookRun, step: int, state: str, note: str | None = None) -> str:
    """How the timeline (and the postmortem) says what happened to a step."""
    label = _label(config, row, step)
    verb = {"done": "done", "skipped": "skipped", "running": "started", "failed": "failed", "open": "reopened"}[state]
    return f"{row.runbook} step {step + 1} {verb}: {label}" + (f" — {note}" if note else "")


def _label(config: Config, row: RunbookRun, step: int) -> str:
    book = config.runbooks.get(row.runbook)
    if book is None or step >= len(book.steps):
        return f"step {step + 1}"
    return book.steps[step].label()


async def action_finished(session: AsyncSession, *, clock: Clock, run: ActionRun) -> None:
    """A step's action ended: done (succeeded), failed, or open again (cancelled, rejected). Called in the
    action flow's transaction; the timeline already has the run, so this only records the step."""
    if run.runbook_run_id is None or run.step is None:
        return
    state = {"succeeded": "done", "failed": "failed"}.get(run.status, "open")
    for _ in range(CAS_ATTEMPTS):
        row = await get(session, run.runbook_run_id)
        steps = [dict(s) for s in row.steps or []]
        if not 0 <= run.step < len(steps) or steps[run.step].get("run_id") != run.id:
            return  # the step moved on (marked by hand, or another run)
        steps[run.step] = {"state": state, "by": run.requested_by, "at": clock().isoformat(), "run_id": run.id}
        result = await session.execute(
            update(RunbookRun).where(RunbookRun.id == row.id, RunbookRun.version == row.version)
            .values(steps=steps, version=RunbookRun.version + 1))
        if getattr(result, "rowcount", 0) == 1:
            await audit.record(session, clock=clock, actor=run.requested_by, action=f"runbook.step.{state}",
                               target=row.runbook, after={"runbook_run_id": row.id, "step": run.step + 1,
                                                          "run_id": run.id})
            return


def progress(row: RunbookRun) -> tuple[int, int]:
    """(steps finished — done or skipped —, steps)."""
    steps = row.steps or []
    return sum(1 for s in steps if s.get("state") in ("done", "skipped")), len(steps)


def when(step: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(step.get("at")))
    except ValueError:
        return None
