"""Public text: what a person wrote for customers, cleaned of what is internal before it is stored.

Slack mentions (users, groups, channels, @here), channel names (`#inc-42-db`), user ids, links to hosts
opsbot checks (health check URLs name internal endpoints) and any secret the scrubber knows are removed;
links elsewhere keep their label and
their address. The page escapes the rest (Jinja2 autoescape)."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlsplit

from bot.config import Config

MAX_TEXT = 2000
_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
_URL = re.compile(r"\bhttps?://[^\s<>\"']+", re.IGNORECASE)
_USER_ID = re.compile(r"\b[UW][A-Z0-9]{8,}\b")
_CHANNEL = re.compile(r"(?<![\w&])#[A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*")
_SPACES = re.compile(r"[ \t]+")


def internal_hosts(config: Config) -> set[str]:
    """Hosts of every URL opsbot checks or calls: links to them are internal."""
    hosts: set[str] = set()
    for env in config.environments.values():
        for check in env.checks:
            url = getattr(check, "url", None)
            if url is not None:
                hosts |= {h.lower() for h in (_host(str(url)), _host(_revealed(url))) if h}
            host = getattr(check, "host", None)
            if isinstance(host, str) and host:
                hosts.add(host.lower())
    return hosts


def _host(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _revealed(url: object) -> str:
    """The URL with its `${VAR}`s substituted (when they are set): its host is what is checked."""
    try:
        return str(url.reveal()) if hasattr(url, "reveal") else str(url)
    except Exception:
        return ""


def _internal(url: str, hosts: set[str]) -> bool:
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return True
    return not host or host in hosts


def clean(text: str, *, config: Config, scrub: Callable[[str], str] | None = None) -> str:
    """`text` as Slack sent it (escaped, with <…> mentions and links), made fit for the public."""
    hosts = internal_hosts(config)

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), (match.group(2) or "").strip()
        if target[:1] in ("@", "#", "!"):  # a user, a channel, a group, @here: never public
            return ""
        if re.match(r"(?i)^(https?|mailto):", target):
            if _internal(target, hosts):  # its label names something internal too
                return ""
            return f"{label} ({target})" if label and label != target else target
        return label

    out = _SLACK_LINK.sub(link, text or "")
    out = out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    out = _URL.sub(lambda m: "" if _internal(m.group(0), hosts) else m.group(0), out)
    out = _USER_ID.sub("", out)
    out = _CHANNEL.sub("", out)
    if scrub is not None:
        out = scrub(out)
    lines = [_SPACES.sub(" ", line).strip() for line in out.splitlines()]
    return "\n".join(line for line in lines if line)[:MAX_TEXT].strip()
