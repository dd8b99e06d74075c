"""`source: http_json` — GET a URL and take a number at a dotted path, optionally as a ratio in %."""

from __future__ import annotations

import json
from typing import Any

from bot.config.alerts import AlertRule
from bot.config.secrets import EnvRef
from bot.providers.metrics_base import Fetcher, MetricSourceError, Sample, as_number

MAX_JSON = 256 * 1024


class HttpJsonSource:
    def __init__(self, fetcher: Fetcher, *, timeout: float = 10.0) -> None:
        self.fetcher = fetcher
        self.timeout = timeout

    async def read(self, rule: AlertRule) -> list[Sample]:
        headers = {"Accept": "application/json"}
        headers.update({name: ref.reveal(where=f"alerts.{rule.name}.headers.{name}")
                        for name, ref in rule.headers.items()})
        url = rule.query
        if "${" in url:  # the README's `${VAR}` in URLs: filled in when read, like every other URL
            url = EnvRef(url).reveal(where=f"alerts.{rule.name}.query")
        body = await self.fetcher.get(url, headers=headers, timeout=self.timeout, limit=MAX_JSON)
        try:
            document = json.loads(body)
        except ValueError:
            raise MetricSourceError("the answer is not JSON") from None
        if rule.value is not None:
            return [computed(rule, dig(document, rule.path) if rule.path else document)]
        value = as_number(dig(document, rule.path or ""), rule.path or "")
        if rule.ratio_of:
            total = as_number(dig(document, rule.ratio_of), rule.ratio_of)
            if total == 0:
                raise MetricSourceError(f"{rule.ratio_of} is 0: cannot compute a ratio")
            value = value / total * 100.0
        return [computed(rule, document, value=value)]


def computed(rule: AlertRule, node: Any, *, value: float | None = None) -> Sample:
    """The rule's sample from one JSON answer: its `value` expression (unless `value` is given) and its
    computed thresholds, each name a dotted path into `node`."""
    from bot.alerts.expr import ExpressionError, parse  # bot.alerts imports this module

    def lookup(path: str) -> float:
        return as_number(dig(node, path), path)

    try:
        if value is None:
            value = parse(rule.value or "").evaluate(lookup)
        thresholds = {name: parse(t.expr).evaluate(lookup) for name, t in
                      (("warning", rule.warning), ("critical", rule.critical)) if t is not None and t.expr}
    except ExpressionError as exc:
        raise MetricSourceError(str(exc)[:200]) from None
    return Sample(value, thresholds=thresholds)


def dig(document: Any, path: str) -> Any:
    """`pool.checked_out` or `servers.0.load`: dicts by key, lists by index."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            raise MetricSourceError(f"path {path!r} not found in the answer (stopped at {part!r})")
    return node
