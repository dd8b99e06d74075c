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
from typing import TYPE_CHECKING

from bot import __version__

if TYPE_CHECKING:
    from bot.config import Config
    from bot.settings import Settings

LOCAL_CONFIG = "opsbot.yml"
NO_CONFIG = (f"no opsbot.yml: set OPSBOT_CONFIG to its path, or start opsbot in the directory that holds "
             f"{LOCAL_CONFIG} (examples/opsbot.yml is a commented example to start from)")


class StartRefused(Exception):
    """`serve`/`socket` would run without what it needs; each problem names the setting to fix."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _config_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def find_config(settings: Settings) -> tuple[Path, str] | None:
    """The opsbot.yml a server runs with and why: OPSBOT_CONFIG, else ./opsbot.yml. Never the bundled example."""
    if settings.opsbot_config is not None:
        return settings.opsbot_config.resolve(), "OPSBOT_CONFIG"
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return local, f"{LOCAL_CONFIG} in the working directory"
    return None


def _settings() -> Settings:
    from pydantic import ValidationError

    from bot.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise StartRefused([f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()]) from None


def server_start(*, socket_mode: bool) -> tuple[Settings, Config, str]:
    """Settings and config for `serve`/`socket`, or StartRefused naming every missing credential and file.

    The config's resolved path goes into the settings, so the worker process reads the same file."""
    from bot.config import load_config
    from bot.errors import ConfigError

    settings = _settings()
    problems = settings.credential_problems(socket_mode=socket_mode)
    found = find_config(settings)
    if found is None:
        raise StartRefused([*problems, NO_CONFIG])
    path, source = found
    try:
        config = load_config(path)
    except ConfigError:
        if problems:  # say everything that is wrong at once; the config's errors decide the exit code
            _print_refusal("serve" if not socket_mode else "socket", problems)
        raise
    if problems:
        raise StartRefused(problems)
    return settings.model_copy(update={"opsbot_config": path}), config, source


