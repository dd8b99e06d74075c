"""Slack's HTTP requests on their way to bolt: the signature first, then one parse, then bolt's dispatch.

This replaces bolt's Starlette adapter, for three reasons:
- The signature is checked before anything in the body is parsed; bolt parses first.
- The body is parsed once, by `bot.payloads.parse`, which also fixes bolt's form parsing (see there) and
  refuses interactivity payloads of a shape bolt would fail on. The adapter parsed the body again, and the
  query string and every header besides.
- The worker process (bot/worker.py) replays a forwarded request through the very same path, from the same
  bytes and the same headers, so a listener sees the same request twice.

bolt takes an already parsed body only as a Socket Mode request. In bolt 1.30 the mode decides nothing else but
whether bolt checks the signature itself (done here, before) and how lazy listeners copy the request (opsbot
has none); tests/test_inbound.py holds bolt to answering such a request as it answers its own HTTP one."""

from __future__ import annotations

from collections.abc import Mapping

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot import payloads

# What bolt reads from the headers once the signature is checked: how the body is encoded, and redeliveries.
BOLT_HEADERS = ("content-type", "x-slack-retry-num", "x-slack-retry-reason")
INVALID = BoltResponse(status=401, body={"error": "invalid request"})  # bolt's own answer to a bad signature
SSL_CHECK_OK = BoltResponse(status=200, body="")


def bolt_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers bolt gets (and the worker is sent): the few it reads, nothing else."""
    return {name: value for name in BOLT_HEADERS if (value := headers.get(name)) is not None}


class Inbound:
    def __init__(self, bolt: AsyncApp, signing_secret: str) -> None:
        self._bolt = bolt
        self._verifier = SignatureVerifier(signing_secret)

    def verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Signed with our secret within the last 5 minutes (either way), compared in constant time."""
        return self._verifier.is_valid(body, headers.get("x-slack-request-timestamp"),
                                       headers.get("x-slack-signature"))

    def refusal(self, body: bytes, headers: Mapping[str, str]) -> BoltResponse:
        """The answer to a request that is not verified: 401, but 200 to Slack's certificate probe."""
        return SSL_CHECK_OK if _is_ssl_check(body, headers) else INVALID

    async def dispatch(self, body: bytes, headers: Mapping[str, str]) -> BoltResponse:
        """A verified request through bolt's middleware and listeners (raises payloads.Malformed)."""
        payload = payloads.parse(body, headers.get("content-type", ""))
        return await self._bolt.async_dispatch(AsyncBoltRequest(body=payload, headers=dict(headers),
                                                                mode="socket_mode"))


def _is_ssl_check(body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's certificate probe (`ssl_check=1`), which bolt answers before its signature check: it does nothing."""
    if b"ssl_check=" not in body:
        return False
    try:
        return payloads.parse(body, headers.get("content-type", "")).get("ssl_check") == "1"
    except payloads.Malformed:
        return False
