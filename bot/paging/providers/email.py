"""`email:<address>` — a page as an e-mail over SMTP (STARTTLS, TLS or plain to a local relay; optional AUTH).

One multipart/alternative message: a plain-text part and an HTML part (every value HTML-escaped) with the
title, severity, text, details and the Slack link. Its Message-ID is derived from the dedup key and the
action (and the page's own key), so a retry of a page that in fact went out carries the same id (mail systems
and people can tell it is the same page); every mail about one subject refers to one thread id."""

from __future__ import annotations

import hashlib
import html
import os
import re
import ssl
from collections.abc import Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from bot.config.paging import Email
from bot.config.secrets import EnvRef
from bot.config.targets import EMAIL_RE
from bot.durations import format_duration
from bot.errors import DependencyDown
from bot.paging.providers import _http
from bot.paging.providers.base import Action, Delivery, Notice, PageRejected, Provider
from bot.secrets import scrub

PREFIX: dict[Action, str] = {"trigger": "", "acknowledge": "Acknowledged: ", "resolve": "Resolved: "}
VERB: dict[Action, str] = {"trigger": "", "acknowledge": "acknowledged", "resolve": "resolved"}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _key(dedup_key: str) -> str:
    return dedup_key if _SAFE_KEY.match(dedup_key) else hashlib.sha256(dedup_key.encode()).hexdigest()[:32]


def _domain(sender: str) -> str:
    return sender.rpartition("@")[2].strip(" >") or "opsbot.invalid"


def message_id(dedup_key: str, action: Action, sender: str, page_key: str | None = None) -> str:
    """`<opsbot-incident-12.trigger.1a2b3c4d5e6f@example.com>`: the same for every attempt at one page."""
    page = f".{hashlib.sha256(page_key.encode()).hexdigest()[:12]}" if page_key else ""
    return f"<{_key(dedup_key)}.{action}{page}@{_domain(sender)}>"


def thread_id(dedup_key: str, sender: str) -> str:
    """`<opsbot-incident-12@example.com>`: every mail about one subject refers to it (one thread)."""
    return f"<{_key(dedup_key)}@{_domain(sender)}>"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _link(notice: Notice) -> str | None:
    return notice.link if notice.link and notice.link.startswith(("https://", "http://")) else None


def plain_text(notice: Notice) -> str:
    lines = [_one_line(notice.title)]
    if VERB[notice.action]:
        lines.append(f"This page was {VERB[notice.action]} in opsbot.")
    lines += ["", f"Severity: {notice.severity}" + (" (urgent)" if notice.urgent else "")]
    lines += [f"{key}: {value}" for key, value in notice.details.items()]
    if notice.text:
        lines += ["", notice.text]
    if _link(notice):
        lines += ["", f"Slack channel: {notice.link}"]
    lines += ["", f"-- opsbot ({notice.dedup_key})"]
    return "\n".join(lines) + "\n"


def html_text(notice: Notice) -> str:
    e = html.escape
    rows = [("Severity", notice.severity + (" (urgent)" if notice.urgent else "")), *notice.details.items()]
    table = "".join(f"<tr><th align=\"left\">{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    parts = [f"<h2>{e(_one_line(notice.title))}</h2>"]
    if VERB[notice.action]:
        parts.append(f"<p><strong>This page was {VERB[notice.action]} in opsbot.</strong></p>")
    parts.append(f"<table>{table}</table>")
    if notice.text:
        parts.append("<p>" + e(notice.text).replace("\n", "<br>\n") + "</p>")
    link = _link(notice)
    if link:
        parts.append(f"<p><a href=\"{e(link, quote=True)}\">Open the Slack channel</a></p>")
    parts.append(f"<p style=\"color:#888\">opsbot · {e(notice.dedup_key)}</p>")
    return "<!DOCTYPE html>\n<html><body>\n" + "\n".join(parts) + "\n</body></html>\n"


def compose(notice: Notice, *, sender: str, to: str) -> EmailMessage:
    """The whole message (also what the tests and the shell read back)."""
    message = EmailMessage()
    message["Subject"] = _one_line(PREFIX[notice.action] + notice.title)[:250]
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(notice.dedup_key, notice.action, sender, notice.page_key)
    message["References"] = thread_id(notice.dedup_key, sender)
    if notice.action != "trigger":
        message["In-Reply-To"] = thread_id(notice.dedup_key, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message["X-Auto-Response-Suppress"] = "All"
    message["X-Opsbot-Dedup-Key"] = notice.dedup_key if _SAFE_KEY.match(notice.dedup_key) else "(long)"
    message.set_content(plain_text(notice))
    message.add_alternative(html_text(notice), subtype="html")
    return message


def _untrusted(exc: BaseException) -> bool:
    """Whether a failed connection or STARTTLS was a certificate the client does not trust (final)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class EmailProvider(Provider):
    kind = "email"

    def __init__(self, config: Email, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = os.environ if environ is None else environ

    def _secret(self, ref: EnvRef | None, field: str) -> str | None:
        if ref is None:
            return None
        return _http.configured(lambda: ref.reveal(self.environ, where=f"paging.email.{field}"))

    async def send(self, name: str, notice: Notice) -> Delivery:
        cfg = self.config
        if not EMAIL_RE.match(name) or any(c in name for c in "\r\n,;"):
            raise PageRejected(f"`{name}` is not an e-mail address.")
        host, port = _http.configured(lambda: cfg.address(self.environ))
        username = self._secret(cfg.username, "username")
        password = self._secret(cfg.password, "password")
        message = compose(notice, sender=cfg.from_, to=name)
        context = None
        if cfg.ca_file and cfg.security != "none":
            try:
                context = ssl.create_default_context(cafile=cfg.ca_file)
            except (OSError, ssl.SSLError):
                raise PageRejected("paging.email.ca_file cannot be read as PEM certificates.") from None
        secrets = [s for s in (password, username) if s]
        try:
            await aiosmtplib.send(message, hostname=host, port=port, username=username, password=password,
                                  use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
                                  tls_context=context, timeout=cfg.timeout.total_seconds())
        except aiosmtplib.SMTPTimeoutError:
            raise DependencyDown(f"The mail server did not answer within {format_duration(cfg.timeout)}.") from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise PageRejected(f"The mail server refused opsbot's login ({exc.code}).") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            text = scrub("; ".join(f"{r.code} {_one_line(r.message)}" for r in exc.recipients)[:200], secrets)
            if codes and all(400 <= c < 500 for c in codes):
                raise DependencyDown(f"The mail server deferred {name} ({text}).") from None
            raise PageRejected(f"The mail server refused {name} ({text}).") from None
        except aiosmtplib.SMTPResponseException as exc:
            text = scrub(f"{exc.code} {_one_line(exc.message)}"[:200], secrets)
            if 400 <= exc.code < 500:
                raise DependencyDown(f"The mail server deferred the page ({text}).") from None
            raise PageRejected(f"The mail server refused the page ({text}).") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError) as exc:
            if _untrusted(exc):
                raise PageRejected("The mail server's TLS certificate is not trusted (set paging.email.ca_file "
                                   "for a private CA).") from None
            raise DependencyDown(f"The mail server is unreachable ({type(exc).__name__}).") from None
        except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS or AUTH not offered: a setup problem, final
            raise PageRejected(f"Cannot send the page: {scrub(_one_line(str(exc))[:200], secrets)}.") from None
        _http.log.info("Mail server accepted %s %s for %s", notice.action, notice.dedup_key, name)
        return Delivery(str(message["Message-ID"]), f"E-mail to {name} ({notice.action})")
