"""In-memory Slack workspace: channels, messages, ephemerals, views, users and user groups.

Answers Web API methods with Slack-shaped JSON (see shared/SLACK_FACTS.md §6)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHANNEL_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")
BOT_USER = "U0BOT0001"
BOT_ID = "B0BOT0001"
TEAM = "T0EMULATOR"
# What the emulated bot token was granted: manifest.yml's bot scopes (tests narrow it to see what is missing).
SCOPES = ("commands", "chat:write", "chat:write.public", "channels:manage", "channels:read", "channels:history",
          "groups:read", "groups:history", "groups:write", "pins:write", "users:read", "users:read.email",
          "usergroups:read", "usergroups:write", "files:write", "reactions:read")
ADMIN_USER = "U0ADMIN01"  # who created the workspace's own channels (not the bot)


class SlackApiError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        self.error, self.extra = error, extra
        super().__init__(error)


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    user: str = BOT_USER
    edits: int = 0
    pinned: bool = False
    metadata: dict[str, Any] | None = None  # {"event_type": …, "event_payload": {…}} as posted
    files: list[dict[str, Any]] = field(default_factory=list)  # a file share (files.completeUploadExternal)

    def as_dict(self, *, metadata: bool = False) -> dict[str, Any]:
        """The message object; `metadata` only when asked for (conversations.history `include_all_metadata`)."""
        data: dict[str, Any] = {"type": "message", "subtype": "bot_message", "text": self.text, "ts": self.ts,
                                "bot_id": BOT_ID, "user": self.user, "blocks": self.blocks}
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.edits:
            data["edited"] = {"user": self.user, "ts": self.ts}
        if metadata and self.metadata:
            data["metadata"] = self.metadata
        if self.files:
            data.update(subtype="file_share", files=self.files, upload=True)
        return data

    def all_text(self) -> str:
        """The message text plus every text found in its blocks (for assertions)."""
        return self.text + "\n" + "\n".join(_texts(self.blocks))


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["text"]] if isinstance(node.get("text"), str) else []
        for key, value in node.items():
            if key != "text" or not isinstance(value, str):
                out += _texts(value)
        return out
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []


@dataclass
class Channel:
    id: str
    name: str
    is_private: bool = False
    topic: str = ""
    purpose: str = ""
    members: set[str] = field(default_factory=set)
    messages: list[Message] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    creator: str = ADMIN_USER
    is_archived: bool = False

    @property
    def kind(self) -> str:
        """conversations.list `types`: DMs are `im`, the rest public or private channels."""
        if self.id.startswith("D"):
            return "im"
        return "private_channel" if self.is_private else "public_channel"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "is_channel": not self.is_private, "is_group": self.is_private,
            "is_private": self.is_private, "is_archived": self.is_archived, "is_member": BOT_USER in self.members,
            "created": self.created, "creator": self.creator,
            "topic": {"value": self.topic, "creator": BOT_USER, "last_set": 0},
            "purpose": {"value": self.purpose, "creator": BOT_USER, "last_set": 0},
            "num_members": len(self.members),
        }


@dataclass
class Fault:
    method: str
    status: int
    count: int
    retry_after: int = 1
    error: str | None = None
    delay: float = 0.0
    applied: bool = False  # Slack acted on the call before the fault (answer lost, delayed or 5xx)
    gate: asyncio.Event | None = None  # the call waits here until the test sets it


class SlackState:
    """Everything the emulated workspace holds. Mutated only from the emulator's event loop."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self.channels: dict[str, Channel] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # response_url posts
        self.views: dict[str, dict[str, Any]] = {}
        self.view_log: list[dict[str, Any]] = []  # every views.open/update/push, in order
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.used_triggers: set[str] = set()
        self.faults: list[Fault] = []
        self.abandoned: list[str] = []  # delayed calls whose client hung up before the answer
        self.held: list[str] = []  # calls waiting at a gate (see `hold`)
        self.early_retries: list[str] = []  # calls that came back before their 429's Retry-After had passed
        self.limited_until: dict[str, float] = {}  # method → monotonic time its last 429 window ends
        self.latency = 0.0  # seconds added to every Web API call (benchmarks)
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self.bot_user = BOT_USER
        self.scopes: list[str] = list(SCOPES)  # the bot token's scopes (the `x-oauth-scopes` header)
        self.upload_base = "http://127.0.0.1:9"  # where upload_urls point (EmulatorServer sets its own address)
        self.files: dict[str, dict[str, Any]] = {}  # files.getUploadURLExternal → upload → completeUploadExternal
        self.home_views: dict[str, dict[str, Any]] = {}  # views.publish: the Home tab each user sees now
        self.publish_log: list[dict[str, Any]] = []  # every views.publish, in order ({"user_id", "view"})
        for name in ("general", "incidents", "alerts", "ops", "random"):
            self.add_channel(name)
        self.add_user("U0ALICE01", "alice", "Alice Archer")
        self.add_user("U0BOB0001", "bob", "Bob Baker")
        self.add_user("U0CAROL01", "carol", "Carol Chen")
        self.add_usergroup("S0ONCALL1", "oncall", ["U0ALICE01"])
        self.add_usergroup("S0LEADS01", "eng-leads", ["U0CAROL01"])
        self.add_usergroup("S0VPENG01", "vp-eng", ["U0CAROL01"])
        self.add_usergroup("S0CTO0001", "cto", [])

    # -- setup ------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._ids):08d}"

    def new_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def add_channel(self, name: str, *, is_private: bool = False, channel_id: str | None = None,
                    creator: str = ADMIN_USER, is_archived: bool = False) -> Channel:
        channel = Channel(id=channel_id or self.new_id("C"), name=name, is_private=is_private, members={BOT_USER},
                          creator=creator, is_archived=is_archived)
        self.channels[channel.id] = channel
        return channel

    def add_user(self, user_id: str, name: str, real_name: str = "", **extra: Any) -> dict[str, Any]:
        user = {
            "id": user_id, "team_id": TEAM, "name": name, "real_name": real_name or name, "tz": "UTC",
            "is_admin": False, "is_bot": False, "deleted": False,
            "profile": {"display_name": name, "real_name": real_name or name, "email": f"{name}@example.com"},
            **extra,
        }
        self.users[user_id] = user
        return user

    def add_usergroup(self, group_id: str, handle: str, users: list[str]) -> dict[str, Any]:
        group = {"id": group_id, "team_id": TEAM, "is_usergroup": True, "name": handle, "handle": handle,
                 "description": "", "users": list(users), "user_count": len(users)}
        self.usergroups[group_id] = group
        return group

    def fail(self, method: str, *, status: int = 500, count: int = 1, retry_after: int = 1,
             error: str | None = None, delay: float = 0.0, applied: bool = False) -> None:
        """Make the next `count` calls of `method` ('*' = any) answer `status` (429 adds Retry-After),
        or, with status 200 and `error`, an `ok: false` body; `delay` makes them hang first (with status 200
        and no error, a delayed call then succeeds: a slow Slack).

        `applied=True`: Slack does what was asked first, then the answer is delayed (beyond the client's
        timeout, the client never learns it succeeded) or replaced by `status` (a 500 after the fact)."""
        self.faults.append(Fault(method, status, count, retry_after, error, delay, applied))

    def hold(self, method: str) -> asyncio.Event:
        """The next call of `method` waits (listed in `held`) until the returned event is set, then proceeds."""
        gate = asyncio.Event()
        self.faults.append(Fault(method, 200, 1, gate=gate))
        return gate

    def rate_window(self, method: str) -> float:
        """Seconds left of `method`'s last 429 Retry-After; a call inside it is an early retry."""
        return max(0.0, self.limited_until.get(method, 0.0) - time.monotonic())

    def rate_limited(self, method: str, retry_after: int) -> None:
        self.limited_until[method] = time.monotonic() + retry_after

    def take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method in (method, "*") and fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    self.faults.remove(fault)
                return fault
        return None

    # -- lookups for tests and the shell -----------------------------------------------
    def channel(self, ref: str) -> Channel:
        ref = ref.lstrip("#")
        if ref in self.channels:
            return self.channels[ref]
        for channel in self.channels.values():
            if channel.name == ref:
                return channel
        if ref in self.users:  # a DM: one conversation per user, opened on first use
            dm_id = f"D{ref[1:]}"
            return self.channels.get(dm_id) or self.add_channel(f"dm-{ref.lower()}", is_private=True,
                                                                 channel_id=dm_id)
        raise SlackApiError("channel_not_found")

    def find_channel(self, ref: str) -> Channel | None:
        try:
            return self.channel(ref)
        except SlackApiError:
            return None

    def messages(self, ref: str) -> list[Message]:
        channel = self.find_channel(ref)
        return list(channel.messages) if channel else []

    def find_message(self, channel: str, ts: str) -> Message:
        for message in self.channel(channel).messages:
            if message.ts == ts:
                return message
        raise SlackApiError("message_not_found")

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(kind, data)

    # -- methods ----------------------------------------------------------------------
    def call(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            raise SlackApiError("unknown_method")
        self.calls.append((method, args))
        return {"ok": True, **handler(args)}

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://emulator.slack.local/", "team": "Emulated Team", "user": "opsbot",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _post(self, args: dict[str, Any]) -> Message:
        channel = self.channel(_required(args, "channel"))
        if not args.get("text") and not args.get("blocks"):
            raise SlackApiError("no_text")
        blocks = _blocks(args.get("blocks"))
        _check_blocks(blocks, limit=50)
        thread_ts = args.get("thread_ts") or None
        if thread_ts:
            self.find_message(channel.id, thread_ts)
        message = Message(channel=channel.id, ts=self.new_ts(), text=str(args.get("text") or "")[:40000],
                          blocks=blocks, thread_ts=thread_ts, metadata=_metadata(args.get("metadata")))
        channel.messages.append(message)
        return message

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._post(args)
        self.emit("message", {"channel": self.channels[message.channel], "message": message})
        return {"channel": message.channel, "ts": message.ts, "message": message.as_dict()}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        message = self.find_message(channel.id, _required(args, "ts"))
        if "text" in args and args["text"] is not None:
            message.text = str(args["text"])
        if args.get("blocks") is not None:
            message.blocks = _blocks(args["blocks"])
            _check_blocks(message.blocks, limit=50)
        if args.get("metadata") is not None:  # left as it was when the edit does not send any
            message.metadata = _metadata(args["metadata"])
        message.edits += 1
        self.emit("update", {"channel": channel, "message": message})
        return {"channel": channel.id, "ts": message.ts, "text": message.text, "message": message.as_dict()}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        user = _required(args, "user")
        blocks = _blocks(args.get("blocks"))
        _check_blocks(blocks, limit=50)
        entry = {"channel": channel.id, "user": user, "text": args.get("text") or "", "blocks": blocks,
                 "message_ts": self.new_ts()}
        self.ephemerals.append(entry)
        self.emit("ephemeral", entry)
        return {"message_ts": entry["message_ts"]}

    def m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        ts = _required(args, "message_ts")
        return {"channel": channel.id,
                "permalink": f"https://emulator.slack.local/archives/{channel.id}/p{ts.replace('.', '')}"}

    def m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        message = self.find_message(channel.id, _required(args, "ts"))
        channel.messages.remove(message)
        return {"channel": channel.id, "ts": message.ts}

    def _view(self, args: dict[str, Any], *, view_id: str | None = None) -> dict[str, Any]:
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict):
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["missing `view`"]})
        title = (view.get("title") or {}).get("text", "")
        if view.get("type") != "modal" or not title or len(title) > 24:
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["invalid view title/type"]})
        blocks = view.get("blocks") or []
        _check_blocks(blocks, limit=100)
        if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["submit is required"]})
        if len(view.get("private_metadata") or "") > 3000:
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["private_metadata too long"]})
        view_id = view_id or self.new_id("V")
        stored = {**view, "id": view_id, "team_id": TEAM, "state": {"values": {}}, "hash": f"{time.time():.6f}.h",
                  "root_view_id": view_id, "previous_view_id": None, "app_id": "A0EMULATOR", "bot_id": BOT_ID,
                  "private_metadata": view.get("private_metadata", ""), "callback_id": view.get("callback_id", ""),
                  "external_id": view.get("external_id", "")}
        self.views[view_id] = stored
        return stored

    def _trigger(self, args: dict[str, Any]) -> None:
        trigger = args.get("trigger_id") or ""
        if not trigger:
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["invalid `trigger_id`"]})
        if trigger in self.used_triggers:
            raise SlackApiError("exchanged_trigger_id")
        self.used_triggers.add(trigger)

    def m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        self._trigger(args)
        view = self._view(args)
        self.view_log.append({"method": "views.open", "view": view})
        self.emit("view", {"method": "views.open", "view": view})
        return {"view": view}

    def m_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        self._trigger(args)
        view = self._view(args)
        self.view_log.append({"method": "views.push", "view": view})
        self.emit("view", {"method": "views.push", "view": view})
        return {"view": view}

    def m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id = args.get("view_id")
        if not view_id:
            external = args.get("external_id")
            view_id = next((v["id"] for v in self.views.values() if external and v["external_id"] == external), None)
        if not view_id or view_id not in self.views:
            raise SlackApiError("not_found")
        view = self._view(args, view_id=view_id)
        self.view_log.append({"method": "views.update", "view": view})
        self.emit("view", {"method": "views.update", "view": view})
        return {"view": view}

    def m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user = _required(args, "user_id")
        if user not in self.users:
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["invalid `user_id`"]})
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["a Home view needs type home"]})
        blocks = view.get("blocks") or []
        _check_blocks(blocks, limit=100)
        if len(view.get("private_metadata") or "") > 3000:
            raise SlackApiError("invalid_arguments", response_metadata={"messages": ["private_metadata too long"]})
        previous = self.home_views.get(user)
        if args.get("hash") and previous is not None and args["hash"] != previous["hash"]:
            raise SlackApiError("hash_conflict")
        stored = {**view, "id": previous["id"] if previous else self.new_id("V"), "team_id": TEAM,
                  "hash": f"{time.time():.6f}.{next(self._ids)}", "app_id": "A0EMULATOR", "bot_id": BOT_ID,
                  "state": {"values": {}}}
        self.home_views[user] = stored
        self.publish_log.append({"user_id": user, "view": stored})
        self.emit("view", {"method": "views.publish", "view": stored})
        return {"view": stored}

    # -- files (upload v2: get an upload URL, POST the bytes there, complete to share) ---------
    def m_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        filename = str(args.get("filename") or "")
        try:
            length = int(args.get("length") or 0)
        except (TypeError, ValueError):
            raise SlackApiError("invalid_arguments") from None
        if not filename or length <= 0:
            raise SlackApiError("missing_argument")
        file_id = self.new_id("F")
        self.files[file_id] = {"id": file_id, "name": filename, "length": length, "content": None,
                               "title": filename, "alt_txt": args.get("alt_txt"), "shares": {}}
        return {"upload_url": f"{self.upload_base}/upload/v1/{file_id}", "file_id": file_id}

    def upload(self, file_id: str, content: bytes) -> bool:
        """The bytes POSTed to an upload_url; False for an unknown (or already completed) file."""
        found = self.files.get(file_id)
        if found is None or found["shares"]:
            return False
        found["content"] = content
        return True

    def m_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if isinstance(files, str):
            files = json.loads(files)
        if not isinstance(files, list) or not files:
            raise SlackApiError("invalid_arguments")
        entries = []
        for item in files:
            found = self.files.get(str((item or {}).get("id")))
            if found is None or found["content"] is None:
                raise SlackApiError("file_not_found")
            entries.append((found, item))
        channel = self.channel(args["channel_id"]) if args.get("channel_id") else None
        if channel is not None and BOT_USER not in channel.members:
            raise SlackApiError("not_in_channel")
        shared = []
        for found, item in entries:
            found["title"] = item.get("title") or found["name"]
            shared.append({"id": found["id"], "name": found["name"], "title": found["title"],
                           "size": len(found["content"]), "mimetype": _mimetype(found["name"]),
                           "url_private": f"{self.upload_base}/files/{found['id']}"})
        if channel is not None:
            message = Message(channel=channel.id, ts=self.new_ts(), text=str(args.get("initial_comment") or ""),
                              thread_ts=args.get("thread_ts") or None, files=shared)
            channel.messages.append(message)
            for found, _ in entries:
                found["shares"] = {"public": {channel.id: [{"ts": message.ts}]}}
            self.emit("message", {"channel": channel, "message": message})
        return {"files": shared}

    def m_conversations_create(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(args.get("name") or "")
        if not name:
            raise SlackApiError("invalid_name_required")
        if len(name) > 80:
            raise SlackApiError("invalid_name_maxlength")
        if not CHANNEL_NAME.match(name):
            raise SlackApiError("invalid_name_specials")
        if any(c.name == name for c in self.channels.values()):
            raise SlackApiError("name_taken")
        private = str(args.get("is_private", "false")).lower() in ("1", "true")
        channel = self.add_channel(name, is_private=private, creator=BOT_USER)
        self.emit("channel", {"channel": channel})
        return {"channel": channel.as_dict()}

    def m_conversations_invite(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        users = [u for u in str(_required(args, "users")).split(",") if u]
        for user in users:
            if user == BOT_USER:
                raise SlackApiError("cant_invite_self")
            if user not in self.users:
                raise SlackApiError("user_not_found")
        if all(u in channel.members for u in users):
            raise SlackApiError("already_in_channel")
        channel.members.update(users)
        return {"channel": channel.as_dict()}

    def m_conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        channel.members.add(BOT_USER)
        return {"channel": channel.as_dict()}

    def m_conversations_setTopic(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        topic = str(args.get("topic") or "")
        if len(topic) > 250:
            raise SlackApiError("too_long")
        channel.topic = topic
        return {"channel": channel.as_dict()}

    def m_conversations_setPurpose(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        channel.purpose = str(args.get("purpose") or "")[:250]
        return {"channel": channel.as_dict()}

    def m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel(_required(args, "channel")).as_dict()}

    def m_conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        types = {t.strip() for t in str(args.get("types") or "public_channel").split(",") if t.strip()}
        if not types <= {"public_channel", "private_channel", "mpim", "im"}:
            raise SlackApiError("invalid_types")
        exclude_archived = str(args.get("exclude_archived", "false")).lower() in ("1", "true")
        listed = [c for c in self.channels.values() if c.kind in types and not (exclude_archived and c.is_archived)
                  and (c.kind == "public_channel" or BOT_USER in c.members)]  # private: only the bot's own
        page, next_cursor = _page(listed, args, default=100, maximum=1000)
        return {"channels": [c.as_dict() for c in page], "response_metadata": {"next_cursor": next_cursor}}

    def m_conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"members": sorted(self.channel(_required(args, "channel")).members),
                "response_metadata": {"next_cursor": ""}}

    def m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        if BOT_USER not in channel.members:
            raise SlackApiError("not_in_channel")
        with_metadata = str(args.get("include_all_metadata", "false")).lower() in ("1", "true")
        top = [m for m in reversed(channel.messages) if not m.thread_ts]  # newest first
        page, next_cursor = _page(top, args, default=100, maximum=999)
        return {"messages": [m.as_dict(metadata=with_metadata) for m in page], "has_more": bool(next_cursor),
                "pin_count": sum(m.pinned for m in channel.messages), "channel_actions_ts": None,
                "channel_actions_count": 0, "response_metadata": {"next_cursor": next_cursor}}

    def m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        ts = _required(args, "ts")
        parent = self.find_message(channel.id, ts)
        replies = [m.as_dict() for m in channel.messages if m.thread_ts == ts]
        return {"messages": [parent.as_dict(), *replies], "has_more": False}

    def m_pins_add(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        message = self.find_message(channel.id, _required(args, "timestamp"))
        if message.pinned:
            raise SlackApiError("already_pinned")
        message.pinned = True
        return {}

    def m_pins_list(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self.channel(_required(args, "channel"))
        return {"items": [{"type": "message", "channel": channel.id, "message": m.as_dict()}
                          for m in channel.messages if m.pinned]}

    def m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        self.find_message(self.channel(_required(args, "channel")).id, _required(args, "timestamp"))
        return {}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(_required(args, "user"))
        if user is None:
            raise SlackApiError("user_not_found")
        return {"user": user}

    def m_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"members": list(self.users.values()), "response_metadata": {"next_cursor": ""}}

    def m_usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        include = str(args.get("include_users", "false")).lower() in ("1", "true")
        groups = [g if include else {k: v for k, v in g.items() if k != "users"} for g in self.usergroups.values()]
        return {"usergroups": groups}

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(_required(args, "usergroup"))
        if group is None:
            raise SlackApiError("no_such_subteam")
        return {"users": list(group["users"])}

    def m_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(_required(args, "email")).strip().lower()
        for user in self.users.values():
            if str((user.get("profile") or {}).get("email") or "").lower() == email and not user.get("deleted"):
                return {"user": user}
        raise SlackApiError("users_not_found")

    def m_usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Replace the group's members (Slack cannot empty a group this way: `no_users_provided`)."""
        group = self.usergroups.get(_required(args, "usergroup"))
        if group is None:
            raise SlackApiError("no_such_subteam")
        raw = args.get("users")
        users = [u.strip() for u in (raw if isinstance(raw, list) else str(raw or "").split(",")) if u.strip()]
        if not users:
            raise SlackApiError("no_users_provided")
        if any(u not in self.users or self.users[u].get("deleted") or self.users[u].get("is_bot") for u in users):
            raise SlackApiError("invalid_users")
        group["users"] = list(dict.fromkeys(users))
        group["user_count"] = len(group["users"])
        group["date_update"] = int(time.time())
        include_count = str(args.get("include_count", "false")).lower() in ("1", "true")
        shown = {k: v for k, v in group.items() if include_count or k != "user_count"}
        return {"usergroup": shown}

    # -- response_url ---------------------------------------------------------------------
    def respond(self, token: str, payload: dict[str, Any]) -> None:
        entry = {"token": token, **payload}
        self.responses.append(entry)
        self.emit("response", entry)


def _mimetype(name: str) -> str:
    return {"png": "image/png", "csv": "text/csv", "txt": "text/plain"}.get(name.rsplit(".", 1)[-1].lower(),
                                                                            "application/octet-stream")


def _required(args: dict[str, Any], name: str) -> Any:
    value = args.get(name)
    if value in (None, ""):
        raise SlackApiError("invalid_arguments", response_metadata={"messages": [f"missing required field: {name}"]})
    return value


def _page(items: list[Any], args: dict[str, Any], *, default: int, maximum: int) -> tuple[list[Any], str]:
    """Cursor pagination as Slack does it: `limit` (0 = the default) and an opaque `cursor`; "" on the last page."""
    try:
        limit = int(args.get("limit") or default)
    except ValueError:
        raise SlackApiError("invalid_limit") from None
    if limit < 1 or limit > maximum:
        raise SlackApiError("invalid_limit")
    start = 0
    if args.get("cursor"):
        try:
            start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("offset:"))
        except ValueError:
            raise SlackApiError("invalid_cursor") from None
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return items[start:end], next_cursor


def _metadata(raw: Any) -> dict[str, Any] | None:
    """Message metadata: `{"event_type": str, "event_payload": {…}}`, sent as an object or as JSON text."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackApiError("invalid_metadata_format") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event_type"), str) \
            or not isinstance(raw.get("event_payload"), dict):
        raise SlackApiError("invalid_metadata_format")
    return {"event_type": raw["event_type"], "event_payload": raw["event_payload"]}


def _blocks(raw: Any) -> list[dict[str, Any]]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SlackApiError("invalid_blocks_format") from None
    if not isinstance(raw, list):
        raise SlackApiError("invalid_blocks_format")
    return raw


def _check_blocks(blocks: list[dict[str, Any]], *, limit: int) -> None:
    """The Block Kit limits Slack enforces and that a bot most often trips over."""
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    seen: set[str] = set()
    for i, block in enumerate(blocks):
        block_id = block.get("block_id")
        if block_id:
            if block_id in seen:
                errors.append(f"duplicate block_id [json-pointer:/blocks/{i}/block_id]")
            seen.add(block_id)
        text = block.get("text")
        if isinstance(text, dict):
            cap = 150 if block.get("type") == "header" else 3000
            if len(text.get("text", "")) > cap:
                errors.append(f"must be less than {cap + 1} characters [json-pointer:/blocks/{i}/text/text]")
        for j, element in enumerate(block.get("elements") or []):
            label = element.get("text") if isinstance(element, dict) else None
            if element.get("type") == "button" and isinstance(label, dict) and len(label.get("text", "")) > 75:
                errors.append(f"must be less than 76 characters [json-pointer:/blocks/{i}/elements/{j}/text/text]")
        for j, fld in enumerate(block.get("fields") or []):
            if len(fld.get("text", "")) > 2000:
                errors.append(f"must be less than 2001 characters [json-pointer:/blocks/{i}/fields/{j}/text]")
    if errors:
        raise SlackApiError("invalid_blocks", errors=errors,
                            response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
