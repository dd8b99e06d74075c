"""`source: http_query` — an API query (Sentry, Azure Application Insights, Datadog, …) and a JMESPath to the number.

The rule says the request: `query` is the URL, `method`, `params` (the query string), `body` (a mapping or list
sent as JSON, or text), `headers` (`${VAR}` secrets). Templates in the URL, params and body take `{now}`,
`{since}` (ISO 8601, UTC), `{now_epoch}`, `{since_epoch}` (seconds), `{now_ms}`, `{since_ms}`, `{window}`
(ISO 8601 duration, e.g. PT5M) and `{window_seconds}`, where `since` is now minus the rule's `window`;
`{{` and `}}` are literal braces, and other braces (`avg:system.cpu.user{*}`, KQL's `dynamic({...})`) are
left alone. `path` is a JMESPath expression (jmespath.org) selecting the number, or, with `value`, the
object whose names the expression reads.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from bot.clock import Clock
from bot.config.alerts import AlertRule
from bot.config.secrets import EnvRef
from bot.errors import ConfigError
from bot.providers.metrics_base import Fetcher, MetricSourceError, Sample, as_number
from bot.providers.metrics_http_json import computed

MAX_JSON = 1024 * 1024
PLACEHOLDER = re.compile(r"\{\{|\}\}|(?<!\$)\{([A-Za-z_][A-Za-z0-9_]*)\}")  # not ${VAR}
NAMES = ("now", "since", "now_epoch", "since_epoch", "now_ms", "since_ms", "window", "window_seconds")


def iso_duration(span: timedelta) -> str:
    """PT5M, PT1H30M, P1DT2H, PT0.5S: what Azure's `timespan` and ISO 8601 take."""
    seconds = span.total_seconds()
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    time = "".join(f"{int(n)}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
    if secs:
        time += f"{secs:g}S"
    return ("P" + (f"{int(days)}D" if days else "") + (f"T{time}" if time else "")) if seconds else "PT0S"


def variables(now: datetime, window: timedelta) -> dict[str, str]:
    since = now - window
    iso = "%Y-%m-%dT%H:%M:%SZ"
    return {"now": now.strftime(iso), "since": since.strftime(iso), "now_epoch": str(int(now.timestamp())),
            "since_epoch": str(int(since.timestamp())), "now_ms": str(int(now.timestamp() * 1000)),
            "since_ms": str(int(since.timestamp() * 1000)), "window": iso_duration(window),
            "window_seconds": str(int(window.total_seconds()))}


def fill(template: str, values: dict[str, str], *, where: str) -> str:
    """`template` with its placeholders and then its `${VAR}`s filled in (ConfigError names `where`)."""
    def sub(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        if match.group(1) not in values:
            raise ConfigError([f"{where}: unknown placeholder {token} (known: "
                               + ", ".join("{" + n + "}" for n in NAMES) + "; write {{ for a brace)"])
        return values[match.group(1)]

    text = PLACEHOLDER.sub(sub, template)
    return EnvRef(text).reveal(where=where) if "${" in text else text


def _fill_json(node: Any, values: dict[str, str], where: str) -> Any:
    if isinstance(node, EnvRef | str):
        return fill(node.template if isinstance(node, EnvRef) else node, values, where=where)
    if isinstance(node, list):
        return [_fill_json(item, values, where) for item in node]
    if isinstance(node, dict):
        return {key: _fill_json(item, values, f"{where}.{key}") for key, item in node.items()}
    return node


def check_rule(rule: AlertRule) -> None:
    """Config-load checks of an http_query rule: its JMESPath compiles, its templates use known placeholders."""
    if rule.ratio_of:
        raise ValueError("ratio_of: write the ratio in `value` (an expression) for http_query rules")
    if rule.path:
        try:
            jmespath.compile(rule.path)
        except JMESPathError as exc:
            raise ValueError(f"path: not a JMESPath expression: {str(exc).splitlines()[0][:160]}") from None
    sample = {name: "" for name in NAMES}
    try:
        for template, where in _templates(rule):
            PLACEHOLDER.sub(lambda m, where=where: _known(m, sample, where), template)  # type: ignore[misc]
    except ConfigError as exc:
        raise ValueError(exc.problems[0]) from None


def _known(match: re.Match[str], values: dict[str, str], where: str) -> str:
    if match.group(1) is not None and match.group(1) not in values:
        raise ConfigError([f"{where}: unknown placeholder {match.group(0)} (known: "
                           + ", ".join("{" + n + "}" for n in NAMES) + "; write {{ for a brace)"])
    return ""


def _templates(rule: AlertRule) -> list[tuple[str, str]]:
    found = [(rule.query, "query")] + [(v.template, f"params.{k}") for k, v in rule.params.items()]

    def walk(node: Any, where: str) -> None:
        if isinstance(node, EnvRef):
            found.append((node.template, where))
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, dict):
            for key, item in node.items():
                walk(item, f"{where}.{key}")

    walk(rule.body, "body")
    return found



class HttpQuerySource:
    def __init__(self, fetcher: Fetcher, *, timeout: float = 10.0, clock: Clock | None = None) -> None:
        self.fetcher = fetcher
        self.timeout = timeout
        self.clock = clock

    async def read(self, rule: AlertRule) -> list[Sample]:
        now = self.clock() if self.clock is not None else datetime.now(UTC)
        values = variables(now, rule.window)
        where = f"alerts.{rule.name}"
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if isinstance(rule.body, EnvRef):
            data = fill(rule.body.template, values, where=f"{where}.body").encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        elif rule.body is not None:
            data = json.dumps(_fill_json(rule.body, values, f"{where}.body")).encode()
            headers["Content-Type"] = "application/json"
        headers.update({name: ref.reveal(where=f"{where}.headers.{name}") for name, ref in rule.headers.items()})
        url = fill(rule.query, values, where=f"{where}.query")
        params = {k: fill(v.template, values, where=f"{where}.params.{k}") for k, v in rule.params.items()}
        answer = await self.fetcher.request(rule.method, url, params=params or None, headers=headers, data=data,
                                            timeout=self.timeout, limit=MAX_JSON)
        try:
            document = json.loads(answer)
        except ValueError:
            raise MetricSourceError("the answer is not JSON") from None
        try:
            node = jmespath.search(rule.path, document) if rule.path else document
        except JMESPathError as exc:  # e.g. sum() over strings
            raise MetricSourceError(f"path {rule.path!r}: {str(exc).splitlines()[0][:160]}") from None
        if rule.value is not None:
            if node is None:
                raise MetricSourceError(f"path {rule.path!r} selects nothing in the answer")
            return [computed(rule, node)]
        if node is None:
            raise MetricSourceError(f"path {rule.path!r} selects nothing in the answer (no data in the window?)")
        return [computed(rule, node, value=as_number(node, rule.path or "answer"))]
