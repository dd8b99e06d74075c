"""Block Kit ids of the runbook checklists."""

from __future__ import annotations

from enum import StrEnum


class Ids(StrEnum):
    DONE = "runbook.done"  # value: "<runbook_run_id>:<step index>:<runbook name>"
    SKIP = "runbook.skip"
    RUN = "runbook.run"
    STEP_BLOCK = "runbook_step"  # + "_<index>"
