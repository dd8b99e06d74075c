"""Changing a flag: propose (permitted, rate-limited, read live, stored as a single-use confirmation),
confirm (by the same user, within minutes), apply (flip, verify by reading back, audit, incident timeline)
and announce (through the Slack layer's `FlagNotifier`).

A confirmation moves pending -> applying -> done (or failed), or pending -> cancelled | expired, each step
one conditional UPDATE. The press that claimed it is recorded (`request`): when that same press runs again
(its worker died, or a transient failure is retried) it resumes where it stopped — the flip is a set to a
value, so repeating it changes nothing twice; the audit, the timeline entry and the `done` move commit
together, once; the announcement is marked made. Any other press is told who confirmed it."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update

from bot import audit, timeline
from bot.errors import Conflict, InvalidInput, OpsbotError
from bot.flags.targets import Target, check_change, describe_change, provider_for, read, resolve
from bot.jobs import is_transient
from bot.models import PendingAction
from bot.providers.flags_base import FlagChange, FlagState

if TYPE_CHECKING:
    from bot.deps import Deps

PENDING_KIND = "flag"
CONFIRM_TTL = timedelta(minutes=5)
# A press may resume a confirmation in these states when it is the press that claimed it.
_RESUMABLE = ("applying", "done", "cancelled")
_DECIDED = {"done": "confirmed", "applying": "confirmed", "failed": "confirmed", "cancelled": "cancelled"}


@dataclass(frozen=True)
class Proposal:
    token: str
    action: str
    target: Target
    change: FlagChange
    before: FlagState
    expires_at: datetime


@dataclass(frozen=True)
class Outcome:
    action: str
    target: Target
    change: FlagChange
    actor: str
    before: FlagState
    after: FlagState
    verified: bool  # the state read back from the store shows the requested change
    read_back: bool  # False: the store cannot be read back (http without state_url); `after` is what was sent
    incident_id: int | None = None
    channel: str | None = None

    @property
    def ok(self) -> bool:
        return self.verified or not self.read_back

    def as_dict(self) -> dict[str, Any]:
        """What is kept with the confirmation, so a resumed press can announce it."""
        return {"before": self.before.as_dict(), "after": self.after.as_dict(), "verified": self.verified,
                "read_back": self.read_back, "incident_id": self.incident_id}


@dataclass(frozen=True)
class Confirmed:
    outcome: Outcome
    problems: list[str]  # what could not be posted (the change is made regardless)


class FlagNotifier(Protocol):
    async def announce(self, outcome: Outcome) -> list[str]:
        """Tell the ops channel (and the incident channel the command was run in) that a flag changed;
        return a line per post that failed (a failed post never undoes or hides the change)."""
        ...


async def _audit_failure(deps: Deps, *, actor: str, action: str, target: Target, change: FlagChange,
                         detail: str, before: FlagState | None = None) -> None:
    async with deps.db.session() as session:
        await audit.record(session, clock=deps.clock, actor=actor, action=action, target=target.ref,
                           outcome="failed", before=before.as_dict() if before else None,
                           after={"environment": target.environment, "requested": change.as_dict()},
                           detail=detail[:2000])


async def request_change(deps: Deps, *, actor: str, action: str, target: Target, change: FlagChange,
                         channel: str | None, asked_at: float | None = None) -> Proposal:
    """Check permission and rate, read the current state live (a read that started after `asked_at`, when
    given), and store a single-use confirmation."""
    check_change(target, change, action)
    await deps.require(user=actor, action=action, target=target.ref, environment=target.environment)
    await deps.ratelimit.check(actor, action)
    try:
        before = await read(deps, target, asked_at=asked_at)
    except OpsbotError as exc:  # the store (or its secret) failed: nothing was stored, nothing will change
        await _audit_failure(deps, actor=actor, action=action, target=target, change=change,
                             detail=f"could not read the current state: {exc}")
        raise
    now = deps.clock()
    token = secrets.token_urlsafe(24)
    async with deps.db.session() as session:
        session.add(PendingAction(
            token=token, kind=PENDING_KIND, actor=actor, created_at=now, expires_at=now + CONFIRM_TTL,
            payload={"action": action, "flag": target.flag, "environment": target.environment,
                     "change": change.as_dict(), "channel": channel, "before": before.as_dict()}))
    return Proposal(token, action, target, change, before, now + CONFIRM_TTL)


async def _pending(deps: Deps, token: str, user: str, request: str | None) -> PendingAction:
    """The confirmation behind a button, if `user` may use it: still pending, or claimed by this very press
    (`request`) and not finished. Marks expired ones."""
    async with deps.db.session() as session:
        query = select(PendingAction).where(PendingAction.token == token, PendingAction.kind == PENDING_KIND)
        pending = (await session.scalars(query)).first()
        if pending is None:
            raise InvalidInput("This confirmation is not valid (it may be from another opsbot). Run the command again.")
        if pending.actor != user:
            raise InvalidInput(f"Only <@{pending.actor}>, who asked for this change, can confirm or cancel it.")
        if pending.status != "pending":
            if request is not None and pending.status in _RESUMABLE and pending.payload.get("request") == request:
                return pending
            raise handled(pending, deps.clock())
        if deps.clock() >= pending.expires_at:
            pending.status = "expired"
            expired = True
        else:
            expired = False
    if expired:
        raise InvalidInput(f"This confirmation expired after {int(CONFIRM_TTL.total_seconds() // 60)} minutes; "
                           "nothing was changed. Run the command again.")
    return pending


def handled(pending: PendingAction, now: datetime) -> Conflict:
    """A confirmation that is no longer pending, naming who confirmed or cancelled it and when."""
    if pending.status in _DECIDED and pending.decided_by:
        at = pending.decided_at
        minutes = int((now - at).total_seconds() // 60) if at is not None else 0
        since = "just now" if minutes < 1 else f"{minutes}m ago"
        return Conflict(f"This change was already {_DECIDED[pending.status]} by <@{pending.decided_by}> {since}; "
                        "run the command again for a new one.")
    return Conflict(f"This request was already {pending.status}; run the command again for a new one.")


def _target_of(deps: Deps, payload: dict[str, Any]) -> Target:
    return resolve(deps.config, payload["flag"], payload["environment"])


async def cancel(deps: Deps, *, token: str, user: str, request: str | None = None) -> Target:
    pending = await _pending(deps, token, user, request)
    if pending.status == "pending":
        await _claim(deps, pending, "cancelled", user, request)
    elif pending.status != "cancelled":  # this press confirmed it: a cancel cannot follow
        raise handled(pending, deps.clock())
    return _target_of(deps, pending.payload)


async def _claim(deps: Deps, pending: PendingAction, status: str, user: str, request: str | None) -> PendingAction:
    async with deps.db.session() as session:
        now = deps.clock()
        result = await session.execute(
            update(PendingAction).where(PendingAction.id == pending.id, PendingAction.status == "pending")
            .values(status=status, decided_by=user, decided_at=now, version=PendingAction.version + 1,
                    payload={**pending.payload, "request": request})
            .execution_options(synchronize_session=False))
        found = (await session.scalars(select(PendingAction).where(PendingAction.id == pending.id)
                                       .execution_options(populate_existing=True))).first()
        if getattr(result, "rowcount", 0) != 1:
            raise handled(found or pending, now)
    assert found is not None
    return found


async def confirm(deps: Deps, notifier: FlagNotifier, *, token: str, user: str,
                  request: str | None = None) -> Confirmed:
    """The confirm button: re-check permission, claim the confirmation, apply the change, announce it.

    `request` identifies the press (bot.jobs `once` key): the same press run again resumes."""
    pending = await _pending(deps, token, user, request)
    if pending.status == "cancelled":
        raise handled(pending, deps.clock())
    payload = pending.payload
    target = _target_of(deps, payload)
    action, change, channel = payload["action"], FlagChange.from_dict(payload["change"]), payload.get("channel")
    if pending.status == "pending":
        await deps.require(user=user, action=action, target=target.ref, environment=target.environment, fresh=True)
        pending = await _claim(deps, pending, "applying", user, request)
    if pending.status == "applying":
        try:
            outcome, pending = await _apply(deps, pending, actor=user, action=action, target=target, change=change,
                                            channel=channel)
        except Exception as exc:
            if not is_transient(exc):  # final: a later press is told it was confirmed (and failed)
                await _finish(deps, pending, "failed")
            raise
    else:  # done before this press's worker stopped: what was recorded
        outcome = _outcome(pending, actor=user, target=target, change=change)
    if "problems" in pending.payload:
        return Confirmed(outcome, list(pending.payload["problems"]))
    problems = await notifier.announce(outcome)
    await _finish(deps, pending, pending.status, problems=problems)
    return Confirmed(outcome, problems)


async def _finish(deps: Deps, pending: PendingAction, status: str, **payload: Any) -> PendingAction:
    """A step of the press that claimed `pending` (under its job's lock): status and payload as given."""
    async with deps.db.session() as session:
        return await _step(session, deps, pending, status, payload)


async def _step(session: Any, deps: Deps, pending: PendingAction, status: str,
                payload: dict[str, Any]) -> PendingAction:
    result = await session.execute(
        update(PendingAction).where(PendingAction.id == pending.id, PendingAction.version == pending.version)
        .values(status=status, payload={**pending.payload, **payload}, version=PendingAction.version + 1)
        .execution_options(synchronize_session=False))
    found = (await session.scalars(select(PendingAction).where(PendingAction.id == pending.id)
                                   .execution_options(populate_existing=True))).first()
    if getattr(result, "rowcount", 0) != 1 or found is None:
        raise handled(found or pending, deps.clock())
    return found


def _outcome(pending: PendingAction, *, actor: str, target: Target, change: FlagChange) -> Outcome:
    data = pending.payload["outcome"]
    return Outcome(pending.payload["action"], target, change, actor, FlagState.from_dict(data["before"]),
                   FlagState.from_dict(data["after"]), bool(data["verified"]), bool(data["read_back"]),
                   data.get("incident_id"), pending.payload.get("channel"))


async def _apply(deps: Deps, pending: PendingAction, *, actor: str, action: str, target: Target,
                 change: FlagChange, channel: str | None) -> tuple[Outcome, PendingAction]:
    """Flip, verify the read-back, then in one transaction: `done`, the audit, the incident timeline entry."""
    provider = provider_for(deps, target)
    try:
        before, after = await provider.set(change, actor=actor)
    except OpsbotError as exc:
        await _audit_failure(deps, actor=actor, action=action, target=target, change=change, detail=str(exc))
        raise
    read_back = getattr(provider, "can_read", True)
    verified = read_back and change.satisfied_by(after)
    summary = describe_change(change)
    detail = None if verified else (
        getattr(provider, "read_back_error", None)
        or (f"read-back shows {after.as_dict()}, expected {change.as_dict()}" if read_back
            else "the admin API accepted the change; no state_url to read it back"))
    async with deps.db.session() as session:
        incident = await timeline.open_incident_in_channel(session, channel)
    outcome = Outcome(action, target, change, actor, before, after, verified, read_back,
                      incident.id if incident is not None else None, channel)
    async with deps.db.session() as session:
        # The move is the transaction's first statement (SQLite's write lock at once); if it lost, nothing
        # else is written.
        pending = await _step(session, deps, pending, "done", {"outcome": outcome.as_dict()})
        await audit.record(session, clock=deps.clock, actor=actor, action=action, target=target.ref,
                           outcome="ok" if verified or not read_back else "failed",
                           before=before.as_dict(),
                           after={**after.as_dict(), "environment": target.environment,
                                  "requested": change.as_dict()}, detail=detail)
        if outcome.incident_id is not None:
            await timeline.add_event(
                session, clock=deps.clock, incident_id=outcome.incident_id, actor=actor, kind=action,
                text=f"`{target.flag}` in {target.environment}: {summary}",
                data={"flag": target.flag, "environment": target.environment, "before": before.as_dict(),
                      "after": after.as_dict(), "verified": verified})
    return outcome, pending
