"""`opsbot shell` with a `status_page:` in the config serves opsbot's pages on loopback and says where."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.backend_independent  # its own SQLite database or none (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[1]


async def test_the_shell_shows_the_status_page_url_and_the_page_answers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OPSBOT_CONFIG")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "shell", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stdout is not None
    try:
        url = None
        async with asyncio.timeout(60):
            while url is None:
                line = (await proc.stdout.readline()).decode()
                assert line, "the shell ended before it named the status page"
                found = re.search(r"Status page: (http://127\.0\.0\.1:\d+/status)", line)
                url = found.group(1) if found else None
        async with httpx.AsyncClient(timeout=10) as http:
            page = await http.get(url)
            assert page.status_code == 200 and "Acme status" in page.text  # examples/opsbot.yml's title
            assert "Acme status" in (await http.get(url + ".json")).text
        proc.stdin.write(b":quit\n")
        await proc.stdin.drain()
        proc.stdin.close()
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
