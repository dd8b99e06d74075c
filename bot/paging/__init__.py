"""Reaching people: escalation policies, on-call targets and paging providers (issue 16)."""
