"""Deploy history: what CI recorded (POST /deploys) and what rollbacks did; the default rollback target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import audit
from bot.clock import Clock
from bot.config.rollbacks import VERSION_RE
from bot.models import Deploy, Rollback

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
HISTORY_LIMIT = 200


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


async def record(session: AsyncSession, *, clock: Clock, service: str, environment: str, version: str,
                 commit: str | None = None, deployed_by: str | None = None, deployed_at: datetime | None = None,
                 status: str = "succeeded", source: str = "ci") -> Deploy:
    deploy = Deploy(service=service, environment=environment, version=version, commit=commit,
                    deployed_by=deployed_by, deployed_at=deployed_at or clock(), status=status, source=source)
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
    for deploy in deploys[1:]:
        if deploy.version == current:
            continue
        left_at = abandoned.get(deploy.version)
        if left_at is not None and left_at >= deploy.deployed_at:
            continue
        return Versions(current, deploy.version)
    return Versions(current, None)
