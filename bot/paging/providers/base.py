"""What a page says and what every paging provider does with it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import OpsbotError

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


@dataclass(frozen=True)
class Delivery:
    reference: str | None  # the provider's id for what it made (dedup key, request id, Message-ID)
    detail: str = ""


class PageRejected(OpsbotError):
    """The provider refused the page (a wrong key, an invalid event): final, not retried."""


class Provider(ABC):
    kind: str

    @abstractmethod
    async def send(self, name: str, notice: Notice) -> Delivery:
        """Deliver `notice` to `name` (a service, team, address or webhook name). Raises DependencyDown for
        what may work on a retry (no answer, 5xx, 429) and PageRejected for a refusal; never a secret in
        either message."""
