"""The environment configured commands run with (rollback `command` providers, smoke suites): the
process's own, minus opsbot's secrets. Their output is posted to Slack, so a script that prints its
environment or runs with `set -x` must not be able to reveal the bot token or the database password."""

from __future__ import annotations

import os
from collections.abc import Mapping

# opsbot's own settings (bot/settings.py) that are secrets or point at its database.
OPSBOT_SECRETS = frozenset({
    "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DATABASE_URL", "DEPLOYS_TOKEN",
    "ALERTMANAGER_TOKEN",
})


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    source = os.environ if base is None else base
    return {key: value for key, value in source.items() if key.upper() not in OPSBOT_SECRETS}
