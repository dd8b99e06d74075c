"""`type: tcp` checks: the port accepts a connection."""

from __future__ import annotations

import asyncio
import contextlib

from bot.config.health import TcpCheck
from bot.providers.checks_common import Probe, os_reason


async def probe_tcp(check: TcpCheck) -> Probe:
    try:
        _reader, writer = await asyncio.open_connection(check.host, check.port)
    except OSError as exc:
        return Probe("fail", os_reason(exc) or "cannot connect")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Probe("ok", f"{check.host}:{check.port} reachable")
