"""One scrubber for every secret opsbot knows, used by the log formatter and by command output alike.

What it masks: the settings' secrets (Slack tokens, signing secret, endpoint tokens, the database
password), the values of every `${VAR}` opsbot.yml references (read from the environment), and
anything shaped like a Slack or GitHub token or a password inside a URL.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus, unquote

if TYPE_CHECKING:
    from bot.config import Config
    from bot.settings import Settings

MASK = "***"
# Shorter values are not masked by value: a 3-letter `${VAR}` ("dev", "443") would blank out ordinary words.
MIN_SETTINGS_SECRET = 4
MIN_CONFIG_VALUE = 6

_SLACK_TOKEN = re.compile(r"xox[abposre]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")
_GITHUB_TOKEN = re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}")
# Linear on any input (command output can be 40,000 'x's): every part is bounded, the scheme starts a word.
_URL_PASSWORD = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^:/@\s]{1,256}):[^@\s]{1,512}@")
_PASSWORD_IN_URL = re.compile(r"://[^:/@\s]{1,256}:([^@\s]{1,512})@")


class Scrubber:
    """`scrubber(text)`: `text` with every known secret value and token-shaped string replaced by `***`."""

    __slots__ = ("_values", "count")

    def __init__(self, values: Iterable[str] = ()) -> None:
        given = {v for v in values if v}
        self.count = len(given)
        # Each value also as a URL, a form or a JSON string / repr shows it ('+', '/', '=', quotes, backslashes).
        unique = sorted({form for v in given for form in _forms(v)}, key=len, reverse=True)  # longest first
        self._values = re.compile("|".join(map(re.escape, unique))) if unique else None

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MASK, text)
        text = _SLACK_TOKEN.sub("xox*-***", text)
        text = _GITHUB_TOKEN.sub("gh*_***", text)
        return _URL_PASSWORD.sub(r"\g<scheme>:***@", text)

    def __repr__(self) -> str:
        return f"Scrubber({self.count} values)"

    @classmethod
    def of(cls, *, settings: Settings, config: Config | None = None,
           environ: Mapping[str, str] | None = None) -> Scrubber:
        values = settings_secrets(settings)
        if config is not None:
            values += config_secrets(config, os.environ if environ is None else environ)
        return cls(values)


def _forms(value: str) -> set[str]:
    """`value` and the escaped forms it takes when printed inside a URL, a form body, JSON or a repr()."""
    return {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
            repr(value)[1:-1]}


def _url_passwords(url: str) -> list[str]:
    """The passwords in `url`, as written (percent-encoded) and decoded (as a client library uses them)."""
    return [form for p in _PASSWORD_IN_URL.findall(url) for form in dict.fromkeys((p, unquote(p)))]


def _with_url_passwords(value: str) -> list[str]:
    """The value and, when it holds a URL with a password, that password on its own (PGPASSWORD=… prints it)."""
    return [value, *_url_passwords(value)]


def settings_secrets(settings: Settings) -> list[str]:
    tokens = [settings.slack_bot_token, settings.slack_signing_secret, settings.slack_app_token,
              settings.deploys_token, settings.alertmanager_token]
    out = [t.get_secret_value() for t in tokens if t is not None]
    # Of the database URL only the password is secret (the URL pattern masks it inside URLs too).
    out += _url_passwords(settings.database_url.get_secret_value())
    return [v for v in out if len(v) >= MIN_SETTINGS_SECRET]


def config_secrets(config: Config, environ: Mapping[str, str]) -> list[str]:
    """The values of every `${VAR}` the config references (collected once from the loaded config)."""
    from bot.config import referenced_env

    out: list[str] = []
    for name in referenced_env(config):
        value = environ.get(name)
        if value:
            out += [v for v in _with_url_passwords(value) if len(v) >= MIN_CONFIG_VALUE]
    return out


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """One-off: `text` scrubbed of `secrets` and of token- and password-shaped strings."""
    return Scrubber(s for s in secrets if len(s) >= MIN_SETTINGS_SECRET)(text)
