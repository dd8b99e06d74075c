"""Block Kit ids of the rollback family, used by handlers and renderers alike."""

from __future__ import annotations

from enum import StrEnum


class Ids(StrEnum):
    REQUEST = "rollback.request"  # callback_id of the request modal
    VERSION_BLOCK = "rollback_version"
    VERSION = "version"
    REASON_BLOCK = "rollback_reason"
    REASON = "reason"
    OTHER_VERSION_BLOCK = "rollback_other_version"  # beside the choices: a version typed by hand
    OTHER_VERSION = "other_version"
    CONFIRM_BLOCK = "rollback_confirm"  # destructive targets: the service's name, typed
    CONFIRM = "confirm"
    FROM_DEPLOY = "rollback.from_deploy"  # the Roll back button under a failed deploy
    APPROVE = "rollback.approve"
    REJECT = "rollback.reject"
    ACTIONS_BLOCK = "rollback_actions"
