"""`provider: webhook` — a signed JSON POST, retried on 5xx and connection errors, optionally followed.

Request: `POST <url>` with a JSON body
  {"rollback_id", "service", "environment", "version", "previous_version", "reason", "requested_by",
   "delivery", "timestamp"}
and headers
  X-Opsbot-Timestamp: <unix seconds>          (also in the body, so the signature covers it)
  X-Opsbot-Delivery:  <uuid>                  (the same on every retry: deduplicate on it)
  X-Opsbot-Signature: sha256=<hex of HMAC-SHA256(secret, raw body)>
A receiver recomputes the HMAC over the raw bytes it received, compares in constant time, and
refuses timestamps older than a few minutes.

Answer: any 2xx accepts the rollback. Without `status_url` that means done; a JSON body with
`"status": "failed"` reports a failure. With `status_url` opsbot polls `GET <status_url>` until its
JSON `status` is terminal (succeeded/success/completed or failed/failure/error/cancelled)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx

from bot.config.rollbacks import WebhookRunner, fill_url
from bot.durations import format_duration
from bot.errors import ProviderError
from bot.providers.rollback_base import Progress, Provider, RollbackOutcome, RollbackRequest, error_message, register

SUCCEEDED = {"succeeded", "success", "completed", "done"}
FAILED = {"failed", "failure", "error", "cancelled", "canceled"}


def signature(secret: str, body: bytes) -> str:
    """The X-Opsbot-Signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does (used by the tests' receiver; handy for Python receivers)."""
    return bool(header) and hmac.compare_digest(signature(secret, body), str(header))


@register("webhook")
class WebhookProvider(Provider):
    config: WebhookRunner

    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        cfg = self.config
        secret = cfg.secret.reveal(self.environ, where=f"rollbacks.{request.service}.environments."
                                                       f"{request.environment}.secret")
        where = f"rollbacks.{request.service}.environments.{request.environment}"
        url = cfg.url.reveal(self.environ, where=f"{where}.url")
        values = request.values()
        timestamp = str(int(time.time()))
        delivery = str(uuid.uuid4())
        body = json.dumps({
            "rollback_id": request.rollback_id, "service": request.service, "environment": request.environment,
            "version": request.version, "previous_version": request.previous_version, "reason": request.reason,
            "requested_by": request.requested_by, "delivery": delivery, "timestamp": int(timestamp),
        }, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Opsbot-Timestamp": timestamp,
                   "X-Opsbot-Delivery": delivery, "X-Opsbot-Signature": signature(secret, body)}
        response = await self._post(url, body, headers, progress)
        answer = _json(response)
        if not cfg.status_url:
            status = str(answer.get("status") or "").lower()
            if status in FAILED:
                return RollbackOutcome("failed", f"The webhook reported *{status}*{_detail(answer)}.",
                                       run_url=_url(answer))
            return RollbackOutcome("succeeded", f"The webhook accepted the rollback (HTTP {response.status_code}).",
                                   run_url=_url(answer))
        await progress("The webhook accepted the rollback; following its status…")
        status_url = fill_url(cfg.status_url, values, self.environ, where=f"{where}.status_url")
        return await self._follow(status_url, progress)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], progress: Progress) -> httpx.Response:
        cfg = self.config
        assert self.http is not None, "build_runner always gives providers the shared HTTP client"
        attempts = cfg.retries + 1
        problem = ""
        for attempt in range(attempts):
            if attempt:
                await progress(f"Webhook attempt {attempt} failed ({problem}); retrying ({attempt + 1}/{attempts})…")
                await asyncio.sleep(cfg.retry_backoff.total_seconds() * 2 ** (attempt - 1))
            try:
                response = await self.http.post(url, content=body, headers=headers,
                                                timeout=cfg.request_timeout.total_seconds())
            except httpx.TimeoutException:
                problem = f"no answer within {format_duration(cfg.request_timeout)}"
                continue
            except httpx.HTTPError as exc:
                problem = f"connection failed: {type(exc).__name__}"
                continue
            if response.status_code >= 500:
                problem = error_message(response)
                continue
            if not 200 <= response.status_code < 300:
                raise ProviderError(f"The rollback webhook refused the request ({error_message(response)}).")
            return response
        raise ProviderError(f"The rollback webhook failed after {attempts} attempt(s) ({problem}).")

    async def _follow(self, url: str, progress: Progress) -> RollbackOutcome:
        cfg = self.config
        assert self.http is not None, "build_runner always gives providers the shared HTTP client"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.timeout.total_seconds()
        last = ""
        while True:
            try:
                response = await self.http.get(url, timeout=cfg.request_timeout.total_seconds())
                answer = _json(response) if response.status_code == 200 else {}
                status = str(answer.get("status") or "").lower()
                if response.status_code != 200:
                    status = ""
                    last = error_message(response)
            except httpx.HTTPError as exc:
                status, answer, last = "", {}, f"status URL unreachable: {type(exc).__name__}"
            if status in SUCCEEDED:
                return RollbackOutcome("succeeded", f"The deploy system reports *{status}*{_detail(answer)}.",
                                       run_url=_url(answer))
            if status in FAILED:
                return RollbackOutcome("failed", f"The deploy system reports *{status}*{_detail(answer)}.",
                                       run_url=_url(answer))
            if status and status != last:
                last = status
                await progress(f"Status: *{status}*{_detail(answer)}")
            if loop.time() >= deadline:
                raise ProviderError(f"No final status within {format_duration(cfg.timeout)} (last: {last or 'none'}).")
            await asyncio.sleep(cfg.poll_interval.total_seconds())


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _detail(answer: dict[str, Any]) -> str:
    detail = str(answer.get("detail") or answer.get("message") or "")
    return f": {detail[:300]}" if detail else ""


def _url(answer: dict[str, Any]) -> str | None:
    url = answer.get("url")
    return str(url) if isinstance(url, str) and url.startswith(("http://", "https://")) else None
