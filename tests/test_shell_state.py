"""`opsbot shell` as a subprocess on piped scripts: a fresh database and emulated Slack by default, `--keep`
continues both (an old incident's channel is still there, channel ids are not reused), `:reset` starts
over; `:channels` lists the channels; a form that fails validation is asked again with what was typed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import EXAMPLE_CONFIG, load_config
from bot.shell import STAND_IN_ENV
from commands.incident.modals import declare_modal

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)


def shell(tmp_path: Path, script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "OPSBOT_CONFIG", "PD_CHECKOUT_KEY", *STAND_IN_ENV)}
    env["OPSBOT_SHELL_STATE"] = str(tmp_path / "state")
    result = subprocess.run([sys.executable, "-m", "bot", "shell", *args], input=script, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def channel_ids(tmp_path: Path) -> dict[str, str]:
    data = json.loads((tmp_path / "state" / "opsbot-shell.db.slack.json").read_text(encoding="utf-8"))
    return {c["name"]: c["id"] for c in data["channels"]}


def test_keep_continues_the_database_and_the_workspace_and_reset_starts_over(tmp_path: Path) -> None:
    first = shell(tmp_path, "/incident open P1 Checkout down\n", "--keep")
    assert "Kept between runs (--keep)" in first and "Declared *INC-1* (P1)" in first
    inc1 = channel_ids(tmp_path)["inc-1-checkout-down"]

    second = shell(tmp_path, ":channel inc-1-checkout-down\n/incident show\n/incident open P2 Search slow\n",
                   "--keep")
    assert "now in #inc-1-checkout-down" in second
    assert re.search(r"INC-1 · P1\b[^·]* · Checkout down", second.partition("/incident show")[2])
    assert "Declared *INC-2* (P2)" in second
    ids = channel_ids(tmp_path)
    assert ids["inc-1-checkout-down"] == inc1 and ids["inc-2-search-slow"] != inc1
    assert len(set(ids.values())) == len(ids)

    third = shell(tmp_path, ":reset\n:channel inc-1-checkout-down\n/incident open P3 Docs typo\n", "--keep")
    after = third.partition("Starting over")[2]
    assert "no channel #inc-1-checkout-down" in after and "Declared *INC-1* (P3)" in after
    assert set(channel_ids(tmp_path)) >= {"inc-1-docs-typo"} and "inc-2-search-slow" not in channel_ids(tmp_path)


def declare_fields() -> list[str]:
    """The declare modal's inputs (block ids), in order, as the example config shows it."""
    view = declare_modal(load_config(EXAMPLE_CONFIG), user_id="U0ALICE01")
    return [b["block_id"] for b in view["blocks"] if b.get("type") == "input"]


def test_a_fresh_run_lists_channels_asks_a_rejected_form_again_and_the_next_run_starts_over(
        tmp_path: Path) -> None:
    fields = declare_fields()
    first = {fields[1]: "2", fields[2]: "checkout", fields[5]: "Customers see errors"}
    assert fields[0] == "title" and fields[5] == "description"
    script = (":channels\n"
              "/incident\n"  # the declare modal: no title → asked again, keeping what was typed
              + "".join(first.get(f, "") + "\n" for f in fields)
              + "Checkout down\n" + "\n" * (len(fields) - 1) +
              ":channel inc-1-checkout-down\n/incident assign @bob\n:channels\n")
    out = shell(tmp_path, script)
    listing, _, rest = out.partition("/incident\n")
    assert "*#general" in listing and "#incidents" in listing and "#alerts" in listing and "now in" not in listing
    form, _, rest = rest.partition(":channel inc-1")
    assert "! Give the incident a short title" in form
    assert "asked again with what you typed" in form
    assert "Description (optional) [Customers see errors]: " in form and "Severity [P2" in form
    assert re.search(r"INC-1 · P2\b[^·]* · Checkout down", form)
    assert "Customers see errors" in form.rpartition("[modal")[2]
    assert "Usage" not in rest and "@bob" in rest  # `/incident assign @bob` works as the README says
    assert "*#inc-1-checkout-down" in rest.rpartition(":channels")[2]
    assert "A fresh database and emulated Slack for this run" in out

    second = shell(tmp_path, ":channel inc-1-checkout-down\n/incident open P2 Search slow\n")
    assert "no channel #inc-1-checkout-down" in second and "Declared *INC-1* (P2)" in second
    assert not (tmp_path / "state" / "opsbot-shell.db").exists()
    assert not list(tmp_path.glob("*.db"))  # nothing left in the working directory either