def _print_refusal(command: str, problems: list[str]) -> None:
    print(f"opsbot {command}: cannot start:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)


def cmd_config_check(args: argparse.Namespace) -> int:
    from bot.config import check_file

    found = (args.file, "") if args.file else find_config(_settings())
    if found is None:
        print(f"opsbot config check: {NO_CONFIG} (or name the file: opsbot config check FILE)", file=sys.stderr)
        return 1
    path = found[0]
    errors, warnings = check_file(path)
    if args.strict:  # --strict: every warning is an error, and says so
        errors, warnings = errors + warnings, []
    for problem in errors:
        print(f"{path}: error: {problem}")
    for problem in warnings:
        print(f"{path}: warning: {problem}")
    if errors:
        print(f"{path}: {len(errors)} problem(s) found" + (f", {len(warnings)} warning(s)" if warnings else ""),
              file=sys.stderr)
        return 1
    print(f"{path}: OK" + (f" ({len(warnings)} warning(s))" if warnings else ""))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from bot.init import run

    return run(args.source, output=args.output, to_stdout=args.print, force=args.force)


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
    from bot.db import is_sqlite, normalize_url

    # SQLite is one instance: its in-process queue runs the jobs beside the acks (bot/worker.py).
    early = _settings()
    separate_worker = early.worker_process and not is_sqlite(normalize_url(early.database_url.get_secret_value()))
    # Before anything imports prometheus_client, the config included: validating an alert rule's unit imports
    # bot.alerts, which imports bot.metrics (the web process then counted in memory, and /metrics showed only
    # what the worker wrote to the directory).
    with _metrics_dir(separate_worker):
        settings, config, source = server_start(socket_mode=False)
        from bot import logs
        from bot.app import build
        from bot.db import upgrade_in_child
        from bot.worker import Role

        logs.configure(settings, config)
        _log_start(settings, source, jobs="a worker process" if separate_worker else "this process")
        # Migrated before the worker starts, in a child process: Alembic is resident in neither process.
        migrated = upgrade_in_child(settings.database_url.get_secret_value())
        forked = _fork_worker(settings, config) if separate_worker else None
        import uvicorn  # after the fork: the worker serves no HTTP

        app = build(settings, config, freeze_gc=True, role=Role.WEB if separate_worker else Role.INLINE,
                    forked_worker=forked, migrate=not migrated)
        # log_config=None: uvicorn installs no handlers or formatters of its own; its records reach the
        # root handler, whose formatter scrubs secrets from messages and tracebacks alike.
        uvicorn.run(app.asgi, host=args.host or settings.host, port=args.port or settings.port, log_config=None,
                    log_level=settings.log_level.lower(), access_log=False, timeout_graceful_shutdown=15)
    return 0


def _fork_worker(settings: Settings, config: Config) -> int | None:
    """Everything both processes run imported, then the first worker forked (bot/worker.py `fork_worker`)."""
    import procrastinate.worker  # noqa: F401 - what the worker imports when it starts, imported once here

    import commands
    from bot import worker

    commands.load_jobs()
    return worker.fork_worker(settings, config)


def _log_start(settings: Settings, source: str, *, jobs: str = "this process") -> None:
    import logging

    log = logging.getLogger("opsbot")
    log.info("config %s (from %s)", settings.opsbot_config, source)
    scheduler = "on (the replica holding the leader lock runs it)" if settings.scheduler_enabled else \
        "off on this replica (SCHEDULER_ENABLED=false)"
    log.info("jobs run in %s; scheduler %s", jobs, scheduler)


METRICS_PREFIX = "opsbot-metrics-"


@contextlib.contextmanager
def _metrics_dir(needed: bool) -> Iterator[None]:
    """prometheus-client's multiprocess mode for the web and worker processes: a fresh directory per run,
    named after this process, and the directories of runs whose process is gone removed first: a replica
    that was killed never removed its own, and neither did one stopped by SIGTERM (uvicorn ends a graceful
    shutdown by raising the signal again, so this block's cleanup does not run)."""
    if not needed or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    sweep_metrics_dirs(Path(tempfile.gettempdir()))
    with tempfile.TemporaryDirectory(prefix=f"{METRICS_PREFIX}{os.getpid()}-") as path:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def sweep_metrics_dirs(parent: Path, *, older_than: float = 300.0) -> list[Path]:
    """Remove `opsbot-metrics-<pid>-…` directories under `parent` whose process no longer exists and which
    nothing has written to for `older_than` seconds (an orphaned worker may still be stopping); the ones
    removed. Directories from before they carried a pid are left alone: nothing says whose they are."""
    import shutil
    import time

    removed = []
    for path in parent.glob(f"{METRICS_PREFIX}*-*"):
        owner = path.name[len(METRICS_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or not path.is_dir() or _running(int(owner)):
            continue
        try:
            newest = max([path.stat().st_mtime, *(f.stat().st_mtime for f in path.iterdir())])
        except OSError:  # removed meanwhile (by another replica's sweep)
            continue
        if time.time() - newest < older_than:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to judge
        return True
    return True


def cmd_worker(args: argparse.Namespace) -> int:
    from bot.worker import main

    return main()


def cmd_socket(args: argparse.Namespace) -> int:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot import inbound, logs
    from bot.app import build

    settings, config, source = server_start(socket_mode=True)
    logs.configure(settings, config)
    _log_start(settings, source)

    async def run() -> None:
        app = build(settings, config, freeze_gc=True)
        # Socket Mode requests arrive parsed and skip bot/inbound.py's HTTP path: check them in bolt instead.
        app.bolt.middleware(inbound.socket_mode_checks)
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

    try:
        return asyncio.run(run_shell(config_path=_config_path(args.config), database_url=args.database,
                                     user=args.user, keep=args.keep))
    except KeyboardInterrupt:  # a second Ctrl-C while a command ran
        return 130


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo.main import run_demo

    try:
        return asyncio.run(run_demo(config_path=_config_path(args.config), database_url=args.database,
                                    user=args.user, keep=args.keep))
    except KeyboardInterrupt:
        return 130


def cmd_emulator(args: argparse.Namespace) -> int:
    from bot.emulator.server import EmulatorServer

    async def run() -> None:
        server = await EmulatorServer(host="127.0.0.1", port=args.port).start()
        print(f"Slack Web API emulator on {server.api_url} (set SLACK_API_URL to this); what was posted: "
              f"{server.base_url}/ and {server.base_url}/_state.json", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Read-only pre-flight of a deployment: one ✅/⚠️/❌ line per thing checked, exit code 1 on any ❌."""
    from bot import doctor
    from bot.config import load_config
    from bot.errors import ConfigError

    settings = _settings()
    found = (args.config.resolve(), "from --config") if args.config else find_config(settings)
    config, source, problems = None, NO_CONFIG, []
    if found is not None:
        source = f"{found[0]} ({found[1]})" if found[1].startswith("from") else f"{found[0]} (from {found[1]})"
        try:
            config = load_config(found[0])
        except ConfigError as exc:
            problems = exc.problems
            source = f"{found[0]} does not load: {len(problems)} problem(s), see `opsbot config check`"
    findings = asyncio.run(doctor.run(settings=settings, config=config, config_source=source, env=os.environ,
                                      url=args.url, socket_mode=args.socket))
    print(doctor.render(findings))
    for problem in problems[:10]:
        print(f"  {problem}")
    return doctor.exit_code(findings)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="opsbot", description="ChatOps for runbooks: incidents, health, flags, "
                                  "rollbacks and alerts in Slack.")
    top.add_argument("--version", action="version", version=f"opsbot {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="HTTP mode: POST /slack/events, /health, /metrics")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run queued jobs and the scheduler (started by `serve` on PostgreSQL)")
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("socket", help="the same app over Socket Mode").set_defaults(func=cmd_socket)

    shell = sub.add_parser("shell", help="try opsbot in a terminal against a local Slack emulator")
    shell.add_argument("--config", help="opsbot.yml (default: OPSBOT_CONFIG or the example config)")
    shell.add_argument("--database", help="database URL (default: a new temporary SQLite database, or with "
                       "--keep the one in the shell's state directory)")
    shell.add_argument("--keep", action="store_true", help="continue the last kept database and emulated Slack "
                       "(default: a fresh one each run)")
    shell.add_argument("--user", default="alice", help="who you are in the emulated workspace")
    shell.set_defaults(func=cmd_shell)

    demo = sub.add_parser("demo", help="the shell against local demo targets (an app, a flag store, a metric): "
                          "every example succeeds; :break/:fix show failures and alerts")
    demo.add_argument("--config", help="opsbot.yml (default: the demo config, bot/demo/opsbot.demo.yml)")
    demo.add_argument("--database", help="database URL (default: a new temporary SQLite database)")
    demo.add_argument("--keep", action="store_true", help="continue the last kept database and emulated Slack")
    demo.add_argument("--user", default="alice", help="who you are in the emulated workspace")
    demo.set_defaults(func=cmd_demo)

    emulator = sub.add_parser("emulator", help="run the local Slack Web API emulator on its own")
    emulator.add_argument("--port", type=int, default=8089)
    emulator.set_defaults(func=cmd_emulator)

    doctor = sub.add_parser("doctor", help="check a deployment before going live (read-only): Slack token and "
                            "scopes, channels, handles, ${VAR}s, database, targets, the public URL")
    doctor.add_argument("--config", type=Path, help="opsbot.yml (default: OPSBOT_CONFIG or ./opsbot.yml)")
    doctor.add_argument("--url", help="the public URL Slack sends to (https://…/slack/events): must answer ssl_check")
    doctor.add_argument("--socket", action="store_true", help="Socket Mode: SLACK_APP_TOKEN is needed too")
    doctor.set_defaults(func=cmd_doctor)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations (also done on start)").set_defaults(func=cmd_db_upgrade)

    config = sub.add_parser("config", help="opsbot.yml tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate opsbot.yml and name every problem")
    check.add_argument("file", nargs="?", type=Path)
    check.add_argument("--strict", action="store_true", help="warnings (unset ${VAR}, deprecated keys) are errors")
    check.set_defaults(func=cmd_config_check)

    init = sub.add_parser("init", help="draft opsbot.yml from a Markdown runbook")
    init.add_argument("--from", dest="source", type=Path, required=True, metavar="RUNBOOK.md")
    init.add_argument("-o", "--output", type=Path, help="where to write it (default: opsbot.yml)")
    init.add_argument("--print", action="store_true", help="write the draft to stdout instead of a file")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)
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
    except StartRefused as exc:  # never run open: no default credentials, no silent example config
        _print_refusal(args.command, exc.problems)
        return 2
