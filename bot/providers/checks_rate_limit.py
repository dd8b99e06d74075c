"""`type: rate_limit` checks: send up to `requests` requests and see where the first 429 comes.

The runbook's "send 65 requests, expect 429 after 60". Requests go out `concurrency` at a time and stop at
the first 429; each has `request_timeout`, and the engine bounds the whole run by the check's `timeout`."""

from __future__ import annotations

import asyncio

import aiohttp

from bot.config.health import RateLimitCheck
from bot.errors import ConfigError
from bot.providers.checks_body import explain
from bot.providers.checks_common import Probe, retry_after, scrub, seconds_text, target_url
from bot.providers.checks_http import failure_reason, read_capped
from bot.providers.probe_client import Probes


class _Stop(Exception):
    """A request could not be made or got an answer that is neither a success nor a 429."""

    def __init__(self, detail: str, status_code: int | None = None, body: str = "") -> None:
        super().__init__(detail)
        self.detail, self.status_code, self.body = detail, status_code, body


def _requests(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"


async def probe_rate_limit(check: RateLimitCheck, *, http: Probes) -> Probe:
    try:
        url = target_url(check.url)
        headers = {key: ref.reveal(where=f"header {key}") for key, ref in check.headers.items()}
    except ConfigError as exc:
        return Probe("fail", exc.problems[0])
    secrets = list(headers.values())
    if not any(key.lower() == "connection" for key in headers):
        headers["Connection"] = "close"
    timeout = check.request_timeout.total_seconds()
    issued = successes = 0
    first_429: int | None = None  # successes counted when the first 429 arrived
    wait: float | None = None
    stop = asyncio.Event()

    async def one(number: int) -> None:
        nonlocal successes, first_429, wait
        try:
            async with http.request(check.method, url, headers=headers, timeout=timeout) as response:
                body, _complete = await read_capped(response)
        except TimeoutError:
            raise _Stop(f"request {number} timed out after {seconds_text(timeout)}") from None
        except aiohttp.ClientError as exc:
            raise _Stop(f"request {number}: {failure_reason(exc, secrets)}") from None
        status = response.status
        if status == 429:
            if first_429 is None:
                first_429 = successes
                wait = retry_after(response.headers.get("retry-after"))
            stop.set()
        elif 200 <= status < 300:
            if not stop.is_set():
                successes += 1
        else:
            raise _Stop(f"request {number} got {status} (expected 2xx, or 429 when limited)",
                        status, scrub(explain(body), secrets))

    failure: _Stop | None = None

    async def worker() -> None:
        nonlocal issued, failure
        while not stop.is_set() and issued < check.requests:
            issued += 1
            try:
                await one(issued)
            except _Stop as exc:
                failure = failure or exc
                stop.set()

    await asyncio.gather(*(worker() for _ in range(min(check.concurrency, check.requests))))
    if failure is not None:
        return Probe("fail", failure.detail, failure.status_code, body=failure.body)
    return judge(check, successes=successes, first_429=first_429, retry_after=wait)


def judge(check: RateLimitCheck, *, successes: int, first_429: int | None, retry_after: float | None) -> Probe:
    """`first_429`: the successes before the first 429 (None: no 429 at all)."""
    expected = check.expect_429_after
    if first_429 is None:
        return Probe("fail", f"no 429 in {_requests(check.requests)}, expected one after {expected}", 200)
    wait = f" (Retry-After {seconds_text(retry_after)})" if retry_after is not None else ""
    if first_429 < expected:
        return Probe("fail", f"429 after {_requests(first_429)}, expected after {expected}{wait}", 429)
    return Probe("ok", f"429 after {_requests(first_429)} as expected (limit {expected}){wait}", 429)
