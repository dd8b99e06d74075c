"""commands.router: one bolt listener per kind, dispatch by id (injecting context values like `deps`),
registration mistakes refused at start-up."""

from __future__ import annotations

import re
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult

from commands.router import Router


def make_app() -> AsyncApp:
    async def authorize(**_kwargs: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-test", bot_user_id="UBOT",
                               bot_id="BBOT")

    return AsyncApp(signing_secret="secret", authorize=authorize, process_before_response=True)


async def handler(ack: Any) -> None:
    await ack()


def test_one_listener_per_kind_whatever_the_number_of_ids() -> None:
    app = make_app()
    router = Router()
    for name in ("/a", "/b", "/c"):
        router.command(name)(handler)
    router.action("x")(handler)
    router.action("y")(handler)
    router.install(app)
    assert len(app._async_listeners) == 2
    assert router.routed("command") == ["/a", "/b", "/c"]


def test_the_same_id_twice_is_a_start_up_error() -> None:
    router = Router()
    router.action("confirm")(handler)
    with pytest.raises(ValueError, match="two handlers for action 'confirm'"):
        router.action("confirm")(handler)


@pytest.mark.parametrize("args", [(re.compile("x.*"),), ({"type": "block_actions", "action_id": "x"},)])
def test_patterns_and_constraints_are_refused(args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError, match="plain string id"):
        Router().action(*args)


def test_only_the_routed_kinds_exist() -> None:
    assert not hasattr(Router(), "view_closed") and not hasattr(Router(), "middleware")


async def test_the_listener_bolt_matched_runs_with_context_values_injected() -> None:
    from slack_bolt.request.async_request import AsyncBoltRequest

    app = make_app()
    seen: list[tuple[str, object]] = []

    async def inject(context: Any, next: Any) -> Any:
        context["deps"] = "the deps"
        return await next()

    async def b_command(ack: Any, command: dict[str, Any], deps: object) -> None:
        seen.append((command["command"], deps))
        await ack()

    app.use(inject)
    router = Router()
    router.command("/a")(handler)
    router.command("/b")(b_command)
    router.install(app)
    body = {"command": "/b", "text": "", "team_id": "T1", "user_id": "U1", "channel_id": "C1",
            "response_url": "http://127.0.0.1:9/r", "trigger_id": "1.2.3"}
    response = await app.async_dispatch(AsyncBoltRequest(body=body, mode="socket_mode"))
    assert response.status == 200
    assert seen == [("/b", "the deps")]
