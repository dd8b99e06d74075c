"""`opsbot demo`: the demo targets' endpoints (the app's health, the auth guard, payments with its bearer token,
the flag admin API, the pool metric, :break/:fix), ./scripts/smoke against them, and the demo itself as a
subprocess on a piped script: /health healthy, a kill switch engaged and released, a rollback approved by
another user and verified, :break api showing the failing check and its reason, an alert fired by
:break latency + :tick and resolved by :fix latency + :tick, the smoke suite passing and failing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.config import load_config
from bot.demo.main import DEMO_CONFIG, demo_environment
from bot.demo.targets import DemoTargets
from bot.shell import STAND_IN_ENV

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def targets() -> AsyncIterator[DemoTargets]:
    started = await DemoTargets().start()
    yield started
    await started.stop()


async def test_the_app_answers_healthy_and_break_fix_change_its_answers(targets: DemoTargets) -> None:
    async with httpx.AsyncClient(base_url=targets.url) as http:
        health = await http.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "healthy", "database": "connected"})
        assert (await http.get("/")).status_code == 200
        assert (await http.get("/api/admin/users")).status_code == 401
        assert (await http.get("/payments/health")).status_code == 401
        payments = await http.get("/payments/health", headers={"Authorization": f"Bearer {targets.payments_token}"})
        assert payments.json()["checks"] == {"database": "ok"}
        assert (await http.get("/internal/pool")).json() == {"pool": {"checked_out": 6, "size": 20}}

        targets.break_("api")
        targets.break_("latency")
        broken = await http.get("/health")
        assert broken.status_code == 503
        assert broken.json() == {"status": "unhealthy", "database": "disconnected", "error": "Connection refused"}
        assert (await http.get("/internal/pool")).json()["pool"]["checked_out"] == 19
        assert targets.fix("all") and not targets.fix("api")
        assert (await http.get("/health")).status_code == 200
    with pytest.raises(KeyError):
        targets.break_("nonsense")


async def test_the_flag_admin_api_keeps_what_it_is_sent(targets: DemoTargets) -> None:
    auth = {"Authorization": f"Bearer {targets.admin_token}"}
    async with httpx.AsyncClient(base_url=targets.url) as http:
        assert (await http.post("/api/admin/feature-flags", json={"name": "checkout"})).status_code == 401
        changed = await http.post("/api/admin/feature-flags", headers=auth,
                                  json={"name": "checkout", "kill_switch": True, "rollout_percentage": 50})
        assert changed.json() == {"name": "checkout", "enabled": True, "kill_switch": True, "rollout_percentage": 50}
        listed = (await http.get("/api/admin/feature-flags", headers=auth)).json()
        assert listed == {"flags": [changed.json()]}
        assert (await http.post("/api/admin/feature-flags", headers=auth, json=[1])).status_code == 400
        targets.break_("flags")
        assert (await http.get("/api/admin/feature-flags", headers=auth)).status_code == 503


def test_the_demo_config_loads_with_the_demo_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        url = "http://127.0.0.1:9"

        def env(self) -> dict[str, str]:
            return {"DEMO_URL": self.url, "DEMO_ADMIN_TOKEN": "admin-token-x", "DEMO_PAYMENTS_TOKEN": "pay-token-x"}

    for name, value in demo_environment(Fake(), 9999).items():  # type: ignore[arg-type]
        monkeypatch.setenv(name, value)
    config = load_config(DEMO_CONFIG)
    assert config.environments["prod"].checks[0].url.reveal() == "http://127.0.0.1:9/health"
    assert os.environ["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


async def smoke(*args: str, base: str | None = None) -> tuple[int, str]:
    env = {"PATH": os.environ["PATH"], **({"SMOKE_BASE_URL": base} if base else {})}
    process = await asyncio.create_subprocess_exec(str(ROOT / "scripts" / "smoke"), *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_scripts_smoke_passes_on_healthy_urls_and_fails_with_the_reason(targets: DemoTargets) -> None:
    code, out = await smoke("--env", "prod", base=targets.url)
    assert code == 0, out
    assert f"PASS  {targets.url}/health  HTTP 200 status=healthy" in out and "smoke prod: passed (1/1" in out
    targets.break_("api")
    code, out = await smoke("--env", "prod", "--url", f"{targets.url}/health", "--url", f"{targets.url}/")
    assert code == 1
    assert "FAIL" in out and "HTTP 503 status=unhealthy, database=disconnected, error=Connection refused" in out
    assert "smoke prod: FAILED (1/2 URLs healthy)" in out
    code, out = await smoke("--url", "http://127.0.0.1:9/health")
    assert code == 1 and "unreachable" in out
    code, out = await smoke()
    assert code == 2 and "SMOKE_BASE_URL" in out


SCRIPT = """/health
/killswitch checkout on
1
/killswitch checkout off
3
/rollback api prod
v1.4.1
the demo rolls back
:user carol
5
:user alice
:break api
/health prod
/health smoke checkout-e2e
:fix api
:break latency
:tick
:fix latency
:tick
:targets
"""


def test_the_demo_on_a_piped_script_succeeds_at_every_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "OPSBOT_CONFIG", "DEPLOYS_TOKEN", *STAND_IN_ENV)
           and not k.startswith("DEMO_")}
    env["OPSBOT_SHELL_STATE"] = str(tmp_path / "state")
    result = subprocess.run([sys.executable, "-m", "bot", "demo"], input=SCRIPT, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env=env)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in out + result.stderr
    steps = out.split("alice@#general> ")
    assert "✅ *prod* is healthy · all 4 checks pass" in steps[1]
    assert "✅ Kill switch engaged (feature off): `checkout` in *prod* by @alice" in out
    assert "✅ Kill switch released: `checkout` in *prod* by @alice" in out
    assert "Rollback #1 of `api` in *prod* to `v1.4.1` requested; it needs 1 approval(s)" in out
    assert "@carol approved (1/1)." in out
    assert "api in prod is now at v1.4.1 (demo: nothing was changed)" in out
    assert "✅ Rolled back `api` in *prod* to `v1.4.1` and verified." in out
    broken = next(step for step in steps if step.startswith("/health prod"))
    assert "❌ *prod* is unhealthy · 1 of 4 checks failing" in broken
    assert "❌ *api*" in broken and "status=unhealthy · database=disconnected · error=Connection refused" in broken
    smoke_step = next(step for step in steps if step.startswith("/health smoke"))
    assert "❌ Smoke suite *checkout-e2e* on *prod* failed: exit code 1" in smoke_step
    assert "smoke prod: FAILED (0/1 URLs healthy)" in smoke_step
    fired = out.index("CRITICAL · db_pool_usage")
    assert out.index("RESOLVED · db_pool_usage") > fired > out.index(":break latency")
    assert "✅ Resolved at 30%" in out
    assert "nothing is broken" in steps[-2]
