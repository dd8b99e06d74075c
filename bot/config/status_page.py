"""`status_page:` — the public status page opsbot serves (GET /status) and, optionally, a hosted Statuspage.

A component is driven by environments (their monitor's state), by named checks, or by the checks tagged with
a service (`services: [api]` on a check); an open incident whose service or environment names it overrides
that state. Only what is written for the public (`/incident publish`, the modals' public message, the
declare/resolve messages below) and the component names and descriptions reach the page."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from bot.config.base import Model
from bot.config.secrets import EnvRef
from bot.durations import Duration

ComponentStatus = Literal["operational", "degraded_performance", "partial_outage", "major_outage"]


class Component(Model):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    group: str | None = Field(default=None, max_length=100)
    environments: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)  # check names, in the environments listed (or any)
    services: list[str] = Field(default_factory=list)  # checks tagged `services:` and incidents' service


class Hosted(Model):
    """An Atlassian Statuspage mirroring the components and the public updates."""

    page_id: str = Field(min_length=1, max_length=64)
    api_key: EnvRef
    api_url: str = "https://api.statuspage.io/v1"
    components: dict[str, str] = Field(default_factory=dict)  # our component name -> Statuspage component id
    deliver_notifications: bool = True


class StatusPage(Model):
    enabled: bool = True
    title: str = Field(default="Status", max_length=100)
    # The page's public address (feed links, the shell's `status` line); relative links without it.
    url: str | None = None
    components: list[Component] = Field(default_factory=list)
    history: Duration = timedelta(days=90)
    # What is public: incident titles are internal unless this says otherwise (the page then names the
    # affected components instead).
    public_titles: bool = False
    uptime_bars: bool = True
    # Declaring and resolving publish these (empty: only what is published by hand reaches the page).
    declare_message: str = "We are investigating an issue affecting {components}."
    resolve_message: str = "This incident has been resolved."
    publish_on_declare: bool = False
    publish_on_resolve: bool = True
    # The component state an open incident imposes, by severity name (others: partial_outage).
    incident_states: dict[str, ComponentStatus] = Field(default_factory=dict)
    # Only an incident that has a public update changes a component's state on the page.
    only_published: bool = True
    cache_seconds: int = Field(default=30, ge=0, le=3600)
    hosted: Hosted | None = None

    @model_validator(mode="after")
    def _unique(self) -> StatusPage:
        names = [c.name.lower() for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError("status_page.components: names must be unique (case-insensitive)")
        unknown = [n for n in (self.hosted.components if self.hosted else {}) if n.lower() not in names]
        if unknown:
            raise ValueError(f"status_page.hosted.components: no component named {', '.join(unknown)}")
        return self

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name.lower() == name.lower()), None)
