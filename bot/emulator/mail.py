"""A real SMTP server for tests and the shell: aiosmtpd's Controller on 127.0.0.1 and a free port, keeping
every message it receives, parsed with the email package.

    with MailServer(username="opsbot", password="…", security="starttls") as mail:
        mail.host, mail.port, mail.cert_file     # cert_file: trust it (paging.email.ca_file) for TLS
        mail.messages[0].subject / .to / .text / .html
        mail.defer(1)                            # the next RCPT gets 451 (try again later)
        mail.refuse("nobody@example.com")        # RCPT to that address gets 550

`security`: "none" (plain; AUTH allowed without TLS), "starttls" (STARTTLS offered and required before
MAIL and AUTH), "tls" (TLS from the first byte). TLS uses a throwaway self-signed certificate for 127.0.0.1
and localhost, made at start with the `openssl` command (`TLS_AVAILABLE` says whether it is installed)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

Security = Literal["none", "starttls", "tls"]
TLS_AVAILABLE = shutil.which("openssl") is not None


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None = None  # who authenticated, if anyone

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def to(self) -> str:
        return str(self.message.get("To", ""))

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        return "" if body is None else str(body.get_content())

    @property
    def text(self) -> str:
        return self.part("plain")

    @property
    def html(self) -> str:
        return self.part("html")


@dataclass
class _Handler:
    messages: list[ReceivedMail] = field(default_factory=list)
    deferrals: int = 0
    refused: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            if self.deferrals > 0:
                self.deferrals -= 1
                return "451 4.3.0 Mailbox temporarily unavailable, try again later"
        if address.lower() in self.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = BytesParser(policy=policy.default).parsebytes(data)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.messages.append(ReceivedMail(str(envelope.mail_from), list(envelope.rcpt_tos), message,
                                          login))
        return "250 2.0.0 Message accepted for delivery"


class _Session(Session):
    """aiosmtpd 1.4 still sets the deprecated `login_data` on every login, warning each time."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SMTP(SMTP):
    def __init__(self, handler: Any, *, auth_without_tls: bool = False, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        # AUTH on a plain connection ("none", for tests) or inside implicit TLS, which aiosmtpd does not see as
        # TLS; set after __init__, which would warn about it.
        if auth_without_tls:
            self._auth_require_tls = False

    def _create_session(self) -> Session:
        return _Session(self.loop)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files for CN=localhost, IP 127.0.0.1, valid one day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


class MailServer:
    def __init__(self, *, security: Security = "none", username: str | None = None, password: str | None = None,
                 host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.security = security
        self.username = username
        self.password = password
        self.cert_file: str | None = None
        self._handler = _Handler()
        self._controller: _Controller | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self._handler.messages

    def defer(self, times: int = 1) -> None:
        """The next `times` recipients are answered 451 (a transient refusal: the sender should retry)."""
        with self._handler.lock:
            self._handler.deferrals += times

    def refuse(self, address: str) -> None:
        """Mail to `address` is refused for good (550)."""
        self._handler.refused.add(address.lower())

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> MailServer:
        kwargs: dict[str, Any] = {}
        context = None
        if self.security != "none":
            if not TLS_AVAILABLE:
                raise RuntimeError("the mail stand-in needs the openssl command for STARTTLS/TLS")
            self._dir = tempfile.TemporaryDirectory(prefix="opsbot-mail-")
            cert, key = self_signed(Path(self._dir.name))
            self.cert_file = str(cert)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        if self.security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        if self.username is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_without_tls=self.security != "starttls")
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            self.port = _free_port(self.host)
            self._controller = _Controller(self._handler, hostname=self.host, port=self.port,
                                           ssl_context=context if self.security == "tls" else None,
                                           server_hostname="mail.opsbot.test", **kwargs)
            try:
                self._controller.start()
            except OSError:
                self._controller = None
                if attempt == 2:
                    raise
                continue
            break
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
