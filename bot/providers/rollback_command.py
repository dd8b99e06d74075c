"""`provider: command` — a configured argv, run without a shell, killed when it runs too long.

Placeholders are filled only from validated values: service and environment are names from
opsbot.yml, versions match VERSION_RE, the reason only goes where the argv asks for it (and never
as an argument of its own, so it cannot become an option)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from bot.childenv import child_env
from bot.config.rollbacks import CommandRunner
from bot.durations import format_duration
from bot.errors import ProviderError
from bot.providers.rollback_base import (
    OUTPUT_LIMIT,
    Progress,
    Provider,
    RollbackOutcome,
    RollbackRequest,
    register,
)

READ_CHUNK = 8192
# Bytes of output kept while reading. The text is scrubbed, then cut to OUTPUT_LIMIT characters: the bytes
# must always hold more than twice that many characters (≤ 4 bytes each), so a secret the byte cut split
# is in the part the character cut drops.
KEPT_BYTES = OUTPUT_LIMIT * 8


@register("command")
class CommandProvider(Provider):
    config: CommandRunner

    def argv(self, request: RollbackRequest) -> list[str]:
        return [request.fill(arg) for arg in self.config.argv]

    async def run(self, request: RollbackRequest, progress: Progress) -> RollbackOutcome:
        cfg = self.config
        argv = self.argv(request)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, cwd=cfg.cwd,
                env=child_env(cfg.env, environ=self.environ),  # explicit: base variables and its `env:`
                start_new_session=True,  # its own process group, so a timeout kills its children too
            )
        except OSError as exc:
            raise ProviderError(f"Could not start `{argv[0]}`: {exc.strerror or type(exc).__name__}.") from None
        await progress(f"Started `{argv[0]}` (pid {process.pid}).")
        output = bytearray()
        reader = asyncio.create_task(_read(process, output))
        try:
            async with asyncio.timeout(cfg.timeout.total_seconds()):
                await asyncio.shield(reader)
                code = await process.wait()
        except TimeoutError:
            _kill(process)
            await process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, timeout=5)
            text = output.decode(errors="replace")  # build_runner scrubs it, then cuts it to OUTPUT_LIMIT
            return RollbackOutcome("failed", f"`{argv[0]}` did not finish within {format_duration(cfg.timeout)} "
                                             "and was killed.", output=text)
        finally:
            if not reader.done():
                reader.cancel()
        text = output.decode(errors="replace")  # scrubbed before it is cut: no half secret at the cut
        if code == 0:
            return RollbackOutcome("succeeded", f"`{argv[0]}` exited with status 0.", output=text)
        return RollbackOutcome("failed", f"`{argv[0]}` exited with status {code}.", output=text)


async def _read(process: asyncio.subprocess.Process, output: bytearray) -> None:
    """Collect output, keeping only the last KEPT_BYTES bytes of a chatty command."""
    assert process.stdout is not None
    while chunk := await process.stdout.read(READ_CHUNK):
        output.extend(chunk)
        if len(output) > KEPT_BYTES:
            del output[: len(output) - KEPT_BYTES]


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
