"""The shell's paging stand-ins: PagerDuty, Opsgenie, SMTP and webhook receivers on loopback, and the
`:pages` / `:mail` reports of what they received."""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config import Config
from bot.config.secrets import EnvRef, EnvUrl
from bot.emulator.localserver import LocalServer
from bot.emulator.mail import MailServer
from bot.emulator.opsgenie import OpsgenieServer
from bot.emulator.pagerduty import PagerDutyServer
from bot.providers.rollback_webhook import verify_signature

# The variables the shell sets (unless already set) so a config's ${…} addresses reach its stand-ins.
STAND_IN_ENV = ("OPSBOT_PAGERDUTY_URL", "OPSBOT_OPSGENIE_URL", "SMTP_HOST", "SMTP_PORT")
SHELL_ROUTING_KEY = "shellroutingkey0000000000000000a"  # 32 characters, like an integration key
SHELL_GENIE_KEY = "shell-genie-key"
SHELL_WEBHOOK_SECRET = "shell-pagerduty-webhook-secret"


class WebhookSink:
    """Receives the `webhook:<name>` pages: POST /hooks/<name>, each kept with whether its signature verifies."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.received: list[tuple[str, dict[str, Any], bool]] = []  # (webhook name, JSON body, signature ok)
        self.server = LocalServer(Starlette(routes=[Route("/hooks/{name}", self._receive, methods=["POST"])]))

    async def _receive(self, request: Request) -> JSONResponse:
        name, body = request.path_params["name"], await request.body()
        signed = verify_signature(self.secrets.get(name, ""), body, request.headers.get("x-opsbot-signature"))
        try:
            data = json.loads(body)
        except ValueError:
            data = {}
        self.received.append((name, data if isinstance(data, dict) else {}, signed))
        return JSONResponse({"ok": True})


class StandIns:
    """PagerDuty, Opsgenie, SMTP and webhook stand-ins on loopback: whatever the config says, the shell's pages
    stay on this machine (as its Slack is the emulator)."""

    def __init__(self) -> None:
        self.pagerduty = PagerDutyServer()
        self.opsgenie = OpsgenieServer(api_key=SHELL_GENIE_KEY)
        self.mail = MailServer()
        self.webhooks = WebhookSink()
        self._exported: dict[str, str] = {}

    async def start(self) -> StandIns:
        await self.pagerduty.start()
        await self.opsgenie.start()
        await self.webhooks.server.start()
        self.mail.start()
        return self

    async def stop(self) -> None:
        for name, value in self._exported.items():
            if os.environ.get(name) == value:
                del os.environ[name]
        self._exported.clear()
        self.mail.stop()
        await self.webhooks.server.stop()
        await self.opsgenie.stop()
        await self.pagerduty.stop()

    def env(self) -> dict[str, str]:
        return {"OPSBOT_PAGERDUTY_URL": self.pagerduty.url, "OPSBOT_OPSGENIE_URL": self.opsgenie.url,
                "SMTP_HOST": self.mail.host, "SMTP_PORT": str(self.mail.port)}

    def export(self, environ: MutableMapping[str, str]) -> None:
        """Set STAND_IN_ENV in `environ` where unset (forgotten again by stop())."""
        for name, value in self.env().items():
            if name not in environ:
                environ[name] = value
                if environ is os.environ:
                    self._exported[name] = value

    def redirect(self, config: Config, environ: MutableMapping[str, str]) -> Config:
        """`config` with its paging providers pointed at the stand-ins: PagerDuty's events URL and any unset
        routing key, Opsgenie's URL and key, the SMTP relay (plain, no login), webhooks' URLs (and any unset
        secret)."""
        paging = config.paging
        update: dict[str, Any] = {}
        if paging.pagerduty is not None:
            services = {name: service if not _unset(service.routing_key, environ)
                        else service.model_copy(update={"routing_key": EnvRef(SHELL_ROUTING_KEY)})
                        for name, service in paging.pagerduty.services.items()}
            secret = paging.pagerduty.webhook_secret
            if secret is None or _unset(secret, environ):
                secret = EnvRef(SHELL_WEBHOOK_SECRET)
            update["pagerduty"] = paging.pagerduty.model_copy(update={
                "events_url": EnvUrl(self.pagerduty.url), "services": services, "webhook_secret": secret})
        if paging.opsgenie is not None:
            update["opsgenie"] = paging.opsgenie.model_copy(update={
                "api_url": EnvUrl(self.opsgenie.url), "api_key": EnvRef(SHELL_GENIE_KEY)})
        if paging.email is not None:
            update["email"] = paging.email.model_copy(update={
                "host": EnvRef(self.mail.host), "port": self.mail.port, "security": "none", "username": None,
                "password": None, "ca_file": None})
        if paging.webhooks:
            hooks = {}
            for name, hook in paging.webhooks.items():
                secret = hook.secret if not _unset(hook.secret, environ) else EnvRef(SHELL_WEBHOOK_SECRET)
                self.webhooks.secrets[name] = secret.reveal(environ)
                hooks[name] = hook.model_copy(update={"url": EnvUrl(f"{self.webhooks.server.url}/hooks/{name}"),
                                                      "secret": secret})
            update["webhooks"] = hooks
        return config.model_copy(update={"paging": paging.model_copy(update=update)}) if update else config

    def describe(self) -> str:
        return (f"PagerDuty {self.pagerduty.url}, Opsgenie {self.opsgenie.url}, "
                f"SMTP {self.mail.host}:{self.mail.port}, webhooks {self.webhooks.server.url}")


def pages_report(stand_ins: StandIns | None) -> list[str]:
    """`:pages`: the events PagerDuty's stand-in accepted (action, dedup key, summary) and Opsgenie's alerts."""
    if stand_ins is None:
        return ["  (no paging stand-ins in this shell)"]
    pd, og, hooks = stand_ins.pagerduty.state, stand_ins.opsgenie.state, stand_ins.webhooks.received
    if not pd.events and not og.requests and not hooks:
        return ["  PagerDuty, Opsgenie and the webhooks have received nothing yet."]
    lines = [f"  PagerDuty received {len(pd.events)} event(s):"] if pd.events else []
    for event in pd.events:
        note = "  (dropped: no open alert)" if event.dropped else ""
        lines.append(f"    {event.action:<11} {event.dedup_key}  {event.summary}{note}")
    lines += [f"    alert {alert.dedup_key}: {alert.status}" for alert in pd.alerts.values()]
    if og.requests:
        lines.append(f"  Opsgenie received {len(og.requests)} request(s):")
        lines += [f"    {r.action.lower():<11} {r.alias or r.alert_id or '?'}  {r.status}" for r in og.requests]
    if hooks:
        lines.append(f"  Webhooks received {len(hooks)} POST(s):")
        lines += [f"    {data.get('event')!s:<11} {data.get('dedup_key')}  {data.get('title')}  → {name}"
                  f"{'' if signed else '  (bad signature!)'}" for name, data, signed in hooks]
    return lines


def mail_report(stand_ins: StandIns | None, preview: int = 4) -> list[str]:
    """`:mail`: each received message's recipient, subject and first lines."""
    if stand_ins is None:
        return ["  (no paging stand-ins in this shell)"]
    messages = stand_ins.mail.messages
    if not messages:
        return ["  The SMTP stand-in has received no mail yet."]
    lines: list[str] = []
    for i, mail in enumerate(messages, start=1):
        lines.append(f"  {i}. To: {mail.to} · Subject: {mail.subject}")
        lines += [f"       {text}" for text in [t for t in mail.text.splitlines() if t.strip()][:preview]]
    return lines


def _unset(ref: EnvRef, environ: MutableMapping[str, str]) -> bool:
    """Unset, or set to nothing (`${KEY:-}` in the example config): the shell puts its own stand-in value in."""
    return bool(ref.missing(environ)) or not ref.reveal(environ).strip()
