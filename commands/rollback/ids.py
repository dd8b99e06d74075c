"""Block Kit ids of the rollback family, used by handlers and renderers alike."""

from __future__ import annotations

from enum import StrEnum


class Ids(StrEnum):
    REQUEST = "rollback.request"  # callback_id of the request modal
    VERSION_BLOCK = "rollback_version"
    VERSION = "version"
    REASON_BLOCK = "rollback_reason"
    REASON = "reason"
    APPROVE = "rollback.approve"
    REJECT = "rollback.reject"
    ACTIONS_BLOCK = "rollback_actions"
