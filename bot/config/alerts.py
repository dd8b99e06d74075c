"""`alerts:` — metric threshold rules evaluated by the scheduler."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef, EnvUrl
from bot.durations import Duration

_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<)\s*(-?\d+(?:\.\d+)?)\s*%?\s*$")


class Threshold(Model):
    op: Literal[">", ">=", "<", "<="] = ">"
    value: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"op": ">", "value": data}
        if isinstance(data, str):
            match = _THRESHOLD.match(data)
            if not match:
                raise ValueError(f"not a threshold: {data!r} (write e.g. '> 1000' or '< 5')")
            return {"op": match.group(1), "value": float(match.group(2))}
        if isinstance(data, dict) and ("above" in data or "below" in data):
            return {"op": ">" if "above" in data else "<", "value": data.get("above", data.get("below"))}
        return data

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.value, ">=": value >= self.value,
            "<": value < self.value, "<=": value <= self.value,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


class PrometheusSource(Model):
    url: EnvUrl
    token: EnvRef | None = None
    timeout: Duration = timedelta(seconds=10)


class AlertDefaults(Model):
    interval: Duration = timedelta(minutes=1)
    for_: Duration = Field(default=timedelta(0), alias="for")
    escalate_after: Duration = timedelta(hours=4)
    stale_after: Duration = timedelta(hours=3)
    auto_ack_after: Duration = timedelta(days=7)
    repeat_every: Duration | None = timedelta(hours=4)
    timeout: Duration = timedelta(seconds=10)


class AlertRule(Model):
    name: Name
    source: Literal["prometheus", "http_json", "postgres"]
    # prometheus: PromQL; http_json: URL; postgres: SQL returning one number.
    query: str
    # http_json: dotted path to the number, and an optional denominator path for a ratio (in %).
    path: str | None = None
    ratio_of: str | None = None
    dsn: EnvRef | None = None
    headers: dict[str, EnvRef] = Field(default_factory=dict)
    warning: Threshold | None = None
    critical: Threshold | None = None
    for_: Duration | None = Field(default=None, alias="for")
    interval: Duration | None = None
    channel: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # A link, or the name of a configured runbook (`runbooks:`), posted as a checklist in its incidents.
    runbook: AnyHttpUrl | Name | None = None
    summary: str | None = None
    unit: str = ""
    escalate_after: Duration | None = None
    stale_after: Duration | None = None
    auto_ack_after: Duration | None = None
    repeat_every: Duration | None = None
    escalate_to: list[str] = Field(default_factory=list)
    # Levels of notification while the alert fires unacknowledged (escalation_policies).
    escalation_policy: str | None = None
    # Digits after the decimal point in messages (default: 0 from 100 up, 1 from 10 up, else 2).
    decimals: int | None = Field(default=None, ge=0, le=6)

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.warning is None and self.critical is None:
            raise ValueError("a rule needs a warning or a critical threshold")
        if self.source == "http_json" and not self.path:
            raise ValueError("http_json rules need `path` (dotted path to the number)")
        if self.source == "postgres" and self.dsn is None:
            raise ValueError("postgres rules need `dsn` (e.g. ${APP_DATABASE_URL})")
        return self


class AlertSettings(Model):
    defaults: AlertDefaults = Field(default_factory=AlertDefaults)
    prometheus: PrometheusSource | None = None
    escalate_to: list[str] = Field(default_factory=list)
    # Rules evaluated at the same time per scheduler run (source reads in flight).
    concurrency: int = Field(default=100, ge=1, le=1000)
    rules: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AlertSettings:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate rule names: {', '.join(dupes)}")
        if any(r.source == "prometheus" for r in self.rules) and self.prometheus is None:
            raise ValueError("rules use source prometheus but `alerts.prometheus.url` is not set")
        return self
