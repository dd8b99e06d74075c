"""`opsbot shell`: type slash commands in a terminal; the real handlers run through bolt against an
in-process Slack emulator, and what Slack would show is printed as text. Reads piped input too."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO

import httpx
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.app import OpsbotApp
from bot.config import EXAMPLE_CONFIG, Config, load_config
from bot.config.secrets import EnvRef, EnvUrl
from bot.emulator.localserver import LocalServer
from bot.emulator.mail import MailServer
from bot.emulator.opsgenie import OpsgenieServer
from bot.emulator.pagerduty import PagerDutyServer
from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests
from bot.emulator.state import Channel, Message, SlackState
from bot.errors import ConfigError
from bot.providers.rollback_webhook import verify_signature
from bot.settings import Settings

SECRET = "shell-signing-secret"
BOT_TOKEN = "xoxb-shell"
SHELL_HELP = """Type a slash command (e.g. /opsbot help, /incident open P1 Checkout down).
  <number>        press the button with that number
  :user NAME      act as another emulated user (alice, bob, carol)
  :channel NAME   run commands in another channel (e.g. :channel inc-1-checkout-down)
  :channels       list channels
  :pages          what the PagerDuty (and Opsgenie) stand-ins received
  :mail           the e-mail the SMTP stand-in received
  :pagerduty ack|resolve KEY [NAME]   PagerDuty's webhook saying NAME acknowledged/resolved the page KEY
  :quit           leave"""


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
            services = {name: service if not service.routing_key.missing(environ)
                        else service.model_copy(update={"routing_key": EnvRef(SHELL_ROUTING_KEY)})
                        for name, service in paging.pagerduty.services.items()}
            secret = paging.pagerduty.webhook_secret
            if secret is None or secret.missing(environ):
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
                secret = hook.secret if not hook.secret.missing(environ) else EnvRef(SHELL_WEBHOOK_SECRET)
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


def render_blocks(blocks: list[dict[str, Any]], buttons: list[tuple[str, dict[str, Any]]],
                  indent: str = "  ") -> list[str]:
    """Block Kit as plain text; buttons are numbered and appended to `buttons`."""
    lines: list[str] = []

    def text_of(obj: Any) -> str:
        return obj.get("text", "") if isinstance(obj, dict) else ""

    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"{indent}== {text_of(block.get('text'))} ==")
        elif kind == "section":
            if block.get("text"):
                lines += [indent + line for line in text_of(block["text"]).splitlines()]
            for field in block.get("fields") or []:
                lines += [f"{indent}  {line}" for line in text_of(field).splitlines()]
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                buttons.append((block.get("block_id", ""), accessory))
                lines.append(f"{indent}  [{len(buttons)}] {text_of(accessory.get('text'))}")
        elif kind == "context":
            lines.append(indent + "  " + " · ".join(text_of(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append(indent + "-" * 40)
        elif kind == "actions":
            labels = []
            for element in block.get("elements", []):
                if element.get("type") == "button":
                    buttons.append((block.get("block_id", ""), element))
                    labels.append(f"[{len(buttons)}] {text_of(element.get('text'))}")
            if labels:
                lines.append(indent + "  ".join(labels))
        elif kind == "rich_text" or kind == "markdown":
            lines.append(indent + str(block.get("text", "")))
        elif kind == "input":
            lines.append(f"{indent}{text_of(block.get('label'))}: ______")
    return lines


class Shell:
    def __init__(self, app: OpsbotApp, emulator: EmulatorServer, *, user: str, out: TextIO = sys.stdout,
                 stand_ins: StandIns | None = None) -> None:
        self.app = app
        self.emulator = emulator
        self.stand_ins = stand_ins
        self.state: SlackState = emulator.state
        self.out = out
        self.user = user
        self.channel: Channel = self.state.channel("general")
        self.requests = SlackRequests(SECRET, response_base=f"{emulator.base_url}/response")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi), base_url="http://opsbot")
        self.buttons: dict[int, tuple[str, dict[str, Any], Message | None, str]] = {}
        self.pending_views: list[dict[str, Any]] = []
        self.state.listeners.append(self._on_event)

    # -- output --------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def _user_name(self, user_id: str) -> str:
        return str(self.state.users.get(user_id, {}).get("name", user_id))

    def _show(self, title: str, text: str, blocks: list[dict[str, Any]], message: Message | None) -> None:
        collected: list[tuple[str, dict[str, Any]]] = []
        lines = render_blocks(blocks, collected) if blocks else [f"  {line}" for line in text.splitlines()]
        offset = len(self.buttons)
        for i, (block_id, element) in enumerate(collected, start=1):
            self.buttons[offset + i] = (block_id, element, message, message.channel if message else self.channel.id)
        # Renumber the labels printed by render_blocks so they are unique for the session.
        for i in range(len(collected), 0, -1):
            lines = [line.replace(f"[{i}]", f"[{offset + i}]") for line in lines]
        self.say(title)
        for line in lines:
            self.say(self.humanize(line))

    def humanize(self, text: str) -> str:
        """Slack markup as a person sees it: <@U…> → @alice, <#C…> → #channel, <!subteam^S…> → @handle."""

        def user(match: re.Match[str]) -> str:
            return "@" + str(self.state.users.get(match.group(1), {}).get("name", match.group(1)))

        def channel(match: re.Match[str]) -> str:
            found = self.state.channels.get(match.group(1))
            return "#" + (found.name if found else match.group(2) or match.group(1))

        def group(match: re.Match[str]) -> str:
            found = self.state.usergroups.get(match.group(1))
            return "@" + (found["handle"] if found else match.group(1))

        text = re.sub(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>", user, text)
        text = re.sub(r"<#([CDG][A-Z0-9]+)(?:\|([^>]*))?>", channel, text)
        text = re.sub(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>", group, text)
        text = re.sub(r"<!(here|channel|everyone)>", r"@\1", text)
        return re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("message", "update"):
            channel: Channel = data["channel"]
            message: Message = data["message"]
            where = f"#{channel.name}" + (" (thread)" if message.thread_ts else "")
            verb = "posted in" if kind == "message" else "edited in"
            self._show(f"\n[opsbot {verb} {where}]", message.text, message.blocks, message)
        elif kind == "ephemeral":
            self._show(f"\n[only visible to {self._user_name(data['user'])}]", data["text"], data["blocks"], None)
        elif kind == "response":
            self._show("\n[only visible to you]", str(data.get("text", "")), data.get("blocks") or [], None)
        elif kind == "channel":
            self.say(f"\n[opsbot created #{data['channel'].name}]")
        elif kind == "view":
            self.pending_views.append(data["view"])

    # -- input ---------------------------------------------------------------------------
    async def readline(self, prompt: str) -> str | None:
        print(prompt, end="", file=self.out, flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line == "":
            return None
        if not sys.stdin.isatty():
            self.say(line.rstrip("\n"))  # echo piped input so the transcript reads like a session
        return line.rstrip("\n")

    async def send(self, signed: tuple[bytes, dict[str, str]]) -> None:
        body, headers = signed
        response = await self.http.post("/slack/events", content=body, headers=headers)
        if response.status_code >= 400:
            self.say(f"  (opsbot answered HTTP {response.status_code}: {response.text[:200]})")
        elif response.content:
            self._show_ack(response)
        await self.app.deps.tasks.wait_idle(timeout=30)
        await self.app.deps.queue.wait_idle(timeout=30)  # the jobs this request enqueued (and theirs)
        await self.app.deps.tasks.wait_idle(timeout=30)
        await self._handle_views()

    def _show_ack(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type:
            self.say(f"  {response.text}")
            return
        data = response.json()
        if data.get("response_action") == "errors":
            for field, error in data.get("errors", {}).items():
                self.say(f"  ! {field}: {error}")
            return
        if data.get("text") or data.get("blocks"):
            self._show("[only visible to you]", str(data.get("text", "")), data.get("blocks") or [], None)

    async def _handle_views(self) -> None:
        while self.pending_views:
            view = self.pending_views.pop(0)
            values = await self._fill(view)
            if values is None:
                return
            await self.send(self.requests.view_submission(view, values, user=self.user))

    async def _fill(self, view: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        self.say(f"\n[modal: {view['title']['text']}]")
        values: dict[str, dict[str, Any]] = {}
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                for line in render_blocks([block], []):
                    self.say(line)
                continue
            element = block["element"]
            label = block["label"]["text"] + (" (optional)" if block.get("optional") else "")
            kind = element.get("type")
            if kind == "static_select":
                for i, opt in enumerate(element.get("options", []), start=1):
                    self.say(f"    {i}. {opt['text']['text']}")
                default = (element.get("initial_option") or {}).get("text", {}).get("text")
            else:
                default = element.get("initial_value") or element.get("initial_user")
            answer = await self.readline(f"  {label}" + (f" [{default}]" if default else "") + ": ")
            if answer is None:
                return None
            values[block["block_id"]] = {element["action_id"]: self._element_state(element, answer.strip())}
        return values

    def _element_state(self, element: dict[str, Any], answer: str) -> dict[str, Any]:
        kind = element.get("type")
        if kind == "static_select":
            options = element.get("options", [])
            chosen = element.get("initial_option")
            if answer.isdigit() and 1 <= int(answer) <= len(options):
                chosen = options[int(answer) - 1]
            elif answer:
                chosen = next((o for o in options if answer.lower() in (o["value"].lower(),
                                                                        o["text"]["text"].lower())), chosen)
            return {"type": kind, "selected_option": chosen}
        if kind == "users_select":
            user = self._resolve_user(answer) if answer else element.get("initial_user")
            return {"type": kind, "selected_user": user}
        return {"type": kind or "plain_text_input", "value": answer or element.get("initial_value") or None}

    def _resolve_user(self, name: str) -> str:
        name = name.lstrip("@")
        for user_id, user in self.state.users.items():
            if name in (user_id, user["name"]):
                return user_id
        return name

    async def press(self, number: int) -> None:
        if number not in self.buttons:
            self.say(f"  (no button [{number}])")
            return
        block_id, element, message, channel = self.buttons[number]
        await self.send(self.requests.block_action(
            element["action_id"], element.get("value"), user=self.user, channel=channel,
            message=message.as_dict() if message else None, block_id=block_id or "actions"))

    async def handle(self, line: str) -> bool:
        line = line.strip()
        if not line:
            return True
        if line in (":quit", ":exit", ":q"):
            return False
        if line == ":help":
            self.say(SHELL_HELP)
        elif line.startswith(":user"):
            name = line.split(maxsplit=1)[1] if " " in line else ""
            self.user = self._resolve_user(name)
            self.say(f"  you are now {self._user_name(self.user)} ({self.user})")
        elif line.startswith(":channel"):
            name = line.split(maxsplit=1)[1] if " " in line else "general"
            found = self.state.find_channel(name)
            if found is None:
                self.say(f"  no channel {name}")
            else:
                self.channel = found
                self.say(f"  now in #{found.name}")
        elif line == ":channels":
            self.say("  " + "  ".join(f"#{c.name}" for c in self.state.channels.values()))
        elif line == ":pages":
            for text in pages_report(self.stand_ins):
                self.say(text)
        elif line == ":mail":
            for text in mail_report(self.stand_ins):
                self.say(text)
        elif line.startswith(":pagerduty"):
            await self.pagerduty_webhook(line.split()[1:])
        elif line.isdigit():
            await self.press(int(line))
        elif line.startswith("/"):
            command, _, text = line.partition(" ")
            await self.send(self.requests.command(command, text.strip(), user=self.user, channel=self.channel.id,
                                                  channel_name=self.channel.name))
        else:
            self.say("  Type a slash command such as /opsbot help (:help for shell commands).")
        return True

    async def pagerduty_webhook(self, words: list[str]) -> None:
        """`:pagerduty ack|resolve KEY [NAME]`: what PagerDuty posts to /webhooks/pagerduty when someone acts there."""
        kinds = {"ack": "incident.acknowledged", "acknowledge": "incident.acknowledged",
                 "resolve": "incident.resolved"}
        pagerduty = self.app.deps.config.paging.pagerduty
        if len(words) < 2 or words[0] not in kinds:
            self.say("  usage: :pagerduty ack|resolve <dedup key, e.g. opsbot-incident-1> [who]")
            return
        if self.stand_ins is None or pagerduty is None or pagerduty.webhook_secret is None:
            self.say("  PagerDuty is not set up in this config (paging.pagerduty).")
            return
        secret = pagerduty.webhook_secret.reveal()
        answer = await self.stand_ins.pagerduty.send_webhook(
            "http://opsbot/webhooks/pagerduty", secret, kinds[words[0]], words[1], " ".join(words[2:]) or "Alice",
            http=self.http)
        self.say(f"  PagerDuty's webhook: opsbot answered HTTP {answer.status_code}")
        await self.app.deps.tasks.wait_idle(timeout=30)
        await self.app.deps.queue.wait_idle(timeout=30)
        await self.app.deps.tasks.wait_idle(timeout=30)

    async def close(self) -> None:
        """Stop opsbot, the emulator and the stand-ins (and forget the environment the stand-ins exported)."""
        await self.http.aclose()
        await self.app.stop()
        await self.emulator.stop()
        if self.stand_ins is not None:
            await self.stand_ins.stop()


async def open_shell(*, config_file: Path, database_url: str, user: str, out: TextIO = sys.stdout) -> Shell:
    """Start the Slack emulator, the paging stand-ins and opsbot; `await shell.close()` stops them all.
    Raises ConfigError for a config that does not load."""
    stand_ins = await StandIns().start()
    try:
        stand_ins.export(os.environ)  # before the config loads: ${OPSBOT_PAGERDUTY_URL} and friends resolve
        config = stand_ins.redirect(load_config(config_file), os.environ)
    except BaseException:
        await stand_ins.stop()
        raise
    emulator = await EmulatorServer().start()
    for channel in (config.channels.incidents, config.channels.alerts, config.channels.ops_channel):
        if emulator.state.find_channel(channel) is None:
            emulator.state.add_channel(channel.lstrip("#"))
    # The shell's own Slack is the in-process emulator: its credentials are the shell's, never the environment's.
    settings = Settings().model_copy(update={
        "slack_api_url": emulator.api_url, "slack_bot_token": SecretStr(BOT_TOKEN),
        "slack_signing_secret": SecretStr(SECRET), "database_url": SecretStr(database_url),
    })
    app = OpsbotApp(settings, config)
    try:
        await app.start()
    except BaseException:
        await emulator.stop()
        await stand_ins.stop()
        raise
    return Shell(app, emulator, user=_user_id(emulator.state, user), out=out, stand_ins=stand_ins)


async def run_shell(*, config_path: Path | None, database_url: str | None, user: str) -> int:
    env_settings = Settings()
    config_file = Path(config_path or env_settings.opsbot_config or EXAMPLE_CONFIG)
    db_url = database_url or (env_settings.database_url.get_secret_value() if os.environ.get("DATABASE_URL")
                              else "sqlite:///opsbot-shell.db")
    try:
        shell = await open_shell(config_file=config_file, database_url=db_url, user=user)
    except ConfigError as exc:
        print(f"{exc.source}: cannot start the shell:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    shell.say(f"opsbot shell — config {config_file}, database {shell.app.deps.db.display_url}")
    if shell.stand_ins is not None:
        shell.say(f"Paging goes to local stand-ins: {shell.stand_ins.describe()} (:pages, :mail).")
    shell.say(f"You are {shell._user_name(shell.user)} in #{shell.channel.name}. :help for help, :quit to leave.")
    try:
        while True:
            line = await shell.readline(f"{shell._user_name(shell.user)}@#{shell.channel.name}> ")
            if line is None or not await shell.handle(line):
                break
    finally:
        shell.say("")
        await shell.close()
    return 0


def _user_id(state: SlackState, name: str) -> str:
    for user_id, user in state.users.items():
        if name in (user_id, user["name"]):
            return user_id
    return "U0ALICE01"


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
