"""`source: prometheus` — an instant query on the Prometheus HTTP API (`GET /api/v1/query`)."""

from __future__ import annotations

import json
from typing import Any

from bot.config.alerts import AlertRule
from bot.config.secrets import EnvRef, EnvUrl
from bot.errors import ConfigError
from bot.providers.metrics_base import Fetcher, MetricSourceError, Sample, as_number


class PrometheusSource:
    """A vector answer gives one sample per series (labels from `metric`), a scalar one sample."""

    def __init__(self, fetcher: Fetcher, *, url: str | EnvUrl, token: EnvRef | None = None,
                 timeout: float = 10.0) -> None:
        self.fetcher = fetcher
        self.base = url  # a `${VAR}` URL is substituted at each read
        self.url = str(url).rstrip("/") + "/api/v1/query"
        self.token = token
        self.timeout = timeout

    async def read(self, rule: AlertRule) -> list[Sample]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.reveal(where='alerts.prometheus.token')}"
        url = self.url
        if isinstance(self.base, EnvUrl) and self.base.references():
            try:
                url = self.base.reveal(where="alerts.prometheus.url").rstrip("/") + "/api/v1/query"
            except ConfigError as exc:
                raise MetricSourceError(exc.problems[0]) from None
        body = await self.fetcher.get(url, params={"query": rule.query}, headers=headers,
                                timeout=self.timeout)
        try:
            answer = json.loads(body)
        except ValueError:
            raise MetricSourceError("Prometheus answered with something that is not JSON") from None
        return parse_answer(answer)


def parse_answer(answer: Any) -> list[Sample]:
    if not isinstance(answer, dict):
        raise MetricSourceError("unexpected Prometheus answer")
    if answer.get("status") != "success":
        raise MetricSourceError(f"Prometheus error: {str(answer.get('error') or answer.get('status'))[:200]}")
    data = answer.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Sample(as_number(result[1], "scalar"))]
    if kind == "vector" and isinstance(result, list):
        samples = []
        for item in result:
            if not isinstance(item, dict) or not isinstance(item.get("value"), list) or len(item["value"]) != 2:
                raise MetricSourceError("malformed vector element in the Prometheus answer")
            labels = {str(k): str(v) for k, v in (item.get("metric") or {}).items()}
            try:
                samples.append(Sample(as_number(item["value"][1], "vector"), labels))
            except MetricSourceError:
                continue  # NaN for one series (e.g. 0/0) is no data for that series, not a source error
        return samples
    raise MetricSourceError(f"unsupported Prometheus result type {kind!r} (use an instant vector or scalar)")
