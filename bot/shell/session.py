"""The shell's session: typed lines become signed Slack requests to opsbot; what the emulated Slack receives
is printed as a person would read it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TextIO

import httpx

from bot.app import OpsbotApp
from bot.emulator.server import EmulatorServer
from bot.emulator.signing import SlackRequests
from bot.emulator.state import Channel, Message, SlackState
from bot.shell.blocks import render_blocks
from bot.shell.complete import Vocabulary
from bot.shell.lineinput import CANCELLED, LineReader, PipedReader
from bot.shell.markup import Names, escape_command, render
from bot.shell.standins import StandIns, mail_report, pages_report
from bot.shell.store import Place

SECRET = "shell-signing-secret"
BOT_TOKEN = "xoxb-shell"
SHELL_HELP = """Type a slash command (e.g. /opsbot help, /incident open P1 Checkout down); Tab completes.
  <number>        press the button with that number
  :user NAME      act as another emulated user (alice, bob, carol)
  :channel NAME   run commands in another channel (e.g. :channel inc-1-checkout-down)
  :channels       list channels
  :pages          what the PagerDuty (and Opsgenie) stand-ins received
  :mail           the e-mail the SMTP stand-in received
  :pagerduty ack|resolve KEY [NAME]   PagerDuty's webhook saying NAME acknowledged/resolved the page KEY
  :reset          start over: an empty database and workspace
  :quit           leave (or Ctrl-D; Ctrl-C drops the line being typed)"""

Values = dict[str, dict[str, Any]]


class ShellExtension(Protocol):
    """More shell commands (e.g. the demo's :break/:fix/:tick): `commands` maps ":word" to a coroutine taking the
    shell and the rest of the line; `help` is added to :help; `started` runs once the shell is up (again after
    :reset)."""

    help: str
    commands: dict[str, Callable[[Shell, str], Awaitable[None]]]

    async def started(self, shell: Shell) -> None: ...


class Shell:
    def __init__(self, app: OpsbotApp, emulator: EmulatorServer, *, user: str, out: TextIO | None = None,
                 stand_ins: StandIns | None = None, reader: LineReader | None = None,
                 place: Place | None = None, extension: ShellExtension | None = None) -> None:
        self.app = app
        self.extension = extension
        self.emulator = emulator
        self.stand_ins = stand_ins
        self.place = place
        self.state: SlackState = emulator.state
        self.out = out  # None: whatever sys.stdout is when printing (prompt_toolkit patches it)
        self.reader: LineReader = reader or PipedReader(out=out)
        self.user = user
        self.channel: Channel = self.state.channel("general")
        self.requests = SlackRequests(SECRET, response_base=f"{emulator.base_url}/response")
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi), base_url="http://opsbot")
        self.buttons: dict[int, tuple[str, dict[str, Any], Message | None, str]] = {}
        self.pending_views: list[dict[str, Any]] = []
        self.reset_requested = False
        self.state.listeners.append(self._on_event)

    # -- output --------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def names(self) -> Names:
        return Names(users={uid: str(u.get("name", uid)) for uid, u in self.state.users.items()},
                     channels={cid: c.name for cid, c in self.state.channels.items()},
                     groups={gid: str(g.get("handle", gid)) for gid, g in self.state.usergroups.items()})

    def vocabulary(self) -> Vocabulary:
        names = self.names()
        return Vocabulary.of(self.app.deps.config, users=names.users.values(), groups=names.groups.values(),
                             channels=sorted(names.channels.values()))

    def user_name(self, user_id: str) -> str:
        return str(self.state.users.get(user_id, {}).get("name", user_id))

    def prompt(self) -> str:
        return f"{self.user_name(self.user)}@#{self.channel.name}> "

    def humanize(self, text: str) -> str:
        """Slack markup as a person sees it (bot.shell.markup.render with this workspace's names)."""
        return render(text, self.names())

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
        names = self.names()
        for line in lines:
            self.say(render(line, names))

    def _on_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("message", "update"):
            channel: Channel = data["channel"]
            message: Message = data["message"]
            where = f"#{channel.name}" + (" (thread)" if message.thread_ts else "")
            verb = "posted in" if kind == "message" else "edited in"
            self._show(f"\n[opsbot {verb} {where}]", message.text, message.blocks, message)
        elif kind == "ephemeral":
            self._show(f"\n[only visible to {self.user_name(data['user'])}]", data["text"], data["blocks"], None)
        elif kind == "response":
            self._show("\n[only visible to you]", str(data.get("text", "")), data.get("blocks") or [], None)
        elif kind == "channel":
            self.say(f"\n[opsbot created #{data['channel'].name}]")
        elif kind == "view":
            self.pending_views.append(data["view"])

    # -- input ---------------------------------------------------------------------------
    async def readline(self, prompt: str, *, default: str = "", completing: bool = True) -> str | None:
        return await self.reader.read(prompt, default=default, completing=completing)

    async def send(self, signed: tuple[bytes, dict[str, str]], *, views: bool = True) -> dict[str, Any]:
        """POST a signed request to opsbot, wait for what it started, then fill the modals it opened.
        Returns the acknowledgement's JSON ({} when it had none)."""
        body, headers = signed
        response = await self.http.post("/slack/events", content=body, headers=headers)
        data: dict[str, Any] = {}
        if response.status_code >= 400:
            self.say(f"  (opsbot answered HTTP {response.status_code}: {response.text[:200]})")
        elif response.content:
            data = self._show_ack(response)
        await self.settle()
        if views:
            await self._handle_views()
        return data

    async def settle(self) -> None:
        """Wait for the tasks and jobs a request started (and theirs)."""
        await self.app.deps.tasks.wait_idle(timeout=30)
        await self.app.deps.queue.wait_idle(timeout=30)
        await self.app.deps.tasks.wait_idle(timeout=30)

    def _show_ack(self, response: httpx.Response) -> dict[str, Any]:
        if "json" not in response.headers.get("content-type", ""):
            self.say(f"  {response.text}")
            return {}
        data = response.json()
        if not isinstance(data, dict):
            return {}
        if data.get("response_action") == "errors":
            return data  # the form is asked again, with its errors (see _handle_views)
        if data.get("text") or data.get("blocks"):
            self._show("[only visible to you]", str(data.get("text", "")), data.get("blocks") or [], None)
        return data

    async def _handle_views(self) -> None:
        while self.pending_views:
            view = self.pending_views.pop(0)
            typed: dict[str, str] = {}
            errors: dict[str, str] = {}
            while True:
                filled = await self._fill(view, typed, errors)
                if filled is None:
                    return
                values, typed = filled
                answer = await self.send(self.requests.view_submission(view, values, user=self.user), views=False)
                if answer.get("response_action") != "errors":
                    break
                errors = {str(k): str(v) for k, v in (answer.get("errors") or {}).items()}
                self.say("  The form was not accepted; it is asked again with what you typed (Enter keeps it).")

    async def _fill(self, view: dict[str, Any], typed: dict[str, str],
                    errors: dict[str, str]) -> tuple[Values, dict[str, str]] | None:
        """Ask each input of `view`; `typed` (an earlier attempt's answers) are the defaults, `errors` are
        shown above their fields. Returns the view state and the answers, None at the end of input."""
        self.say(f"\n[modal: {view['title']['text']}]")
        values: Values = {}
        answers: dict[str, str] = {}
        names = self.names()
        for block in view.get("blocks", []):
            if block.get("type") != "input":
                if not errors:
                    for line in render_blocks([block], []):
                        self.say(render(line, names))
                continue
            block_id, element = block["block_id"], block["element"]
            label = block["label"]["text"] + (" (optional)" if block.get("optional") else "")
            kind = element.get("type")
            if block_id in errors:
                self.say(f"  ! {render(errors[block_id], names)}")
            if kind == "static_select":
                for i, opt in enumerate(element.get("options", []), start=1):
                    self.say(f"    {i}. {opt['text']['text']}")
                initial = (element.get("initial_option") or {}).get("text", {}).get("text")
            elif kind == "users_select" and element.get("initial_user"):
                initial = self.user_name(element["initial_user"])
            else:
                initial = element.get("initial_value")
            default = typed.get(block_id) or initial or ""
            if self.reader.prefills:
                answer = await self.readline(f"  {label}: ", default=default, completing=False)
            else:
                answer = await self.readline(f"  {label}" + (f" [{default}]" if default else "") + ": ",
                                             completing=False)
                if answer is not None and not answer.strip():
                    answer = default
            if answer is None:
                return None
            state = self._element_state(element, answer.strip())
            chosen = state.get("selected_option")
            answers[block_id] = chosen["text"]["text"] if isinstance(chosen, dict) else answer.strip()
            values[block_id] = {element["action_id"]: state}
        return values, answers

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
            user = self.resolve_user(answer) if answer else element.get("initial_user")
            return {"type": kind, "selected_user": user}
        return {"type": kind or "plain_text_input", "value": answer or element.get("initial_value") or None}

    def resolve_user(self, name: str) -> str:
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

    # -- commands ------------------------------------------------------------------------
    async def handle(self, line: str) -> bool:
        """Run one typed line; False when the shell should stop (:quit, or :reset to start over)."""
        going_on = await self._dispatch(line.strip())
        if self.place is not None:
            self.place.save(self.state)
        return going_on

    async def _dispatch(self, line: str) -> bool:
        word, _, rest = line.partition(" ")
        rest = rest.strip()
        if not line:
            return True
        if word in (":quit", ":exit", ":q"):
            return False
        if word == ":help":
            self.say(SHELL_HELP + (f"\n{self.extension.help}" if self.extension is not None else ""))
        elif word == ":reset":
            self.reset_requested = True
            return False
        elif word == ":user":
            self.user = self.resolve_user(rest)
            self.say(f"  you are now {self.user_name(self.user)} ({self.user})")
        elif word == ":channel":
            self.move(rest or "general")
        elif word == ":channels":
            for text in self.channels_report():
                self.say(text)
        elif word == ":pages":
            for text in pages_report(self.stand_ins):
                self.say(text)
        elif word == ":mail":
            for text in mail_report(self.stand_ins):
                self.say(text)
        elif word == ":pagerduty":
            await self.pagerduty_webhook(rest.split())
        elif self.extension is not None and word in self.extension.commands:
            await self.extension.commands[word](self, rest)
        elif line.isdigit():
            await self.press(int(line))
        elif line.startswith("/"):
            text = escape_command(word, rest, self.names())
            await self.send(self.requests.command(word, text, user=self.user, channel=self.channel.id,
                                                  channel_name=self.channel.name))
        else:
            self.say("  Type a slash command such as /opsbot help (:help for shell commands).")
        return True

    def move(self, name: str) -> None:
        found = self.state.find_channel(name.lstrip("#"))
        if found is None or found.id.startswith("D"):
            self.say(f"  no channel #{name.lstrip('#')} (:channels lists them)")
            return
        self.channel = found
        self.say(f"  now in #{found.name}")

    def channels_report(self) -> list[str]:
        """`:channels`: every channel with its message count and topic; `*` marks where you are."""
        listed = sorted((c for c in self.state.channels.values() if not c.id.startswith("D")),
                        key=lambda c: (c.creator == self.state.bot_user, c.id))
        width = max((len(c.name) for c in listed), default=0) + 1
        lines = []
        for c in listed:
            mark = "*" if c.id == self.channel.id else " "
            count = f"{len(c.messages)} message{'s' if len(c.messages) != 1 else ''}"
            extra = "  (archived)" if c.is_archived else ""
            topic = f"  {self.humanize(c.topic)}" if c.topic else ""
            lines.append(f" {mark}#{c.name:<{width}} {count:>12}{extra}{topic}")
        return [*lines, "  (:channel NAME moves you)"]

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
        await self.settle()

    async def close(self) -> None:
        """Stop opsbot, the emulator and the stand-ins (and forget the environment the stand-ins exported)."""
        if self.place is not None:
            self.place.save(self.state)
        await self.http.aclose()
        await self.app.stop()
        await self.emulator.stop()
        if self.stand_ins is not None:
            await self.stand_ins.stop()


__all__ = ["BOT_TOKEN", "CANCELLED", "SECRET", "SHELL_HELP", "Shell", "ShellExtension"]
