"""The incident update modal's "Publish to status page" part: a checkbox and its own public message
(prefilled with the message for the incident's public status, editable). Pure, but for `defer_publish`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.config import Config
from bot.errors import DependencyDown
from bot.models import Incident
from bot.statuspage import state as st
from bot.statuspage.text import MAX_TEXT
from commands import blocks as bk
from commands.common import defer
from commands.incident import modals
from commands.statuspage.ids import PUBLISH_VALUE, Field

log = logging.getLogger(__name__)
PUBLISH_JOB = "statuspage.publish"
# Statuspage's own templates: what a status means to a customer.
SUGGESTED = {"investigating": "We are investigating an issue affecting {components}.",
             "identified": "The issue has been identified and a fix is being implemented.",
             "monitoring": "A fix has been implemented and we are monitoring the results.",
             "resolved": "This incident has been resolved."}


def enabled(config: Config) -> bool:
    return config.status_page is not None and config.status_page.enabled


def suggestion(config: Config, incident: Incident) -> str:
    page = config.status_page
    status = st.public_status(incident.status)
    components: tuple[str, ...] = ()
    if page is not None:
        from bot.statuspage.queries import facts

        components = st.linked_components(page, facts(incident))
    template = page.declare_message if page is not None and status == "investigating" else SUGGESTED[status]
    return template.replace("{components}", ", ".join(components) or "our services")


def publish_blocks(config: Config, incident: Incident) -> list[dict[str, Any]]:
    option = bk.option("Publish to status page", PUBLISH_VALUE, "Customers read the message below, not the update")
    return [
        {"type": "input", "block_id": Field.PUBLISH, "optional": True, "label": bk.plain("Status page"),
         "element": {"type": "checkboxes", "action_id": Field.PUBLISH, "options": [option]}},
        bk.text_input(Field.MESSAGE, Field.MESSAGE, "Public message", multiline=True, optional=True,
                      initial=suggestion(config, incident), max_length=MAX_TEXT),
    ]


def update_modal(config: Config) -> Callable[[Incident, str | None], dict[str, Any]]:
    """The incident update modal, with the status page's part when the page is on."""

    def build(incident: Incident, channel: str | None = None) -> dict[str, Any]:
        view = modals.update_modal(incident, channel)
        if enabled(config):
            view["blocks"] = [*view["blocks"], *publish_blocks(config, incident)]
        return view

    return build


def parse_publish(config: Config, view: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """(the public message when "Publish" is ticked, inline errors)."""
    if not enabled(config):
        return None, {}
    values = (view.get("state") or {}).get("values") or {}
    element = (values.get(Field.PUBLISH) or {}).get(Field.PUBLISH) or {}
    ticked = any(o.get("value") == PUBLISH_VALUE for o in element.get("selected_options") or [])
    if not ticked:
        return None, {}
    message = (bk.state_value(values, Field.MESSAGE, Field.MESSAGE) or "").strip()
    if not message:
        return None, {Field.MESSAGE: "Write the message customers will read (or untick “Publish”)."}
    return message, {}


async def defer_publish(deps: Any, *, once: str | None, user: str, channel: str | None, incident_id: int,
                        status: str | None, text: str) -> None:
    """Enqueue the publication beside the internal update (its own job, once per submission)."""
    try:
        await defer(deps, PUBLISH_JOB, once=f"{once}:publish" if once else None, user=user, channel=channel,
                    response_url=None, incident_id=incident_id, status=status, text=text,
                    key=f"{once}:publish" if once else None)
    except DependencyDown as exc:
        log.warning("the status page publication was not stored: %s", exc)
