"""Block Kit ids for kill switches and flags."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    CONFIRM = "flags.confirm"
    CANCEL = "flags.cancel"
