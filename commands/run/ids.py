"""Block Kit ids of the `/run` family, used by handlers and renderers alike."""

from __future__ import annotations

from enum import StrEnum


class Ids(StrEnum):
    CONFIRM = "run.confirm"  # value: the run id
    CANCEL = "run.cancel"
    APPROVE = "run.approve"
    REJECT = "run.reject"
    ACTIONS_BLOCK = "run_actions"
