"""Kill switches and feature flags: resolve a flag to its store, read it, and flip it safely —
permitted, confirmed by the same user within minutes, verified by reading back, audited, and put on
the timeline of the incident whose channel it was run in.

- `targets`: which flag and store a user means, reading flags live (`read_all`), GET /flags's rows.
- `changes`: propose, confirm, cancel, apply; the `FlagNotifier` the Slack layer implements."""

from __future__ import annotations

from bot.flags.changes import (
    CONFIRM_TTL,
    PENDING_KIND,
    Confirmed,
    FlagNotifier,
    Outcome,
    Proposal,
    cancel,
    confirm,
    handled,
    request_change,
)
from bot.flags.targets import (
    PROVIDERS,
    Row,
    Target,
    builtin_rows,
    check_change,
    describe_change,
    environment_names,
    find_flag,
    flag_names,
    provider_for,
    read,
    read_all,
    resolve,
    supported_fields,
)
from bot.providers.flags_base import FlagChange, FlagState

__all__ = [
    "CONFIRM_TTL", "PENDING_KIND", "PROVIDERS", "Confirmed", "FlagChange", "FlagNotifier", "FlagState", "Outcome",
    "Proposal", "Row", "Target", "builtin_rows", "cancel", "check_change", "confirm", "describe_change",
    "environment_names", "find_flag", "flag_names", "handled", "provider_for", "read", "read_all",
    "request_change", "resolve", "supported_fields",
]
