"""The `opsbot` command line: serve, socket, shell, emulator, db upgrade, config check."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bot import __version__


def _config_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_config_check(args: argparse.Namespace) -> int:
    from bot.config import EXAMPLE_CONFIG, check_file
    from bot.settings import Settings

    path = args.file or Settings().opsbot_config or EXAMPLE_CONFIG
    errors, warnings = check_file(path)
    for problem in errors:
        print(f"{path}: error: {problem}")
    for problem in warnings:
        print(f"{path}: warning: {problem}")
    if errors:
        print(f"{path}: {len(errors)} problem(s) found", file=sys.stderr)
        return 1
    if warnings and args.strict:
        return 1
    print(f"{path}: OK" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.db import Database
    from bot.settings import Settings

    settings = Settings()

    async def run() -> None:
        db = Database(settings.database_url.get_secret_value())
        try:
            await db.upgrade()
            print(f"database {db.display_url} is at the latest schema")
        finally:
            await db.dispose()

    asyncio.run(run())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.settings import Settings

    settings = Settings()
    with _metrics_dir(settings.worker_process):  # before anything imports prometheus_client
        import uvicorn

        from bot import logs
        from bot.app import build
        from bot.worker import Role

        logs.configure(settings)
        app = build(settings, freeze_gc=True, role=Role.WEB if settings.worker_process else Role.INLINE)
        uvicorn.run(app.asgi, host=args.host or settings.host, port=args.port or settings.port,
                    log_level=settings.log_level.lower(), access_log=False, timeout_graceful_shutdown=15)
    return 0


@contextlib.contextmanager
def _metrics_dir(needed: bool) -> Iterator[None]:
    """prometheus-client's multiprocess mode for the web and worker processes: a fresh directory per run."""
    if not needed or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="opsbot-metrics-") as path:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.worker import main

    return main(args.fd)


def cmd_socket(args: argparse.Namespace) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot import logs
    from bot.app import build
    from bot.settings import Settings

    settings = Settings()
    logs.configure(settings)
    if settings.slack_app_token is None:
        print("SLACK_APP_TOKEN (xapp-…) is required for Socket Mode", file=sys.stderr)
        return 2

    async def run() -> None:
        app = build(settings, freeze_gc=True)
        await app.start()
        try:
            handler = AsyncSocketModeHandler(app.bolt, settings.slack_app_token.get_secret_value())  # type: ignore[union-attr]
            await handler.start_async()
        finally:
            await app.stop()

    asyncio.run(run())
    return 0


def cmd_shell(args: argparse.Namespace) -> int:
    from bot.shell import run_shell

    return asyncio.run(run_shell(config_path=_config_path(args.config), database_url=args.database,
                                 user=args.user))


def cmd_emulator(args: argparse.Namespace) -> int:
    from bot.emulator.server import EmulatorServer

    async def run() -> None:
        server = await EmulatorServer(host="127.0.0.1", port=args.port).start()
        print(f"Slack Web API emulator on {server.api_url} (set SLACK_API_URL to this)", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="opsbot", description="ChatOps for runbooks: incidents, health, flags, "
                                  "rollbacks and alerts in Slack.")
    top.add_argument("--version", action="version", version=f"opsbot {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="HTTP mode: POST /slack/events, /health, /metrics")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker")  # started by `serve` with its end of a socket pair; not for hand use
    worker.add_argument("--fd", type=int, required=True)
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("socket", help="the same app over Socket Mode").set_defaults(func=cmd_socket)

    shell = sub.add_parser("shell", help="try opsbot in a terminal against a local Slack emulator")
    shell.add_argument("--config", help="opsbot.yml (default: OPSBOT_CONFIG or the example config)")
    shell.add_argument("--database", help="database URL (default: DATABASE_URL or sqlite:///opsbot-shell.db)")
    shell.add_argument("--user", default="alice", help="who you are in the emulated workspace")
    shell.set_defaults(func=cmd_shell)

    emulator = sub.add_parser("emulator", help="run the local Slack Web API emulator on its own")
    emulator.add_argument("--port", type=int, default=8089)
    emulator.set_defaults(func=cmd_emulator)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations (also done on start)").set_defaults(func=cmd_db_upgrade)

    config = sub.add_parser("config", help="opsbot.yml tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate opsbot.yml and name every problem")
    check.add_argument("file", nargs="?", type=Path)
    check.add_argument("--strict", action="store_true", help="unset ${VAR} references are errors too")
    check.set_defaults(func=cmd_config_check)
    return top


def main(argv: list[str] | None = None) -> int:
    from bot.errors import ConfigError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:  # serve/socket/shell with a broken opsbot.yml: say what, where, and stop
        print(f"{exc.source}: opsbot cannot start:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
