"""Starting the shell: the stand-ins, the emulated Slack, opsbot, and the loop reading lines."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from pydantic import SecretStr

from bot.app import OpsbotApp
from bot.config import EXAMPLE_CONFIG, load_config
from bot.emulator.localserver import LocalServer
from bot.emulator.server import EmulatorServer
from bot.emulator.state import SlackState
from bot.errors import ConfigError
from bot.settings import Settings
from bot.shell.complete import ShellCompleter
from bot.shell.lineinput import LineReader, reader_for
from bot.shell.session import BOT_TOKEN, SECRET, Shell, ShellExtension
from bot.shell.standins import StandIns
from bot.shell.store import Place, state_dir


async def open_shell(*, config_file: Path, database_url: str, user: str, out: TextIO | None = None,
                     slack: SlackState | None = None, place: Place | None = None,
                     reader: LineReader | None = None, extension: ShellExtension | None = None) -> Shell:
    """Start the Slack emulator (on `slack`, else an empty workspace), the paging stand-ins and opsbot;
    `await shell.close()` stops them all. Raises ConfigError for a config that does not load."""
    stand_ins = await StandIns().start()
    try:
        stand_ins.export(os.environ)  # before the config loads: ${OPSBOT_PAGERDUTY_URL} and friends resolve
        config = stand_ins.redirect(load_config(config_file), os.environ)
    except BaseException:
        await stand_ins.stop()
        raise
    emulator = await EmulatorServer(slack).start()
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
    return Shell(app, emulator, user=_user_id(emulator.state, user), out=out, stand_ins=stand_ins, place=place,
                 reader=reader, extension=extension)


async def run_shell(*, config_path: Path | None, database_url: str | None, user: str, keep: bool = False,
                    extension: ShellExtension | None = None) -> int:
    """`opsbot shell`: a fresh database and workspace each run unless `keep`; `:reset` starts over."""
    env_settings = Settings()
    config_file = Path(config_path or env_settings.opsbot_config or EXAMPLE_CONFIG)
    home = state_dir()
    place = Place.choose(database_url=database_url, keep=keep, home=home)
    interactive = sys.stdin.isatty()
    current: list[Shell] = []  # the shell Tab completes for (a new one after :reset)
    reader = reader_for(interactive, history_file=home / "history",
                        completer=ShellCompleter(lambda: current[-1].vocabulary()))
    shell: Shell | None = None
    status: LocalServer | None = None
    try:
        while True:
            try:
                shell = await open_shell(config_file=config_file, database_url=place.database_url, user=user,
                                         slack=place.load(), place=place if place.kept else None, reader=reader,
                                         extension=extension)
            except ConfigError as exc:
                print(f"{exc.source}: cannot start the shell:", file=sys.stderr)
                for problem in exc.problems:
                    print(f"  {problem}", file=sys.stderr)
                return 1
            current.append(shell)
            _greet(shell, config_file, place)
            if extension is not None:
                await extension.started(shell)  # the demo serves opsbot's pages itself
            else:
                status = await _serve_status_page(shell)
            await _loop(shell, interactive)
            if not shell.reset_requested:
                return 0
            if status is not None:
                await status.stop()
                status = None
            await shell.close()
            shell = None
            if not place.wipe():
                print("  :reset starts over on SQLite only; empty this database yourself.", flush=True)
                return 0
            print("  Starting over: an empty database and emulated Slack.\n", flush=True)
    finally:
        if status is not None:
            await status.stop()
        if shell is not None:
            shell.say("")
            await shell.close()
        place.close()


async def _serve_status_page(shell: Shell) -> LocalServer | None:
    """With a `status_page:` in the config, opsbot's HTTP routes on a loopback port, so the page can be opened
    while the shell runs."""
    page = shell.app.deps.config.status_page
    if page is None or not page.enabled:
        return None
    server = await LocalServer(shell.app.asgi).start()
    shell.say(f"Status page: {server.url}/status (also /status.json and /status/feed.atom)"
              + (f"; in production {page.url.rstrip('/')}/status" if page.url else ""))
    return server


async def _loop(shell: Shell, interactive: bool) -> None:
    if interactive:
        from prompt_toolkit.patch_stdout import patch_stdout

        with patch_stdout(raw=True):  # what opsbot posts while you type is printed above the prompt
            await _read_lines(shell)
    else:
        await _read_lines(shell)


async def _read_lines(shell: Shell) -> None:
    while True:
        try:
            line = await shell.readline(shell.prompt())
            if line is None or not await shell.handle(line):
                return
        except asyncio.CancelledError:  # Ctrl-C while a command ran (asyncio.run cancels the main task)
            task = asyncio.current_task()
            if task is None or task.uncancel() > 0:
                raise
            shell.say("\n  (interrupted; what it started goes on in the background. Ctrl-C again leaves.)")


def _greet(shell: Shell, config_file: Path, place: Place) -> None:
    shell.say(f"opsbot shell — config {config_file}, database {shell.app.deps.db.display_url}")
    if place.kept:
        shell.say(f"Kept between runs (--keep): the database and the emulated Slack ({place.slack_file}); "
                  ":reset starts over.")
    elif place.temporary is not None:
        shell.say("A fresh database and emulated Slack for this run (--keep continues the last kept state).")
    else:
        shell.say("The emulated Slack is fresh for this run; --keep keeps it beside the database.")
    if shell.stand_ins is not None:
        shell.say(f"Paging goes to local stand-ins: {shell.stand_ins.describe()} (:pages, :mail).")
    shell.say(f"You are {shell.user_name(shell.user)} in #{shell.channel.name}. :help for help, :quit to leave.")


def _user_id(state: SlackState, name: str) -> str:
    for user_id, user in state.users.items():
        if name in (user_id, user["name"]):
            return user_id
    return "U0ALICE01"
