"""Requests no Slack client sends, through the real HTTP stack: each is a 401, 400 or 413 (never a 500) with one
short log line, bodies are limited while they are read, NUL characters and out-of-range ids are answered
clearly before anything reaches the database."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import func, select

from bot import inbound
from bot.emulator.harness import SIGNING_SECRET, BotHarness
from bot.emulator.signing import sign
from bot.models import Incident
from commands import alerts, deploys
from commands.common import GENERIC_FAILURE, MAX_ID
from commands.incident.ids import Callback, Field

FORM = "application/x-www-form-urlencoded"
COMMAND = b"command=%2Fopsbot&text=help&user_id=U0ALICE01&trigger_id=1.2.3&channel_id=C1"


def _refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.inbound"]


def _assert_one_short_line(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    records = _refusals(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.exc_info is None and len(record.getMessage()) < 200
    for word in words:
        assert word in record.getMessage()
    caplog.clear()


async def _post(bot: BotHarness, body: bytes, headers: dict[str, Any], path: str = "/slack/events") -> Any:
    assert bot.http is not None
    return await bot.http.post(path, content=body, headers=headers)


def _signed(body: bytes, content_type: str = FORM) -> dict[str, str]:
    return {"Content-Type": content_type, **sign(SIGNING_SECRET, body)}


def _interactive(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, _signed(body)


async def _incidents(bot: BotHarness) -> int:
    async with bot.deps.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Incident)) or 0)


# -- the signature check ------------------------------------------------------------------------------------

async def test_a_non_numeric_timestamp_is_a_401_with_one_log_line(bot: BotHarness,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    signature = sign(SIGNING_SECRET, COMMAND)["X-Slack-Signature"]
    for timestamp in ("abc", "1e9", "-5", "١٢٣".encode(), "17.5", "9" * 40):
        response = await _post(bot, COMMAND, {"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp,
                                              "X-Slack-Signature": signature})
        assert response.status_code == 401, timestamp
        assert response.json() == {"error": "invalid request"}
        bot.clock.advance(minutes=2)  # past the log's rate limit: every refusal gets its line
        _assert_one_short_line(caplog, "401")
    assert (await _post(bot, COMMAND, _signed(COMMAND))).status_code == 200  # a good one still passes


async def test_a_body_that_is_not_utf8_is_401_unsigned_and_400_signed(bot: BotHarness,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    body = b"command=%2Fopsbot&text=\xff\xfe&user_id=U1&trigger_id=t"
    bad_signature = {"X-Slack-Request-Timestamp": sign(SIGNING_SECRET, body)["X-Slack-Request-Timestamp"],
                     "X-Slack-Signature": b"v0=\xff"}
    assert (await _post(bot, body, {"Content-Type": FORM, **bad_signature})).status_code == 401
    _assert_one_short_line(caplog, "bad signature")
    bot.clock.advance(minutes=2)
    response = await _post(bot, body, _signed(body))
    assert response.status_code == 400 and "not UTF-8" in response.json()["error"]
    _assert_one_short_line(caplog, "400", "not UTF-8")


async def test_a_flood_of_refusals_is_a_few_log_lines(bot: BotHarness, caplog: pytest.LogCaptureFixture) -> None:
    """200 junk requests (the issue: 6,830 log lines) are one line a minute, which counts the rest."""
    caplog.set_level(logging.INFO)
    for _ in range(200):
        response = await _post(bot, COMMAND, {"Content-Type": FORM, "X-Slack-Request-Timestamp": "junk",
                                              "X-Slack-Signature": "v0=00"})
        assert response.status_code == 401
    assert len(_refusals(caplog)) == 1
    bot.clock.advance(minutes=1)
    await _post(bot, COMMAND, {"Content-Type": FORM, "X-Slack-Request-Timestamp": "junk", "X-Slack-Signature": "v0=0"})
    lines = [r.getMessage() for r in _refusals(caplog)]
    assert len(lines) == 2 and "and 199 more" in lines[1]


async def test_stale_and_unsigned_requests_and_the_certificate_probe_are_unchanged(bot: BotHarness) -> None:
    stale = sign(SIGNING_SECRET, COMMAND, int(bot.clock().timestamp()) - 10_000)
    assert (await _post(bot, COMMAND, {"Content-Type": FORM, **stale})).status_code == 401
    assert (await _post(bot, COMMAND, {"Content-Type": FORM})).status_code == 401
    assert (await _post(bot, b"ssl_check=1&token=x", {"Content-Type": FORM})).status_code == 200


# -- body size ------------------------------------------------------------------------------------------------

async def _raw(bot: BotHarness, head: str, chunks: list[bytes]) -> tuple[int, bytes]:
    """Send a request head and some body bytes, never finishing the body; the server's answer. A server that
    waited for the whole body would never answer (the wait_for below is only a guard against hanging)."""
    url = urlsplit(bot.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head.encode())
        try:
            for chunk in chunks:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the server answered and closed while we were still sending: what we are testing for
        answer = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


def _head(path: str, length: str | None, **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: opsbot", "Content-Type: application/json",
             *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
             f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"]
    return "\r\n".join(lines) + "\r\n\r\n"


def _chunked(total: int, size: int = 64 * 1024) -> list[bytes]:
    chunks = []
    while total > 0:
        n = min(size, total)
        chunks.append(f"{n:x}\r\n".encode() + b"x" * n + b"\r\n")
        total -= n
    return chunks  # no terminating 0-chunk: the body never ends


async def test_an_oversized_content_length_is_413_before_any_body_is_read(bot: BotHarness,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    status, body = await _raw(bot, _head("/slack/events", str(100 * 1024 * 1024)), [])
    assert status == 413 and str(inbound.MAX_BODY).encode() in body
    _assert_one_short_line(caplog, "413")


async def test_a_chunked_body_is_refused_at_the_first_byte_over_the_limit(bot: BotHarness) -> None:
    status, _ = await _raw(bot, _head("/slack/events", None), _chunked(inbound.MAX_BODY + 1))
    assert status == 413


async def test_a_body_just_under_the_limit_is_still_answered(bot: BotHarness) -> None:
    body = COMMAND + b"&padding=" + b"a" * (inbound.MAX_BODY - len(COMMAND) - 9)
    assert len(body) == inbound.MAX_BODY
    response = await _post(bot, body, _signed(body))
    assert response.status_code == 200 and "/incident" in response.text


async def test_machine_endpoints_limit_their_bodies_while_reading(make_bot: Any) -> None:
    bot = await make_bot(settings_overrides={"deploys_token": "d-token", "alertmanager_token": "a-token"})
    for path, token, limit in (("/deploys", "d-token", deploys.MAX_BODY),
                               ("/webhooks/alertmanager", "a-token", alerts.MAX_BODY)):
        auth = {"Authorization": f"Bearer {token}"}
        assert (await _raw(bot, _head(path, str(10**9), **auth), []))[0] == 413
        assert (await _raw(bot, _head(path, None, **auth), _chunked(limit + 1)))[0] == 413
        # Without the token nothing is read at all.
        assert (await _raw(bot, _head(path, str(10**9)), []))[0] == 401


# -- shapes bolt or the listeners would fail on --------------------------------------------------------------

def _declare_view(values: Any, **view: Any) -> dict[str, Any]:
    return {"id": "V0DECLARE", "type": "modal", "callback_id": Callback.DECLARE, "hash": "1.x",
            "private_metadata": "{}", "state": {"values": values}, **view}


def _submission(view: dict[str, Any]) -> dict[str, Any]:
    return {"type": "view_submission", "user": {"id": "U0ALICE01"}, "team": {"id": "T1"}, "trigger_id": "1.2.3",
            "view": view}


def _press(action: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": "U0ALICE01"}, "trigger_id": "1.2.3", "team": {"id": "T1"},
            "container": {"type": "message", "channel_id": "C1", "message_ts": "1.2"}, "actions": [action], **extra}


ACK = {"action_id": "alerts.ack", "value": "1"}
EVENT = {"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": {"type": "app_mention",
                                                                                  "channel": "C1", "ts": "1.2"}}
MALFORMED: list[tuple[str, dict[str, Any], str]] = [
    ("state.values a string", _submission(_declare_view("junk")), "state.values"),
    ("a block a string", _submission(_declare_view({Field.TITLE: "junk"})), "state.values"),
    ("an element a string", _submission(_declare_view({Field.TITLE: {Field.TITLE: "junk"}})), "state.values"),
    ("state a list", _submission({**_declare_view({}), "state": []}), "state"),
    ("private_metadata a number", _submission(_declare_view({}, private_metadata=5)), "view"),
    ("view a string", {**_submission(_declare_view({})), "view": "junk"}, "view"),
    ("actions empty", _press(ACK, actions=[]), "no actions"),
    ("action value a list", _press({**ACK, "value": [1]}), "value"),
    ("team a string", _press({"action_id": "alerts.open_incident", "value": "{}"}, team="T1"), "team"),
    ("container a string", _press(ACK, container="junk"), "container"),
    ("an event in a button press", _press(ACK, event="junk"), "event"),
    ("no trigger_id", {k: v for k, v in _press(ACK).items() if k != "trigger_id"}, "trigger_id"),
    ("response_urls a string", {**_submission(_declare_view({})), "response_urls": "junk"}, "response_urls"),
    ("command a number", {**_press(ACK), "command": 5}, "command"),
    ("message text a number", {"type": "message_action", "callback_id": Callback.MESSAGE_SHORTCUT,
                               "trigger_id": "1.2", "user": {"id": "U1"}, "message": {"text": 5, "ts": "1.2"}},
     "message"),
    ("attachment action without actions", {"type": "interactive_message", "callback_id": "x"}, "actions"),
    ("workflow step edit without the step", {"type": "workflow_step_edit", "callback_id": "x"}, "workflow_step"),
]
EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("event a string", {**EVENT, "event": "app_mention"}, "event"),
    ("event a list", {**EVENT, "event": ["type"]}, "event"),
    ("event without a type", {**EVENT, "event": {"channel": "C1"}}, "string type"),
    ("event type a number", {**EVENT, "event": {"type": 5}}, "string type"),
    ("app_mention without channel", {**EVENT, "event": {"type": "app_mention", "ts": "1.2"}}, "channel"),
    ("authorizations a string", {**EVENT, "authorizations": "junk"}, "authorizations"),
    ("an event user a number", {**EVENT, "event": {**EVENT["event"], "user": 5}}, "user"),
    ("nested messages", {**EVENT, "event": {"type": "message", "message": json.loads('{"message":' * 20 + "{}"
                                                                                     + "}" * 20)}}, "deeply"),
]


@pytest.mark.parametrize(("case", "payload", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED])
async def test_signed_interactivity_of_a_wrong_shape_is_a_400_with_the_reason(
        bot: BotHarness, caplog: pytest.LogCaptureFixture, case: str, payload: dict[str, Any], reason: str) -> None:
    caplog.set_level(logging.INFO)
    response = await bot.post(_interactive(payload))
    assert response.status_code == 400, (case, response.status_code, response.text[:200])
    assert reason in response.json()["error"]
    _assert_one_short_line(caplog, "400")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("case", "payload", "reason"), EVENTS, ids=[c[0] for c in EVENTS])
async def test_signed_events_of_a_wrong_shape_are_a_400_slack_does_not_retry(
        bot: BotHarness, case: str, payload: dict[str, Any], reason: str) -> None:
    body = json.dumps(payload).encode()
    response = await _post(bot, body, _signed(body, "application/json"))
    assert response.status_code == 400, (case, response.status_code, response.text[:200])
    assert reason in response.json()["error"] and response.headers["x-slack-no-retry"] == "1"


async def test_a_slash_command_without_its_user_is_a_400(bot: BotHarness) -> None:
    body = b"command=%2Fincident&text=list&trigger_id=1.2"
    response = await _post(bot, body, _signed(body))
    assert response.status_code == 400 and "user_id" in response.json()["error"]


# -- NUL characters -------------------------------------------------------------------------------------------

async def test_a_nul_in_a_slash_command_is_explained_and_nothing_is_stored(bot: BotHarness) -> None:
    channels = len(bot.slack.channels)
    response = await bot.command("/incident", "open P1 Checkout\x00down")
    assert response.status_code == 200
    assert response.json()["response_type"] == "ephemeral" and "NUL" in response.json()["text"]
    await bot.settle()
    assert await _incidents(bot) == 0 and len(bot.slack.channels) == channels
    assert not bot.slack.channel("incidents").messages


async def test_a_nul_in_a_form_field_is_an_error_under_that_field(bot: BotHarness) -> None:
    values = {Field.TITLE: {Field.TITLE: {"type": "plain_text_input", "value": "Checkout\x00down"}},
              Field.SEVERITY: {Field.SEVERITY: {"type": "static_select", "selected_option": {"value": "P1"}}}}
    response = await bot.submit(_declare_view(values), values)
    assert response.status_code == 200
    assert response.json() == {"response_action": "errors", "errors": {Field.TITLE: inbound.NUL_FIELD}}
    await bot.settle()
    assert await _incidents(bot) == 0


async def test_a_nul_in_a_button_or_an_event_is_a_400(bot: BotHarness) -> None:
    response = await bot.post(_interactive(_press({"action_id": "incident_ack", "value": "INC-1\x00"})))
    assert response.status_code == 400 and "actions[0].value contains a NUL" in response.json()["error"]
    body = json.dumps({**EVENT, "event": {**EVENT["event"], "text": "hi\x00"}}).encode()
    response = await _post(bot, body, _signed(body, "application/json"))
    assert response.status_code == 400 and "event.text" in response.json()["error"]
    assert all(method != "chat.postMessage" for method, _ in bot.slack.calls)


# -- ids from buttons ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["999999999999999999999999", str(MAX_ID + 1), "0", "-1", "12abc", ""])
async def test_a_rollback_button_with_an_out_of_range_id_is_answered_clearly(bot: BotHarness, value: str) -> None:
    for action in ("rollback.approve", "rollback.reject"):
        response = await bot.click(action, value, channel="general")
        assert response.status_code == 200
    texts = bot.ephemeral_texts()
    assert len([t for t in texts if "is not a valid rollback id" in t]) == 2, texts
    assert not any(GENERIC_FAILURE in t for t in texts)


async def test_an_alert_button_with_an_out_of_range_id_is_answered_clearly(bot: BotHarness) -> None:
    incidents = bot.slack.channel("incidents")
    posted = bot.slack.call("chat.postMessage", {"channel": incidents.id, "text": "x"})
    message = bot.slack.find_message(incidents.id, posted["ts"])
    for action in ("alerts.ack", "alerts.silence_1h"):
        assert (await bot.click(action, "999999999999999999999999", message=message)).status_code == 200
    texts = bot.ephemeral_texts()
    assert len([t for t in texts if "is not a valid alert id" in t]) == 2, texts
    assert not any(GENERIC_FAILURE in t for t in texts)
