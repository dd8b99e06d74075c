"""What a page says and what every paging provider does with it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import DependencyDown, OpsbotError

Action = Literal["trigger", "acknowledge", "resolve"]


@dataclass(frozen=True)
class Notice:
    subject: str  # "incident:12", "alert:checkout-p95", "manual:3"
    dedup_key: str  # the same for a subject's trigger, acknowledge and resolve: opsbot-incident-12
    action: Action
    title: str  # "INC-12 · P1 · Checkout is down"
    severity: str  # opsbot's severity name (P1) or an alert level (critical, warning)
    urgent: bool  # the most severe level(s): wakes people up
    text: str  # plain text body
    link: str | None = None  # the Slack channel (https://slack.com/app_redirect?channel=C…)
    details: dict[str, str] = field(default_factory=dict)
    # The severity's place in `severities:` (0 = most severe) when known: PagerDuty's and Opsgenie's levels.
    rank: int | None = None
    # The page's own key (one per recipient and escalation step): e-mail ids differ between pages of one subject
    # (a mailbox drops a repeated Message-ID) and stay the same across retries of one page.
    page_key: str | None = None


@dataclass(frozen=True)
class Delivery:
    reference: str | None  # the provider's id for what it made (dedup key, request id, Message-ID)
    detail: str = ""


class PageRejected(OpsbotError):
    """The provider refused the page (a wrong key, an invalid event): final, not retried."""


class Throttled(DependencyDown):
    """The provider asked to slow down (HTTP 429): transient; `retry_after` seconds when it said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Provider(ABC):
    kind: str

    @abstractmethod
    async def send(self, name: str, notice: Notice) -> Delivery:
        """Deliver `notice` to `name` (a service, team, address or webhook name). Raises DependencyDown for
        what may work on a retry (no answer, 5xx, 429) and PageRejected for a refusal; never a secret in
        either message."""


_LEVELS = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def rank(notice: Notice) -> int | None:
    """How severe `notice` is, 0 = most: its `rank`, else an alert level, else the number in P2/SEV-2/S2."""
    if notice.rank is not None:
        return max(notice.rank, 0)
    name = notice.severity.strip().lower()
    if name in _LEVELS:
        return _LEVELS[name]
    digits = "".join(c for c in name if c.isdigit())
    return max(int(digits) - 1, 0) if digits and len(digits) <= 2 else None
