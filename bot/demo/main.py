"""`opsbot demo`: the demo targets on loopback, the demo config pointed at them, and the shell with the demo's
own commands (:break, :fix, :tick, :targets). Everything stays on this machine."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from importlib.resources import files
from pathlib import Path

from bot.demo.targets import BREAKABLE, DemoTargets
from bot.emulator.localserver import LocalServer
from bot.shell import Shell, run_shell

DEMO_CONFIG = Path(str(files("bot.demo").joinpath("opsbot.demo.yml")))
DEPLOYS_TOKEN = "demo-deploys-token"
# What CI would have recorded (POST /deploys), oldest first: /rollback api prod offers the previous version.
DEPLOYS = (("api", "prod", "v1.4.1"), ("api", "prod", "v1.4.2"), ("api", "staging", "v1.4.1"),
           ("api", "staging", "v1.4.2"))
DEMO_HELP = """Demo (the targets are local: :targets lists them):
  :break TARGET   make a target fail: """ + ", ".join(BREAKABLE) + """
  :fix TARGET     make it recover (:fix all)
  :tick           run the health monitors and alert evaluations now (they also run every 10 s and 1 min)
  :targets        the demo targets and what is broken"""
WALKTHROUGH = """Try: /health · /killswitch checkout on · /flag checkout rollout 50 · /rollback api prod (then
  :user carol to approve) · :break latency + :tick (an alert fires) · :fix latency + :tick (it resolves) ·
  /oncall · /page @oncall hello · /run restart prod container=api · /incident open P1 Checkout down ·
  /runbook db-pool in its channel. :help lists the shell's commands."""


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoCommands:
    """The shell extension (bot.shell.session.ShellExtension): :break/:fix/:tick/:targets and, at start, the
    status page served on `status_port` and the deploy history seeded."""

    help = DEMO_HELP

    def __init__(self, targets: DemoTargets, status_port: int) -> None:
        self.targets = targets
        self.status_port = status_port
        self.status_server: LocalServer | None = None
        self.commands: dict[str, Callable[[Shell, str], Awaitable[None]]] = {
            ":break": self.break_, ":fix": self.fix, ":tick": self.tick, ":targets": self.list_targets}

    async def started(self, shell: Shell) -> None:
        await self.stop_status()
        self.status_server = await LocalServer(shell.app.asgi, port=self.status_port).start()
        token = shell.app.deps.settings.deploys_token
        if token is not None:
            for service, environment, version in DEPLOYS:
                await shell.http.post("/deploys", json={"service": service, "environment": environment,
                                                        "version": version, "deployed_by": "ci"},
                                      headers={"Authorization": f"Bearer {token.get_secret_value()}"})
        shell.say(f"Demo targets at {self.targets.url} (an app, its flag admin API and a DB pool metric); "
                  f"opsbot's status page: {self.status_server.url}/status")
        shell.say(WALKTHROUGH)

    async def stop_status(self) -> None:
        if self.status_server is not None:
            await self.status_server.stop()
            self.status_server = None

    async def break_(self, shell: Shell, rest: str) -> None:
        name = rest.strip()
        if name not in BREAKABLE:
            shell.say(f"  usage: :break {'|'.join(BREAKABLE)}")
            return
        shell.say(f"  broke {name}: {self.targets.break_(name)}")
        shell.say("  see it: :tick (the alert evaluates now)" if name == "latency" else "  see it: /health prod")

    async def fix(self, shell: Shell, rest: str) -> None:
        name = rest.strip() or "all"
        if name != "all" and name not in BREAKABLE:
            shell.say(f"  usage: :fix {'|'.join(BREAKABLE)}|all")
            return
        was = self.targets.fix(name)
        shell.say(f"  fixed {name}" if was else f"  {name} was not broken")
        if was:
            hint = ":tick (the alert resolves)" if name in ("latency", "all") else "/health prod"
            shell.say(f"  see it: {hint}")

    async def tick(self, shell: Shell, rest: str) -> None:
        scheduler = shell.app.deps.scheduler
        due = sorted(name for name in scheduler.jobs if name.startswith(("health.monitor.", "alerts.eval.")))
        for name in due:
            await scheduler.run_now(name)
        await shell.settle()
        shell.say(f"  ran {', '.join(due) if due else 'nothing (no monitors or alert rules)'}")

    async def list_targets(self, shell: Shell, rest: str) -> None:
        shell.say(f"  demo app {self.targets.url}: /health, /, /api/admin/users (401), /payments/health, "
                  "/api/admin/feature-flags, /internal/pool")
        if self.status_server is not None:
            shell.say(f"  opsbot (status page): {self.status_server.url}/status")
        broken = sorted(self.targets.state.broken)
        shell.say(f"  broken: {', '.join(broken)}" if broken else "  nothing is broken (:break TARGET)")


def demo_environment(targets: DemoTargets, status_port: int) -> dict[str, str]:
    """The variables the demo config reads, and PATH starting with this Python's directory so the config's
    `python3 -m bot.demo…` commands run with the Python opsbot runs on."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        path = bin_dir + (os.pathsep + path if path else "")
    return {**targets.env(), "DEMO_OPSBOT_URL": f"http://127.0.0.1:{status_port}", "PATH": path,
            "DEPLOYS_TOKEN": os.environ.get("DEPLOYS_TOKEN") or DEPLOYS_TOKEN}


async def run_demo(*, database_url: str | None, user: str, keep: bool = False,
                   config_path: Path | None = None) -> int:
    """`opsbot demo`: `opsbot shell` on the demo config (or `config_path`) with the demo targets running."""
    targets = await DemoTargets().start()
    status_port = free_port()
    saved = {name: os.environ.get(name) for name in demo_environment(targets, status_port)}
    os.environ.update(demo_environment(targets, status_port))
    extension = DemoCommands(targets, status_port)
    try:
        return await run_shell(config_path=config_path or DEMO_CONFIG, database_url=database_url, user=user,
                               keep=keep, extension=extension)
    finally:
        await extension.stop_status()
        await targets.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


__all__ = ["DEMO_CONFIG", "DemoCommands", "run_demo"]
