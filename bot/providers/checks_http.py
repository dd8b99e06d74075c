"""`type: http` checks: status code, JSON expectations on dotted paths, bodies read with a size cap."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import aiohttp

from bot.config.health import HttpCheck
from bot.errors import ConfigError
from bot.providers.checks_body import explain
from bot.providers.checks_common import (
    Probe,
    os_reason,
    rate_limited_text,
    retry_after,
    scrub,
    seconds_text,
    target_url,
)
from bot.providers.probe_client import Probes

MAX_BODY = 1024 * 1024  # bytes; a health endpoint answering more than this is itself a problem
_MISSING = object()


async def probe_http(check: HttpCheck, *, http: Probes, timeout: float) -> Probe:
    try:
        url = target_url(check.url)
        headers = {key: ref.reveal(where=f"header {key}") for key, ref in check.headers.items()}
    except ConfigError as exc:
        return Probe("fail", exc.problems[0])
    secrets = list(headers.values())
    # A fresh connection per check: the latency is what a new client sees (connect included), and a check
    # never rides on a connection a proxy or load balancer in between has kept to a backend already chosen.
    if not any(key.lower() == "connection" for key in headers):
        headers["Connection"] = "close"
    try:
        async with http.request(check.method, url, headers=headers, timeout=timeout) as response:
            body, complete = await read_capped(response)
    except TimeoutError:
        return Probe("fail", f"timeout after {seconds_text(timeout)}")
    except aiohttp.ClientError as exc:
        return Probe("fail", failure_reason(exc, secrets))
    probe = judge(check, response.status, body, complete=complete,
                  retry_after=retry_after(response.headers.get("retry-after")))
    # The target's own words may quote a header value back (an echoed token): scrub them like the rest.
    return replace(probe, body=scrub(probe.body, secrets)) if probe.body else probe


def failure_reason(exc: aiohttp.ClientError, secrets: list[str]) -> str:
    """What a request that got no answer says: the network's reason, else the library's words, scrubbed."""
    return os_reason(exc) or scrub(f"{type(exc).__name__}: {exc}", secrets)


async def read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, stopping after MAX_BODY bytes; (body, True) when it was read to the end."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], False
    return b"".join(chunks), True


def judge(check: HttpCheck, status_code: int, body: bytes, *, complete: bool = True,
          retry_after: float | None = None) -> Probe:
    """Compare an answer with the check's expectations (pure, so it is easy to reason about).

    A 429 the check does not expect is a warning ("rate limited"), not a failure: the target refused to
    answer, which says nothing about its health. Any other unexpected answer carries what its body says."""
    expected = check.expect_status
    accepted = None if expected is None else expected if isinstance(expected, list) else [expected]
    if status_code == 429 and (accepted is None or 429 not in accepted):
        return Probe("warn", rate_limited_text(retry_after), status_code, rate_limited=True, retry_after=retry_after)
    if accepted is None:
        if not 200 <= status_code < 300:
            return Probe("fail", f"expected 2xx got {status_code}", status_code, body=explain(body))
    elif status_code not in accepted:
        wanted = " or ".join(str(code) for code in accepted)
        return Probe("fail", f"expected {wanted} got {status_code}", status_code, body=explain(body))
    if not check.expect_json:
        return Probe("ok", "", status_code)
    if not complete:
        return Probe("fail", f"response body larger than {MAX_BODY // 1024 // 1024} MiB; JSON not checked",
                      status_code)
    try:
        document = json.loads(body)
    except ValueError:
        return Probe("fail", "response is not valid JSON", status_code, body=explain(body))
    problems = [problem for path, want in check.expect_json.items()
                if (problem := _expectation(document, path, want))]
    if problems:
        return Probe("fail", "; ".join(problems), status_code, body=explain(body))
    return Probe("ok", "", status_code)


def lookup(document: Any, path: str) -> Any:
    """`checks.database` in nested objects (`items.0.status` indexes lists); _MISSING when absent."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _expectation(document: Any, path: str, want: Any) -> str | None:
    actual = lookup(document, path)
    if actual is _MISSING:
        return f"`{path}` missing"
    accepted = want if isinstance(want, list) else [want]
    if any(_same(actual, option) for option in accepted):
        return None
    options = " or ".join(f"`{_show(option)}`" for option in accepted)
    return f"`{path}` was `{_show(actual)}` (expected {options})"


def _same(actual: Any, want: Any) -> bool:
    if actual == want and type(actual) is not bool and type(want) is not bool:
        return True
    if isinstance(actual, bool) or isinstance(want, bool):
        return actual is want or _show(actual) == _show(want)
    # YAML `"200"` and JSON 200, or YAML `ok` and JSON "ok": compare as text for scalars.
    scalar = (str, int, float)
    return isinstance(actual, scalar) and isinstance(want, scalar) and str(actual) == str(want)


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 60 else text[:59] + "…"
