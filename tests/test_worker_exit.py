"""A worker process of `opsbot serve` whose web process died, and a stop that its database holds up: it exits
(PostgreSQL only: real processes, through a TCP proxy that can stop answering)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.emulator.server import EmulatorServer
from tests.conftest import BACKEND_URL
from tests.test_alerts_replicas import eventually
from tests.test_jobs_durability import Replica, alive

pytestmark = pytest.mark.skipif(not BACKEND_URL.startswith("postgres"),
                                reason="the worker process runs on PostgreSQL only (TEST_DATABASE_URL)")
STOP_TIMEOUT = 5  # WORKER_STOP_TIMEOUT for this test (30 s by default)


async def test_an_orphaned_worker_exits_while_its_database_is_away(
        emulator: EmulatorServer, pg_via_proxy: tuple[str, Any], tmp_path: Path) -> None:
    """Its web process killed, the worker stops, also when its database does not answer: it used to start its
    job fetchers again and stay, taking jobs, for ever (a restarted replica then had two workers, one of them
    orphaned), or to wait for ever on a query."""
    url, proxy = pg_via_proxy
    replica = Replica(emulator, url, tmp_path)
    replica.env["WORKER_STOP_TIMEOUT"] = str(STOP_TIMEOUT)
    await replica.start()
    try:
        orphan = await replica.worker_pid()
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGKILL)
        proxy.stall()  # before the worker notices: it stops while its database does not answer
        await eventually(lambda: not alive(orphan), "the orphaned worker to exit", timeout=STOP_TIMEOUT + 10)
    finally:
        await replica.stop()
