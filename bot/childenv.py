"""The environment configured commands run with (rollback `command` providers, smoke suites).

Explicit, never inherited: a small base that programs need to run at all, plus the `env:` map the
config names for that command. Their output is posted to Slack, so a script that prints its
environment or runs with `set -x` can only reveal what its `env:` gave it (and that is scrubbed too)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from bot.config.secrets import EnvRef

# Passed through from opsbot's own environment when set; everything else must be named in `env:`.
BASE = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


def child_env(configured: Mapping[str, EnvRef], *, environ: Mapping[str, str] | None = None,
              where: str = "env") -> dict[str, str]:
    """BASE from `environ` (the process's by default) plus `configured`, its `${VAR}`s resolved now.

    Raises ConfigError naming the first unset variable (never a value)."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in BASE if name in source}
    for name, value in configured.items():
        env[name] = value.reveal(source, where=f"{where}.{name}")
    return env
