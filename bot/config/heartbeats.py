"""`heartbeats:` — dead man's switches for scheduled jobs: each must ping `POST /heartbeats/<name>` at least
every `every` (plus `grace`), or an alert fires; a ping reporting failure fires one at once."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import AnyHttpUrl, Field, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef
from bot.durations import Duration

if TYPE_CHECKING:
    from bot.config import Config


class Heartbeat(Model):
    name: Name
    every: Duration = Field(alias="period")  # `every:` or `period:`, e.g. 1d for a nightly job
    grace: Duration = timedelta(hours=1)
    token: EnvRef  # `${HEARTBEAT_TOKEN}`: the job sends it as `Authorization: Bearer …` or `?token=`
    channel: str | None = None  # default: channels.alerts
    level: Literal["warning", "critical"] = "critical"
    escalation_policy: str | None = None
    summary: str | None = None  # what the job is, e.g. "Nightly retention cleanup"
    runbook: AnyHttpUrl | None = None

    @model_validator(mode="before")
    @classmethod
    def _every(cls, data: object) -> object:
        if isinstance(data, dict) and "every" in data:
            if "period" in data:
                raise ValueError("write `every` or `period`, not both")
            data = {**data, "period": data["every"]}
            del data["every"]
        return data

    @model_validator(mode="after")
    def _positive(self) -> Heartbeat:
        if self.every <= timedelta(0):
            raise ValueError("every: must be longer than 0s")
        if self.grace < timedelta(0):
            raise ValueError("grace: must not be negative")
        return self


def problems(config: Config) -> list[str]:
    """Cross-section errors: unique names, none shared with an alert rule (they share /silence and the alert
    table), escalation policies that exist."""
    found: list[str] = []
    names = [h.name for h in config.heartbeats]
    found += [f"heartbeats: duplicate name {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    rules = {r.name for r in config.alerts.rules}
    for i, heartbeat in enumerate(config.heartbeats):
        if heartbeat.name in rules:
            found.append(f"heartbeats[{i}].name: {heartbeat.name!r} is also an alert rule's name")
        if heartbeat.escalation_policy and heartbeat.escalation_policy not in config.escalation_policies:
            known = ", ".join(sorted(config.escalation_policies)) or "none"
            found.append(f"heartbeats[{i}].escalation_policy: no policy named {heartbeat.escalation_policy!r} "
                         f"(escalation_policies: {known})")
    return found
