"""`alerts:` — metric threshold rules evaluated by the scheduler."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from bot.config.base import Model, Name
from bot.config.secrets import EnvRef, EnvUrl
from bot.durations import Duration

_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<)\s*(.+?)\s*$")
# A number and its unit (`2s`, `1000 ms`, `80%`, `1.5 GiB`); anything else after the operator is an expression.
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*([A-Za-z%][A-Za-z%/_]*)?$")


class Threshold(Model):
    op: Literal[">", ">=", "<", "<="] = ">"
    value: float = 0.0
    # As written after the operator: its unit (converted into the rule's when the rule loads), or an expression
    # over the names of the JSON answer (`pool_size + max_overflow`, bot/alerts/expr.py), computed per read.
    given_unit: str = ""
    expr: str | None = None
    unit: str = ""  # the rule's unit, in which `value` is and is shown

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return {"op": ">", "value": data}
        if isinstance(data, str):
            match = _THRESHOLD.match(data)
            if not match:
                raise ValueError(f"not a threshold: {data!r} (write e.g. '> 1000', '> 2s', '> 80%' or "
                                 "'>= pool_size + max_overflow')")
            number = _NUMBER.match(match.group(2))
            if number:
                return {"op": match.group(1), "value": float(number.group(1)), "given_unit": number.group(2) or ""}
            from bot.alerts.expr import ExpressionError, parse  # bot.alerts imports this module

            try:
                parse(match.group(2))
            except ExpressionError as exc:
                raise ValueError(f"not a threshold: {data!r}: {exc}") from None
            return {"op": match.group(1), "expr": match.group(2)}
        if isinstance(data, dict) and ("above" in data or "below" in data):
            return {"op": ">" if "above" in data else "<", "value": data.get("above", data.get("below"))}
        return data

    def in_unit(self, unit: str, *, where: str) -> Threshold:
        """This threshold with its number converted into the rule's `unit` (ValueError naming `where`)."""
        from bot.alerts.units import convert  # bot.alerts imports this module

        value = self.value if self.expr else convert(self.value, self.given_unit, unit, where=where)
        return self.model_copy(update={"value": value, "unit": unit, "given_unit": ""})

    def resolved(self, value: float) -> Threshold:
        """A computed threshold's number for one read."""
        return self.model_copy(update={"value": value, "expr": None})

    def breached(self, value: float) -> bool:
        return {
            ">": value > self.value, ">=": value >= self.value,
            "<": value < self.value, "<=": value <= self.value,
        }[self.op]

    def __str__(self) -> str:
        from bot.alerts.units import format_number, with_unit

        return f"{self.op} {self.expr}" if self.expr else f"{self.op} {with_unit(format_number(self.value), self.unit)}"


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
    source: Literal["prometheus", "http_json", "postgres", "http_query"]
    # prometheus: PromQL; http_json, http_query: URL (`${VAR}` allowed); postgres: SQL returning one number.
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
    # http_json, http_query: the value computed from names in the answer (`checked_out / pool_size * 100`).
    value: str | None = None
    # http_query: the request (bot/providers/metrics_http_query.py); `path` is a JMESPath expression there.
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, EnvRef] = Field(default_factory=dict)
    # Strings in it are EnvRefs (secrets are masked and `opsbot config check` reports unset variables).
    body: dict[str, Any] | list[Any] | EnvRef | None = None
    window: Duration = timedelta(minutes=5)  # `{since}` in templates is now minus this

    @field_validator("body", mode="after")
    @classmethod
    def _body_refs(cls, value: Any) -> Any:
        def walk(node: Any) -> Any:
            if isinstance(node, str):
                return EnvRef(node)
            if isinstance(node, list):
                return [walk(item) for item in node]
            if isinstance(node, dict):
                return {str(key): walk(item) for key, item in node.items()}
            return node

        return walk(value)

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.warning is None and self.critical is None:
            raise ValueError("a rule needs a warning or a critical threshold")
        json_answer = self.source in ("http_json", "http_query")
        if json_answer and not (self.path or self.value):
            raise ValueError(f"{self.source} rules need `path` (to the number) or `value` (an expression)")
        if self.value is not None:
            from bot.alerts.expr import ExpressionError, parse  # bot.alerts imports this module

            if not json_answer:
                raise ValueError("value: computed values need a JSON answer (source http_json or http_query)")
            if self.ratio_of:
                raise ValueError("value: write the ratio in the expression instead of `ratio_of`")
            try:
                parse(self.value)
            except ExpressionError as exc:
                raise ValueError(f"value: {exc}") from None
        for name in ("warning", "critical"):
            threshold: Threshold | None = getattr(self, name)
            if threshold is None:
                continue
            if threshold.expr and not json_answer:
                raise ValueError(f"{name}: a computed threshold needs a JSON answer (source http_json or http_query)")
            # The rule is frozen; its thresholds are converted once, here, into its own unit.
            object.__setattr__(self, name, threshold.in_unit(self.unit, where=name))
        if self.source == "http_query":
            from bot.providers.metrics_http_query import check_rule  # imports this module

            check_rule(self)
        elif self.body is not None or self.params or self.method != "GET":
            raise ValueError("method, params and body are for source http_query")
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
