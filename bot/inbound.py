"""Slack's HTTP requests on their way to bolt: the signature first, then one parse, then bolt's dispatch.

This replaces bolt's Starlette adapter, for two reasons:
- The signature is checked before anything in the body is parsed; bolt parses first.
- The body is parsed once, by `bot.payloads.parse`, which also fixes bolt's form parsing (see there) and
  refuses payloads of a shape bolt or opsbot's listeners would fail on. The adapter parsed the body again, and
  the query string and every header besides.

bolt takes an already parsed body only as a Socket Mode request. In bolt 1.30 the mode decides nothing else but
whether bolt checks the signature itself (done here, before) and how lazy listeners copy the request (opsbot
has none); tests/test_inbound.py holds bolt to answering such a request as it answers its own HTTP one.

Nothing a client sends can make this path fail: a missing, stale or non-numeric timestamp or a wrong signature
is a 401, a signed body that is not UTF-8 or not of a shape Slack sends a 400, and each refusal is one short
log line, at most one per reason per minute with a count of the ones left out (a flood of junk stays a few
lines). The signature is an HMAC over the raw bytes, compared in constant time (slack_sdk's SignatureVerifier
raised on a non-numeric timestamp and decoded the body first)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot import payloads
from bot.clock import Clock, utcnow

log = logging.getLogger(__name__)

# What bolt reads from the headers once the signature is checked: how the body is encoded, and redeliveries.
BOLT_HEADERS = ("content-type", "x-slack-retry-num", "x-slack-retry-reason")
INVALID = BoltResponse(status=401, body={"error": "invalid request"})  # bolt's own answer to a bad signature
SSL_CHECK_OK = BoltResponse(status=200, body="")
# Slack refuses views over 250 kB and truncates message text at 40,000 characters; an interactivity payload
# carries the whole view (with state.values) or the whole message (≤ 50 blocks), form-encoded (which can triple
# it). Real payloads stay well under 1 MiB; 2 MiB leaves room and bounds what a request can make us hold.
MAX_BODY = 2 * 1024 * 1024
MAX_AGE = 300  # seconds, either way (Slack's documented window)
NUL_TEXT = ("opsbot cannot store text containing a NUL character (U+0000): nothing was done. "
            "Please retype it without that character.")
NUL_FIELD = "Remove the NUL character (U+0000) from this field."


def bolt_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers bolt gets: the few it reads, nothing else."""
    return {name: value for name in BOLT_HEADERS if (value := headers.get(name)) is not None}


class RefusalLog:
    """One short line per refused request, at most one per reason per `every`, counting the ones left out."""

    def __init__(self, clock: Clock, every: timedelta = timedelta(minutes=1)) -> None:
        self._clock = clock
        self._every = every
        self._last: dict[str, datetime] = {}
        self._skipped: dict[str, int] = {}

    def note(self, status: int, reason: str) -> None:
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < self._every:
            self._skipped[reason] = self._skipped.get(reason, 0) + 1
            return
        if len(self._last) >= 256:  # reasons can name fields of the payload: keep the table small
            self._last.clear()
        self._last[reason] = now
        skipped = self._skipped.pop(reason, 0)
        more = f" (and {skipped} more since {last:%H:%M:%S})" if skipped and last is not None else ""
        log.warning("refused Slack request with %d: %s%s", status, reason, more)


class Inbound:
    def __init__(self, bolt: AsyncApp, signing_secret: str, *, clock: Clock = utcnow) -> None:
        self._bolt = bolt
        self._secret = signing_secret.encode()
        self.refusals = RefusalLog(clock)

    def problem(self, body: bytes, headers: Mapping[str, str]) -> str | None:
        """None when signed with our secret within the last 5 minutes (either way), else why not."""
        timestamp = headers.get("x-slack-request-timestamp") or ""
        signature = headers.get("x-slack-signature") or ""
        if not signature or not timestamp:
            return "unsigned"
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return "timestamp is not a number"
        if abs(time.time() - int(timestamp)) > MAX_AGE:
            return "stale timestamp"
        expected = hmac.new(self._secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(f"v0={expected}".encode(), signature.encode("utf-8", "replace")):
            return "bad signature"
        return None

    def verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return self.problem(body, headers) is None

    def refusal(self, body: bytes, headers: Mapping[str, str]) -> BoltResponse:
        """The answer to a request that is not verified: 401, but 200 to Slack's certificate probe."""
        return SSL_CHECK_OK if _is_ssl_check(body, headers) else INVALID

    async def dispatch(self, body: bytes, headers: Mapping[str, str]) -> BoltResponse:
        """A verified request through bolt's middleware and listeners (raises payloads.Malformed). A body with
        a NUL character reaches no listener: a slash command is told so, a form gets the error on its field."""
        try:
            payload = payloads.parse(body, headers.get("content-type", ""))
        except payloads.ContainsNul as exc:
            answer = nul_answer(exc)
            if answer is None:
                raise
            self.refusals.note(200, str(exc))
            return answer
        return await self._bolt.async_dispatch(AsyncBoltRequest(body=payload, headers=dict(headers),
                                                                mode="socket_mode"))


async def socket_mode_checks(req: AsyncBoltRequest, resp: BoltResponse,
                             next: Callable[[], Awaitable[BoltResponse]]) -> BoltResponse:
    """bolt middleware for `opsbot socket`, whose requests arrive parsed by bolt's Socket Mode adapter and never
    pass `Inbound.dispatch`: the same shape and NUL checks, with the same answers, before any listener runs (it
    runs after bolt's own authorization middleware, which reads only the envelope fields Slack's socket sends)."""
    try:
        payloads.check(req.body)
    except payloads.ContainsNul as exc:
        log.warning("Socket Mode request refused: %s", exc)
        return nul_answer(exc) or BoltResponse(status=400, body=json.dumps({"error": str(exc)}))
    except payloads.Malformed as exc:
        log.warning("Socket Mode request refused: %s", exc)
        return BoltResponse(status=400, body=json.dumps({"error": f"malformed request: {exc}"}))
    return await next()


def nul_answer(exc: payloads.ContainsNul) -> BoltResponse | None:
    """What a user sees for U+0000 in a slash command (an ephemeral reply) or in a modal's input (the error
    under that input); None for anything else (answered 400: a button or an event has no place to say it)."""
    payload = exc.payload
    if "command" in payload and "type" not in payload:
        return _json(200, {"response_type": "ephemeral", "text": NUL_TEXT})
    if payload.get("type") == "view_submission" and exc.path.startswith("view.state.values."):
        values = payload["view"]["state"]["values"]  # its shape was checked before the NUL was looked for
        block_id = next((b for b, inputs in values.items() if payloads.nul_path(inputs) is not None), None)
        if block_id is not None:
            return _json(200, {"response_action": "errors", "errors": {block_id: NUL_FIELD}})
    return None


def _json(status: int, body: dict[str, Any]) -> BoltResponse:
    return BoltResponse(status=status, body=json.dumps(body), headers={"content-type": "application/json"})


def _is_ssl_check(body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's certificate probe (`ssl_check=1`), which bolt answers before its signature check: it does nothing."""
    if b"ssl_check=" not in body:
        return False
    try:
        return payloads.parse(body, headers.get("content-type", "")).get("ssl_check") == "1"
    except payloads.Malformed:
        return False
