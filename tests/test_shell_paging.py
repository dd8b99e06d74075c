"""`opsbot shell` with paging: its PagerDuty, Opsgenie and SMTP stand-ins receive the pages, `:pages` and
`:mail` show them, and nothing leaves the machine whatever the config's addresses say."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.config import EXAMPLE_CONFIG
from bot.paging.providers import build
from bot.paging.providers.base import Notice
from bot.shell import SHELL_ROUTING_KEY, STAND_IN_ENV, open_shell

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]


def paging_config(tmp_path: Path, paging: dict[str, Any], inform: list[str] | None = None) -> Path:
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    data["paging"] = paging
    data.pop("escalation_policies", None)  # only what `inform` pages, whatever the example's policies say
    for item in [*data["severities"], *data.get("alerts", {}).get("rules", [])]:
        item.pop("escalation_policy", None)
    if inform is not None:
        data["severities"][0]["inform"] = inform
    path = tmp_path / "opsbot.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


VIA_ENV = {  # written as examples/opsbot.yml does: addresses from the environment, the shell sets them
    "pagerduty": {"events_url": "${OPSBOT_PAGERDUTY_URL:-https://events.pagerduty.com}",
                  "services": {"checkout": {"routing_key": "${PD_CHECKOUT_KEY}"}}},
    "email": {"host": "${SMTP_HOST:-smtp.acme.test}", "port": "${SMTP_PORT:-587}", "security": "starttls",
              "username": "${SMTP_USERNAME}", "password": "${SMTP_PASSWORD}", "from": "opsbot@acme.test"},
}


def test_shell_script_shows_the_pages_a_declaration_sends(tmp_path: Path) -> None:
    config = paging_config(tmp_path, VIA_ENV, inform=["pagerduty:checkout", "email:vp@acme.test"])
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "OPSBOT_CONFIG", "PD_CHECKOUT_KEY", "SMTP_USERNAME", "SMTP_PASSWORD",
                        *STAND_IN_ENV)}
    script = (":pages\n:mail\n/incident open P1 Checkout is down\n:pages\n:mail\n"
              ":pagerduty ack opsbot-incident-1 Bob\n:pages\n")
    result = subprocess.run([sys.executable, "-m", "bot", "shell", "--config", str(config),
                             "--database", f"sqlite:///{tmp_path / 's.db'}"],
                            input=script, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Paging goes to local stand-ins: PagerDuty http://127.0.0.1:" in out
    before, _, after = out.partition("/incident open P1")
    after, _, acked = after.partition(":pagerduty ack")
    assert "PagerDuty, Opsgenie and the webhooks have received nothing yet." in before
    assert "The SMTP stand-in has received no mail yet." in before
    assert "PagerDuty received 1 event(s):" in after
    assert "trigger     opsbot-incident-1  INC-1 · P1 · Checkout is down" in after
    assert "alert opsbot-incident-1: triggered" in after
    assert "1. To: vp@acme.test · Subject: INC-1 · P1 · Checkout is down" in after
    assert "Severity: P1 (urgent)" in after
    # PagerDuty's signed webhook reaches opsbot's /webhooks/pagerduty, which acknowledges the incident
    assert "PagerDuty's webhook: opsbot answered HTTP 202" in acked
    assert "PagerDuty (Bob) acknowledged INC-1" in acked
    assert "alert opsbot-incident-1: acknowledged" in acked


async def test_shell_pages_stay_local_and_the_commands_list_what_arrived(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*STAND_IN_ENV, "PD_CHECKOUT_KEY", "OG_KEY", "HOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    real = {  # a production config: the shell must not reach any of these
        "pagerduty": {"events_url": "https://events.pagerduty.com",
                      "services": {"checkout": {"routing_key": "${PD_CHECKOUT_KEY}"}}},
        "opsgenie": {"api_url": "https://api.eu.opsgenie.com", "api_key": "${OG_KEY}"},
        "email": {"host": "smtp.acme.test", "port": 465, "security": "tls", "from": "opsbot@acme.test"},
        "webhooks": {"bridge": {"url": "https://hooks.acme.test/opsbot", "secret": "${HOOK_SECRET}"}},
    }
    out = io.StringIO()
    shell = await open_shell(config_file=paging_config(tmp_path, real), database_url=f"sqlite:///{tmp_path / 's.db'}",
                             user="alice", out=out)
    try:
        assert shell.stand_ins is not None
        assert os.environ["OPSBOT_PAGERDUTY_URL"] == shell.stand_ins.pagerduty.url
        assert os.environ["SMTP_PORT"] == str(shell.stand_ins.mail.port)
        providers = build(shell.app.deps.config.paging, shell.app.deps.http)
        page = Notice(subject="incident:5", dedup_key="opsbot-incident-5", action="trigger",
                      title="INC-5 · P2 · Search is slow", severity="P2", urgent=False,
                      text="p95 is 4 s.\nSecond line.", link="https://slack.com/app_redirect?channel=C1")
        for action in ("trigger", "acknowledge", "resolve"):
            await providers["pagerduty"].send("checkout", replace(page, action=action))
        await providers["opsgenie"].send("search", page)
        await providers["email"].send("oncall@acme.test", page)
        await providers["webhook"].send("bridge", page)
        await shell.handle(":pages")
        await shell.handle(":mail")
        assert shell.stand_ins.pagerduty.state.events[0].body["routing_key"] == SHELL_ROUTING_KEY
    finally:
        await shell.close()
    text = out.getvalue()
    assert "PagerDuty received 3 event(s):" in text
    for action in ("trigger    ", "acknowledge", "resolve    "):
        assert f"{action} opsbot-incident-5  INC-5 · P2 · Search is slow" in text
    assert "alert opsbot-incident-5: resolved" in text
    assert "create      opsbot-incident-5  Created alert" in text
    assert "1. To: oncall@acme.test · Subject: INC-5 · P2 · Search is slow" in text
    assert "p95 is 4 s." in text
    assert "trigger     opsbot-incident-5  INC-5 · P2 · Search is slow  → bridge" in text
    assert "bad signature" not in text
    assert not any(name in os.environ for name in STAND_IN_ENV)  # forgotten again when the shell closes
