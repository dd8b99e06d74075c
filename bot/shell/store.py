"""Where the shell keeps its state, and its emulated Slack as JSON beside the database.

Both or neither: by default a run gets a new temporary database and an empty workspace, both gone when it
ends; `--keep` continues the state directory's database and workspace (channel ids are never reused, old
incidents' channels are still there); `:reset` starts over."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.emulator.state import Channel, Message, SlackState

FORMAT = 1  # bumped when the file's shape changes; a file of another format is not loaded


def state_dir(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """OPSBOT_SHELL_STATE, else $XDG_STATE_HOME/opsbot/shell, else ~/.local/state/opsbot/shell."""
    env = os.environ if environ is None else environ
    if env.get("OPSBOT_SHELL_STATE"):
        return Path(env["OPSBOT_SHELL_STATE"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path.home() / ".local" / "state"
    return base / "opsbot" / "shell"


@dataclass
class Place:
    """One run's database and workspace file. `temporary`: both removed on close."""

    database_url: str
    slack_file: Path | None  # None: the workspace is not kept (a fresh one each run)
    sqlite_file: Path | None  # the database file when it is the shell's own SQLite (what :reset removes)
    temporary: Path | None = None  # a directory removed on close

    @classmethod
    def choose(cls, *, database_url: str | None, keep: bool, home: Path) -> Place:
        if database_url:
            sqlite = _sqlite_path(database_url)
            if sqlite is not None:
                slack = sqlite.with_name(sqlite.name + ".slack.json")
            else:  # another database: its workspace file in the state directory, named after the URL's host/db
                slack = home / f"slack-{_slug(database_url)}.json"
            return cls(database_url, slack if keep else None, sqlite)
        if keep:
            home.mkdir(parents=True, exist_ok=True)
            db = home / "opsbot-shell.db"
            return cls(f"sqlite:///{db}", home / "opsbot-shell.db.slack.json", db)
        temporary = Path(tempfile.mkdtemp(prefix="opsbot-shell-"))
        db = temporary / "opsbot-shell.db"
        return cls(f"sqlite:///{db}", None, db, temporary)

    @property
    def kept(self) -> bool:
        return self.slack_file is not None

    def load(self) -> SlackState:
        """The kept workspace, or a fresh one."""
        state = SlackState()
        if self.slack_file is not None and self.slack_file.exists():
            restore(state, json.loads(self.slack_file.read_text(encoding="utf-8")))
        return state

    def save(self, state: SlackState) -> None:
        if self.slack_file is None:
            return
        self.slack_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.slack_file.with_name(self.slack_file.name + ".partial")
        partial.write_text(json.dumps(snapshot(state), default=str), encoding="utf-8")
        partial.replace(self.slack_file)

    def wipe(self) -> bool:
        """Remove the database file and the workspace file (for :reset); False when the database is not ours
        to remove (a PostgreSQL URL)."""
        if self.sqlite_file is None:
            return False
        for path in (self.sqlite_file, self.slack_file,
                     *(self.sqlite_file.with_name(self.sqlite_file.name + s) for s in ("-wal", "-shm", "-journal"))):
            if path is not None and path.exists():
                path.unlink()
        return True

    def close(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)


def _sqlite_path(url: str) -> Path | None:
    match = re.match(r"^sqlite(?:\+\w+)?:///(.+)$", url)
    if match is None or match.group(1) == ":memory:":
        return None
    return Path(match.group(1))


def _slug(url: str) -> str:
    tail = url.split("@")[-1]  # never the password
    return re.sub(r"[^A-Za-z0-9]+", "-", tail).strip("-")[:60] or "database"


# -- the workspace as JSON ------------------------------------------------------------------------------
def snapshot(state: SlackState) -> dict[str, Any]:
    """What a later run needs: channels with their messages, users, groups, and where the id counters stood."""
    numbers = [int(m.group(1)) for c in state.channels for m in [re.match(r"^[A-Z]0(\d+)$", c)] if m]
    stamps = [int(m.ts.split(".")[1]) for c in state.channels.values() for m in c.messages if "." in m.ts]
    return {
        "format": FORMAT, "next_id": max(numbers, default=0) + 1, "next_ts": max(stamps, default=0) + 1,
        "channels": [{
            "id": c.id, "name": c.name, "is_private": c.is_private, "topic": c.topic, "purpose": c.purpose,
            "members": sorted(c.members), "created": c.created, "creator": c.creator, "is_archived": c.is_archived,
            "messages": [{"ts": m.ts, "text": m.text, "blocks": m.blocks, "thread_ts": m.thread_ts, "user": m.user,
                          "edits": m.edits, "pinned": m.pinned, "metadata": m.metadata} for m in c.messages],
        } for c in state.channels.values()],
        "users": list(state.users.values()), "usergroups": list(state.usergroups.values()),
    }


def restore(state: SlackState, data: dict[str, Any]) -> None:
    """Replace `state`'s workspace with a snapshot's (a file of another format leaves it fresh)."""
    if data.get("format") != FORMAT:
        return
    state.channels = {}
    for raw in data.get("channels", []):
        channel = Channel(id=raw["id"], name=raw["name"], is_private=raw["is_private"], topic=raw["topic"],
                          purpose=raw["purpose"], members=set(raw["members"]), created=raw["created"],
                          creator=raw["creator"], is_archived=raw["is_archived"])
        channel.messages = [Message(channel=channel.id, **m) for m in raw["messages"]]
        state.channels[channel.id] = channel
    state.users = {u["id"]: u for u in data.get("users", [])} or state.users
    state.usergroups = {g["id"]: g for g in data.get("usergroups", [])} or state.usergroups
    # The counters go on from where they stood: a new channel never gets an old channel's id.
    state._ids = itertools.count(int(data.get("next_id", 1)))
    state._ts = itertools.count(int(data.get("next_ts", 1)))
