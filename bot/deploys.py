"""Deploy history: what CI recorded (POST /deploys) and what rollbacks did; the default rollback target."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.config.rollbacks import VERSION_RE
from bot.db import Database
from bot.errors import Conflict, InvalidInput
from bot.models import Deploy, Rollback

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
HISTORY_LIMIT = 200
CHOICES = 10  # earlier versions offered in the rollback modal
# A body without its own `deployed_at` repeated within this window, with nothing deployed in between, is
# CI retrying (a timeout, a lost answer), not a second deploy.
RETRY_WINDOW = timedelta(minutes=10)


class DeployIn(BaseModel):
    """The body of POST /deploys."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    service: str = Field(pattern=NAME_PATTERN)
    environment: str = Field(pattern=NAME_PATTERN)
    version: str = Field(pattern=VERSION_RE.pattern)
    commit: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    deployed_by: str | None = Field(default=None, max_length=128)
    deployed_at: datetime | None = None
    status: Literal["succeeded", "failed"] = "succeeded"

    @field_validator("deployed_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class Versions:
    """The version running now and the one a rollback should go back to (None when unknown)."""

    current: str | None
    previous: str | None
    # Other successful versions, newest first (the modal's choices), without the abandoned ones.
    earlier: tuple[str, ...] = field(default=(), compare=False)


class KeyReused(InvalidInput):
    """An Idempotency-Key already used with a different body."""


@dataclass(frozen=True)
class Recorded:
    deploy: Deploy
    created: bool  # False: a retry of a deploy already recorded (nothing new was stored)
    replayed_key: bool = False  # the retry carried the same Idempotency-Key as the original


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def request_hash(payload: DeployIn, environment: str) -> str:
    """The body as opsbot understood it (key order, whitespace and the environment's spelling do not count)."""
    return _digest(payload.model_dump(mode="json") | {"environment": environment})


async def record_request(db: Database, *, clock: Clock, payload: DeployIn, environment: str,
                         idempotency_key: str | None = None) -> Recorded:
    """POST /deploys, once per deploy: a replay of an Idempotency-Key, or (without one) the same deploy by its
    natural key (service, environment, version, commit, status and the body's `deployed_at`; without a
    `deployed_at`, the same body again within RETRY_WINDOW with nothing deployed in between) returns the
    deploy recorded first. Unique keys decide between concurrent retries."""
    digest = request_hash(payload, environment)
    for _ in range(3):
        async with db.session() as session:
            found = await _recorded(session, clock=clock, payload=payload, environment=environment, digest=digest,
                                    idempotency_key=idempotency_key)
            if isinstance(found, Recorded):
                if idempotency_key is not None and found.deploy.idempotency_key == idempotency_key:
                    # Found by its natural key while the concurrent original with this key committed
                    # between the two lookups: still a replay of this key.
                    return Recorded(found.deploy, created=False, replayed_key=True)
                return found
        try:
            async with db.session() as session:
                deploy = await record(session, clock=clock, service=payload.service, environment=environment,
                                      version=payload.version, commit=payload.commit,
                                      deployed_by=payload.deployed_by, deployed_at=payload.deployed_at,
                                      status=payload.status, idempotency_key=idempotency_key,
                                      request_hash=digest, natural_key=found)
            return Recorded(deploy, created=True)
        except IntegrityError:
            continue  # a concurrent copy of this request won the insert: the next lookup finds it
    raise Conflict("This deploy is being recorded by a concurrent request; retry in a moment.")


async def _recorded(session: AsyncSession, *, clock: Clock, payload: DeployIn, environment: str, digest: str,
                    idempotency_key: str | None) -> Recorded | str:
    """The deploy this request repeats, or else the natural key to store with a new one."""
    if idempotency_key is not None:
        keyed = (await session.scalars(select(Deploy).where(Deploy.idempotency_key == idempotency_key))).first()
        if keyed is not None:
            if keyed.request_hash != digest:
                raise KeyReused("This Idempotency-Key was already used with a different body; "
                                "use a new key for a new deploy.")
            return Recorded(keyed, created=False, replayed_key=True)
    identity = (payload.service, environment, payload.version, payload.commit, payload.status)
    if payload.deployed_at is not None:
        natural = _digest(*identity, payload.deployed_at.isoformat())
    else:
        recent = await history(session, service=payload.service, environment=environment, limit=1)
        newest = recent[0] if recent else None
        if newest is not None and newest.request_hash == digest and newest.deployed_at >= clock() - RETRY_WINDOW:
            return Recorded(newest, created=False)
        # Two copies racing in compute the same key (the same newest deploy before them): one insert wins.
        natural = _digest(*identity, payload.deployed_by, "after", newest.id if newest else 0)
    same = (await session.scalars(select(Deploy).where(Deploy.natural_key == natural))).first()
    return Recorded(same, created=False) if same is not None else natural


async def record(session: AsyncSession, *, clock: Clock, service: str, environment: str, version: str,
                 commit: str | None = None, deployed_by: str | None = None, deployed_at: datetime | None = None,
                 status: str = "succeeded", source: str = "ci", idempotency_key: str | None = None,
                 request_hash: str | None = None, natural_key: str | None = None) -> Deploy:
    deploy = Deploy(service=service, environment=environment, version=version, commit=commit,
                    deployed_by=deployed_by, deployed_at=deployed_at or clock(), status=status, source=source,
                    idempotency_key=idempotency_key, request_hash=request_hash, natural_key=natural_key)
    session.add(deploy)
    await session.flush()
    await audit.record(session, clock=clock, actor=deployed_by or source, action="deploy.record",
                       target=f"{service}/{environment}",
                       after={"version": version, "commit": commit, "status": status, "source": source,
                              "id": deploy.id})
    return deploy


async def history(session: AsyncSession, *, service: str, environment: str | None = None,
                  limit: int = 20) -> list[Deploy]:
    """Newest first."""
    query = select(Deploy).where(Deploy.service == service)
    if environment is not None:
        query = query.where(Deploy.environment == environment)
    query = query.order_by(Deploy.deployed_at.desc(), Deploy.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def get(db: Database, deploy_id: int) -> Deploy | None:
    async with db.session() as session:
        return await session.get(Deploy, deploy_id)


async def recent(db: Database, *, service: str, environment: str | None = None, limit: int = 20) -> list[Deploy]:
    """`history` in a transaction of its own (for `/deploys`)."""
    async with db.session() as session:
        return await history(session, service=service, environment=environment, limit=limit)


async def versions(session: AsyncSession, *, service: str, environment: str) -> Versions:
    """Current = the newest successful deploy. Previous = the newest successful version before it,
    skipping versions that a successful rollback has already moved away from (they were bad)."""
    deploys = [d for d in await history(session, service=service, environment=environment, limit=HISTORY_LIMIT)
               if d.status == "succeeded"]
    if not deploys:
        return Versions(None, None)
    current = deploys[0].version
    query = select(Rollback).where(Rollback.service == service, Rollback.environment == environment,
                                   Rollback.status == "succeeded")
    abandoned: dict[str, datetime] = {}
    for rollback in (await session.scalars(query)).all():
        if rollback.from_version and rollback.finished_at:
            seen = abandoned.get(rollback.from_version)
            abandoned[rollback.from_version] = max(seen, rollback.finished_at) if seen else rollback.finished_at
    earlier: list[str] = []
    for deploy in deploys[1:]:
        if deploy.version == current or deploy.version in earlier:
            continue
        left_at = abandoned.get(deploy.version)
        if left_at is not None and left_at >= deploy.deployed_at:
            continue
        earlier.append(deploy.version)
    return Versions(current, earlier[0] if earlier else None, tuple(earlier[:CHOICES]))
