"""`opsbot serve` / `opsbot socket` never run open: the real command line refuses to start without Slack's
credentials (or with the old public placeholders) and without an opsbot.yml, and says what to set where;
with them it starts, names its config, database and Slack API, and logs through the scrubbing formatter."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.emulator.harness import BOT_TOKEN, SIGNING_SECRET
from bot.emulator.server import EmulatorServer
from tests.test_alerts_replicas import eventually, free_port

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
OURS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "OPSBOT_CONFIG", "DATABASE_URL",
        "PROMETHEUS_MULTIPROC_DIR")


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    return {**env, "PYTHONPATH": str(ROOT), **values}


def opsbot(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A command that must refuse before it binds or connects anything (so a blocking run is fine)."""
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=clean_env(**env))


def test_serve_without_credentials_or_config_names_each_variable_and_where_slack_shows_it(tmp_path: Path) -> None:
    result = opsbot("serve", "--port", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "SLACK_SIGNING_SECRET is not set" in err and "Basic Information → App Credentials" in err
    assert "SLACK_BOT_TOKEN is not set" in err and "OAuth & Permissions → Bot User OAuth Token" in err
    assert "OPSBOT_CONFIG" in err and "opsbot.yml" in err
    assert "Traceback" not in err and "SLACK_APP_TOKEN" not in err and result.stdout == ""


def test_socket_also_needs_the_app_level_token(tmp_path: Path) -> None:
    result = opsbot("socket", cwd=tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    OPSBOT_CONFIG=str(TESTS / "opsbot.test.yml"))
    assert result.returncode == 2, result.stderr
    assert "SLACK_APP_TOKEN is not set" in result.stderr and "Basic Information → App-Level Tokens" in result.stderr
    assert "SLACK_BOT_TOKEN" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(("variable", "placeholder"), [("SLACK_SIGNING_SECRET", "local-signing-secret"),
                                                       ("SLACK_BOT_TOKEN", "xoxb-local-emulator")])
def test_the_old_public_defaults_are_refused(tmp_path: Path, variable: str, placeholder: str) -> None:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "OPSBOT_CONFIG": str(TESTS / "opsbot.test.yml"), variable: placeholder}
    result = opsbot("serve", "--port", "1", cwd=tmp_path, **env)
    assert result.returncode == 2, result.stderr
    assert f"{variable} is a public placeholder" in result.stderr and "Traceback" not in result.stderr


def test_serve_never_falls_back_to_the_bundled_example(tmp_path: Path) -> None:
    result = opsbot("serve", "--port", "1", cwd=tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN,
                    SLACK_SIGNING_SECRET=SIGNING_SECRET)
    assert result.returncode == 2
    assert "no opsbot.yml: set OPSBOT_CONFIG" in result.stderr and "SLACK_" not in result.stderr
    check = opsbot("config", "check", cwd=tmp_path)
    assert check.returncode == 1 and "no opsbot.yml" in check.stderr


async def test_with_real_values_serve_starts_with_the_local_config_and_says_what_it_uses(
        tmp_path: Path, emulator: EmulatorServer, database_url: str) -> None:
    (tmp_path / "opsbot.yml").write_text((TESTS / "opsbot.test.yml").read_text())
    port, log = free_port(), tmp_path / "serve.log"
    env = clean_env(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, DATABASE_URL=database_url,
                    SLACK_API_URL=emulator.api_url, LOG_LEVEL="INFO")
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1",
                                                    "--port", str(port), env=env, cwd=tmp_path, stdout=out, stderr=out)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            async def worker_running() -> bool:
                assert proc.returncode is None, log.read_text()
                try:
                    response = await http.get("/health")
                except httpx.HTTPError:
                    return False
                if response.status_code != 200:
                    return False
                if database_url.startswith("sqlite"):  # one instance, one process: the jobs run in it
                    return response.json()["jobs"]["backend"] == "in-process"
                # The worker process read the same opsbot.yml: serve handed it the resolved path.
                return bool(response.json().get("worker", {}).get("running"))

            await eventually(worker_running, "opsbot serve (and its worker, on PostgreSQL) to start")
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()
    text = log.read_text()
    assert f"config {tmp_path / 'opsbot.yml'} (from opsbot.yml in the working directory)" in text
    backend = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    assert f"({backend}), Slack API {emulator.api_url}" in text
    assert "INFO uvicorn.error: Uvicorn running on" in text  # uvicorn's records go through opsbot's formatter
    assert BOT_TOKEN not in text and SIGNING_SECRET not in text and "Traceback" not in text


def test_the_uvicorn_factory_refuses_like_serve(tmp_path: Path) -> None:
    """`uvicorn bot.app:asgi --factory` is another way in: it must not start open either."""
    result = subprocess.run([sys.executable, "-c", "from bot.app import asgi; asgi()"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path, env=clean_env())
    assert result.returncode != 0
    assert "SLACK_SIGNING_SECRET is not set" in result.stderr and "SLACK_BOT_TOKEN is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_uvicorn_factory_logs_through_the_scrubbing_formatter(tmp_path: Path) -> None:
    """`uvicorn bot.app:asgi --factory` never runs `opsbot serve`'s logs.configure: it must not log raw."""
    code = ("import logging, os\n"
            "from bot.app import asgi\n"
            "asgi()\n"
            "token = os.environ['SLACK_BOT_TOKEN']\n"
            "try:\n"
            "    raise RuntimeError(f'Slack refused {token}')\n"
            "except RuntimeError:\n"
            "    logging.getLogger('opsbot.test').exception('call failed with %s', token)\n")
    secret_token = "xoxb-" + "7f3c9e1b5d2a-factory"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env=clean_env(SLACK_BOT_TOKEN=secret_token, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                                          OPSBOT_CONFIG=str(TESTS / "opsbot.test.yml"),
                                          DATABASE_URL=f"sqlite:///{tmp_path / 'f.db'}"))
    assert result.returncode == 0, result.stderr
    assert "ERROR opsbot.test: call failed with" in result.stderr and "RuntimeError: Slack refused" in result.stderr
    assert secret_token not in result.stderr and "7f3c9e1b5d2a" not in result.stderr


def test_metrics_directories_of_dead_runs_are_removed_and_live_or_recent_ones_kept(tmp_path: Path) -> None:
    """A replica killed with SIGKILL leaves its prometheus directory behind; the next `opsbot serve` removes
    it once nothing has written to it for five minutes, and never one whose process is alive."""
    from bot.cli import METRICS_PREFIX, sweep_metrics_dirs

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = int(gone.stdout)
    stale, recent = tmp_path / f"{METRICS_PREFIX}{dead}-abc", tmp_path / f"{METRICS_PREFIX}{dead}-def"
    alive, legacy = tmp_path / f"{METRICS_PREFIX}{os.getpid()}-ghi", tmp_path / f"{METRICS_PREFIX}x_1z9k"
    for path in (stale, recent, alive, legacy):
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"")
    old = time.time() - 600
    for path in (stale, alive, legacy):
        for item in (path / "counter_1.db", path):
            os.utime(item, (old, old))
    assert sweep_metrics_dirs(tmp_path) == [stale]
    assert not stale.exists() and recent.exists() and alive.exists() and legacy.exists()
