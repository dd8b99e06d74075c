"""Requests as Slack sends them: signed (v0), form-encoded, with the payload shapes of SLACK_FACTS §1–4."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

TEAM = {"id": "T0EMULATOR", "domain": "emulated"}
_counter = itertools.count(1)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The two headers Slack adds to every request."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class SlackRequests:
    """Builds (body, headers) pairs for slash commands, interactivity payloads and events."""

    def __init__(self, signing_secret: str, *, response_base: str = "http://127.0.0.1:9/response") -> None:
        self.secret = signing_secret
        self.response_base = response_base.rstrip("/")

    def _sign(self, body: bytes, content_type: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        return body, {"Content-Type": content_type, **sign(self.secret, body, timestamp)}

    def new_trigger(self) -> str:
        return f"{next(_counter)}.{int(time.time())}.{hashlib.sha1(str(time.time_ns()).encode()).hexdigest()[:12]}"

    def response_url(self) -> str:
        return f"{self.response_base}/R{next(_counter):06d}"

    def command(self, command: str, text: str = "", *, user: str = "U0ALICE01", channel: str = "C000000000",
                channel_name: str = "general", trigger_id: str | None = None,
                timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
        fields = {
            "token": "deprecated", "team_id": TEAM["id"], "team_domain": TEAM["domain"], "channel_id": channel,
            "channel_name": channel_name, "user_id": user, "user_name": user.lower(), "command": command,
            "text": text, "api_app_id": "A0EMULATOR", "is_enterprise_install": "false",
            "response_url": self.response_url(), "trigger_id": trigger_id or self.new_trigger(),
        }
        return self._sign(urlencode(fields).encode(), "application/x-www-form-urlencoded", timestamp)

    def _interactive(self, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self._sign(body, "application/x-www-form-urlencoded")

    def _envelope(self, kind: str, user: str) -> dict[str, Any]:
        return {"type": kind, "user": {"id": user, "username": user.lower(), "name": user.lower(),
                                        "team_id": TEAM["id"]},
                "api_app_id": "A0EMULATOR", "token": "deprecated", "team": dict(TEAM), "is_enterprise_install": False}

    def block_action(self, action_id: str, value: str | None = None, *, user: str = "U0ALICE01",
                     channel: str | None = "C000000000", message: dict[str, Any] | None = None,
                     view: dict[str, Any] | None = None, block_id: str = "actions",
                     selected_option: dict[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
        action: dict[str, Any] = {"action_id": action_id, "block_id": block_id, "type": "button",
                                  "action_ts": f"{time.time():.6f}",
                                  "text": {"type": "plain_text", "text": action_id, "emoji": True}}
        if value is not None:
            action["value"] = value
        if selected_option is not None:
            action.update(type="static_select", selected_option=selected_option)
        payload = self._envelope("block_actions", user)
        payload.update(trigger_id=self.new_trigger(), actions=[action], state={"values": {}})
        if view is not None:
            payload["container"] = {"type": "view", "view_id": view.get("id", "V0")}
            payload["view"] = view
        else:
            ts = (message or {}).get("ts", "1.000001")
            payload["container"] = {"type": "message", "message_ts": ts, "channel_id": channel,
                                    "is_ephemeral": message is None}
            payload["channel"] = {"id": channel, "name": "channel"}
            payload["response_url"] = self.response_url()
            if message is not None:
                payload["message"] = message
        return self._interactive(payload)

    def view_submission(self, view: dict[str, Any], values: dict[str, dict[str, Any]], *,
                        user: str = "U0ALICE01") -> tuple[bytes, dict[str, str]]:
        """`values` maps block_id -> action_id -> element state (e.g. {"type": "plain_text_input", "value": "x"})."""
        submitted = {**view, "state": {"values": values}}
        payload = self._envelope("view_submission", user)
        payload.update(trigger_id=self.new_trigger(), view=submitted, response_urls=[])
        return self._interactive(payload)

    def shortcut(self, callback_id: str, *, user: str = "U0ALICE01") -> tuple[bytes, dict[str, str]]:
        payload = self._envelope("shortcut", user)
        payload.update(callback_id=callback_id, trigger_id=self.new_trigger(), action_ts=f"{time.time():.6f}")
        return self._interactive(payload)

    def message_shortcut(self, callback_id: str, message: dict[str, Any], *, channel: str,
                         user: str = "U0ALICE01") -> tuple[bytes, dict[str, str]]:
        payload = self._envelope("message_action", user)
        payload.update(callback_id=callback_id, trigger_id=self.new_trigger(), message_ts=message["ts"],
                       message=message, channel={"id": channel, "name": "channel"},
                       response_url=self.response_url(), action_ts=f"{time.time():.6f}")
        return self._interactive(payload)

    def event(self, event: dict[str, Any], *, event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        envelope = {"token": "deprecated", "team_id": TEAM["id"], "api_app_id": "A0EMULATOR", "event": event,
                    "type": "event_callback", "event_id": event_id or f"Ev{next(_counter):08d}",
                    "event_time": int(time.time()),
                    "authorizations": [{"enterprise_id": None, "team_id": TEAM["id"], "user_id": "U0BOT0001",
                                        "is_bot": True, "is_enterprise_install": False}]}
        return self._sign(json.dumps(envelope).encode(), "application/json")
