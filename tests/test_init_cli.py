"""`opsbot init --from RUNBOOK.md` through the real command line: --print, -o, --force, the summary on stderr,
and `opsbot config check` on what it wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config import check_file, parse_config

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = Path(__file__).parent / "runbooks"


def opsbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: the draft's ${VAR}s must be unset for the check's warnings to be predictable.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPSBOT_", "SLACK_", "APP_", "API_"))}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"})
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env=env)


def test_print_writes_the_draft_to_stdout_and_the_summary_to_stderr(tmp_path: Path) -> None:
    result = opsbot("init", "--from", str(RUNBOOKS / "floyo-fastapi.md"), "--print", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = parse_config(yaml.safe_load(result.stdout), env={})
    assert [s.name for s in config.severities] == ["P0", "P1", "P2", "P3", "P4"]
    assert "runbooks:" in result.stdout and "opsbot init: drafted" not in result.stdout
    err = result.stderr
    assert "found:" in err and "severities: P0, P1, P2, P3, P4 (line 10)" in err
    assert "left out:" in err and "POST /api/v1/projects: not a health check" in err
    assert "celery-queue-depth (line 51): no source to guess" in err
    assert "set before `opsbot serve`: API_TOKEN, FLOYO_ADMIN_TOKEN, APP_DATABASE_URL, PROMETHEUS_URL" in err
    assert list(tmp_path.iterdir()) == []  # --print writes no file


def test_output_file_passes_config_check(tmp_path: Path) -> None:
    target = tmp_path / "ops" / "opsbot.yml"
    target.parent.mkdir()
    result = opsbot("init", "--from", str(RUNBOOKS / "ledgerly-saas.md"), "-o", str(target), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"drafted {target} from" in result.stderr and f"opsbot config check {target}" in result.stderr
    written = target.read_text(encoding="utf-8")
    assert "flags:" in written and "pdf_export:" in written

    check = opsbot("config", "check", str(target), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "OK" in check.stdout and "environment variable APP_DATABASE_URL is not set" in check.stdout
    assert ": error:" not in check.stdout


def test_an_existing_file_is_never_overwritten_without_force(tmp_path: Path) -> None:
    target = tmp_path / "opsbot.yml"
    target.write_text("# my hand-written config\n", encoding="utf-8")
    refused = opsbot("init", "--from", str(RUNBOOKS / "ledgerly-saas.md"), cwd=tmp_path)  # default: ./opsbot.yml
    assert refused.returncode == 1
    assert "opsbot.yml exists; pass --force" in refused.stderr
    assert target.read_text(encoding="utf-8") == "# my hand-written config\n"

    forced = opsbot("init", "--from", str(RUNBOOKS / "ledgerly-saas.md"), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    errors, _warnings = check_file(target, env={})
    assert errors == [] and "pdf_export:" in target.read_text(encoding="utf-8")


def test_a_missing_runbook_is_named(tmp_path: Path) -> None:
    missing = opsbot("init", "--from", "NOPE.md", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot read NOPE.md" in missing.stderr and "Traceback" not in missing.stderr
    assert list(tmp_path.iterdir()) == []
