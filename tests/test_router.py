"""commands.router: one bolt listener per kind, dispatch by id, registration mistakes refused at start-up."""

from __future__ import annotations

import re
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp

from commands.router import Router


def make_app() -> AsyncApp:
    async def authorize(**_kwargs: Any) -> None:
        return None

    return AsyncApp(signing_secret="secret", authorize=authorize, process_before_response=True)


async def handler(ack: Any) -> None:
    await ack()


def test_one_listener_per_kind_whatever_the_number_of_ids() -> None:
    app = make_app()
    router = Router(app)
    for name in ("/a", "/b", "/c"):
        router.command(name)(handler)
    router.action("x")(handler)
    router.action("y")(handler)
    router.install()
    assert len(app._async_listeners) == 2
    assert router.routed("command") == ["/a", "/b", "/c"]


def test_the_same_id_twice_is_a_start_up_error() -> None:
    router = Router(make_app())
    router.action("confirm")(handler)
    with pytest.raises(ValueError, match="two handlers for action 'confirm'"):
        router.action("confirm")(handler)


@pytest.mark.parametrize("args", [(re.compile("x.*"),), ({"type": "block_actions", "action_id": "x"},)])
def test_patterns_and_constraints_are_refused(args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match="plain string id"):
        Router(make_app()).action(*args)


def test_unrouted_listener_kinds_are_refused() -> None:
    with pytest.raises(TypeError, match="not routed"):
        Router(make_app()).view_closed("modal")


def test_other_app_attributes_pass_through() -> None:
    app = make_app()
    assert Router(app).client is app.client
