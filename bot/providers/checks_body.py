"""What a failing target's answer says about itself: the fields that explain it, on one short line.

`{"status":"unhealthy","database":"disconnected","error":"Connection refused"}` becomes
`status=unhealthy · database=disconnected · error=Connection refused`; nested checks that are not ok
become `checks.db: down (timeout)`; a body that is not JSON becomes its first words (HTML tags dropped)."""

from __future__ import annotations

import json
import re
from typing import Any

BODY_LIMIT = 200  # characters of explanation shown beside a failing check
SEPARATOR = " · "
# Top-level fields that say why, shown whatever their value.
REASON_KEYS = ("status", "error", "message", "detail", "reason", "errors")
# Inside a nested check: its verdict and what it says about it.
VERDICT_KEYS = ("status", "state", "health", "healthy", "ok", "up")
CAUSE_KEYS = ("error", "message", "detail", "reason", "output")
OK_WORDS = frozenset({"ok", "okay", "healthy", "up", "pass", "passed", "passing", "success", "succeeded",
                      "connected", "available", "ready", "green", "running", "online", "true", "good", "fine",
                      "enabled", "active", "operational", "live", "alive", "reachable"})
BAD_WORDS = frozenset({"down", "disconnected", "unhealthy", "error", "errored", "fail", "failed", "failing",
                       "failure", "unavailable", "unreachable", "timeout", "timed out", "degraded", "critical",
                       "dead", "offline", "ko", "red", "not ok", "not connected", "not ready", "warn", "warning",
                       "false", "broken", "stopped", "refused", "outage"})
_MAX_DEPTH = 4
_TAG = re.compile(r"<[^<>]{0,500}>")
_SCRIPT = re.compile(r"<(script|style)\b.{0,20000}?</\1\s*>", re.IGNORECASE | re.DOTALL)


def explain(body: bytes, *, limit: int = BODY_LIMIT) -> str:
    """The explanation of `body`, at most `limit` characters ('' when the body says nothing)."""
    if not body.strip():
        return ""
    try:
        document = json.loads(body)
    except ValueError:
        return cut(_excerpt(body.decode("utf-8", errors="replace")), limit)
    if isinstance(document, dict):
        parts = _top(document)
    elif isinstance(document, list):
        parts = _nested("", document, 1)
    else:
        parts = [_scalar(document)]
    return cut(SEPARATOR.join(part for part in parts if part), limit)


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _excerpt(text: str) -> str:
    text = _SCRIPT.sub(" ", text)
    return _TAG.sub(" ", text) if "<" in text and ">" in text else text


def _top(document: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for key, value in document.items():
        if key in REASON_KEYS and _is_scalar(value):
            parts.append(f"{key}={_scalar(value)}")
        elif key in REASON_KEYS and isinstance(value, list) and all(_is_scalar(v) for v in value):
            parts.append(f"{key}={', '.join(_scalar(v) for v in value[:3])}")
        elif isinstance(value, dict | list):
            parts += _nested(str(key), value, 1)
        elif _bad(value):
            parts.append(f"{key}={_scalar(value)}")
    return parts


def _nested(path: str, value: Any, depth: int) -> list[str]:
    """Nested checks that are not ok: `checks.db: down (timeout)`; `checks.cache: disconnected`."""
    if depth > _MAX_DEPTH:
        return []
    if isinstance(value, list):
        parts: list[str] = []
        for index, item in enumerate(value):
            name = (item.get("name") or item.get("id")) if isinstance(item, dict) else None
            label = str(name) if isinstance(name, str | int) and not isinstance(name, bool) else str(index)
            parts += _nested(_join(path, label), item, depth + 1)
        return parts
    if isinstance(value, dict):
        verdict_key = next((k for k in VERDICT_KEYS if k in value and _is_scalar(value[k])), None)
        if verdict_key is not None:
            verdict = value[verdict_key]
            if _ok(verdict):
                return []
            cause = next((value[k] for k in CAUSE_KEYS if k in value and _is_scalar(value[k])), None)
            shown = _scalar(verdict) if verdict_key in ("status", "state", "health") \
                else f"{verdict_key}={_scalar(verdict)}"
            return [f"{path or verdict_key}: {shown}" + (f" ({_scalar(cause)})" if cause is not None else "")]
        parts = []
        for key, item in value.items():
            if isinstance(item, dict | list):
                parts += _nested(_join(path, str(key)), item, depth + 1)
            elif _bad(item):
                parts.append(f"{_join(path, str(key))}: {_scalar(item)}")
        return parts
    return [f"{path}: {_scalar(value)}"] if path and _bad(value) else []


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    text = " ".join(str(value).split())
    return text if len(text) <= 80 else text[:79] + "…"


def _ok(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):  # a nested status code or count is not a verdict we can read
        return True
    return isinstance(value, str) and value.strip().lower() in OK_WORDS


def _bad(value: Any) -> bool:
    if isinstance(value, bool):
        return not value
    return isinstance(value, str) and value.strip().lower() in BAD_WORDS
