"""A built wheel carries what opsbot's defaults need: the example config (the default opsbot.yml), the Slack app
manifest (`opsbot doctor` compares scopes with it), templates and migrations; loaded from the unpacked wheel in
another directory, they are found without the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("bot/data/opsbot.yml", "bot/data/manifest.yml", "bot/templates/status_update.md.j2",
          "bot/templates/postmortem.md.j2", "bot/migrations/env.py", "bot/migrations/versions/0001_initial_schema.py",
          "bot/cli.py", "commands/__init__.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the source tree (building in place would leave build/ in the checkout)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "*.db")
    for name in ("bot", "commands", "examples"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "manifest.yml"):
        shutil.copy2(ROOT / name, src / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                            capture_output=True, text=True, timeout=240)
    if result.returncode != 0 and ("No matching distribution" in result.stderr or "connection" in result.stderr):
        pytest.skip(f"cannot fetch the build backend offline: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("opsbot-*.whl")
    return built


def test_the_wheel_carries_the_default_config_manifest_templates_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in NEEDED if name not in names]
    assert not missing, missing
    config = zipfile.ZipFile(wheel).read("bot/data/opsbot.yml").decode()
    assert config == (ROOT / "examples" / "opsbot.yml").read_text()  # a copy, not a link
    assert zipfile.ZipFile(wheel).read("bot/data/manifest.yml").decode() == (ROOT / "manifest.yml").read_text()


def test_the_unpacked_wheel_finds_its_defaults_from_another_directory(wheel: Path, tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    zipfile.ZipFile(wheel).extractall(site)
    code = ("import bot, bot.config as c, bot.db as d, bot.templates as t, bot.doctor as doc\n"
            "print(bot.__file__)\n"
            "config = c.load_config()\n"
            "print(c.EXAMPLE_CONFIG, len(config.environments))\n"
            "print(sorted(d.migration_heads()))\n"
            "print(len(doc.manifest_scopes()))\n"
            "print(t._builtin('postmortem.md.j2').render is not None)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=elsewhere,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(site))  # the wheel's code, not the checkout's
    assert lines[1].startswith(str(site / "bot" / "data" / "opsbot.yml")) and not lines[1].endswith(" 0")
    assert lines[2] != "[]" and int(lines[3]) >= 10 and lines[4] == "True"
