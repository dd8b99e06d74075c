"""Paging providers against real local stand-ins: PagerDuty Events v2 and its v3 webhooks, Opsgenie's
Alert API, a real SMTP server (aiosmtpd) and a signed-webhook receiver. No database involved."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.config.paging import Paging
from bot.emulator import mail as mail_standin
from bot.emulator.localserver import LocalServer
from bot.emulator.mail import MailServer
from bot.emulator.opsgenie import OpsgenieServer
from bot.emulator.pagerduty import PagerDutyServer, sign, webhook_envelope
from bot.errors import DependencyDown, InvalidInput
from bot.paging.providers import PageRejected, Throttled, build
from bot.paging.providers.base import Notice
from bot.paging.providers.pagerduty import parse_webhook, verify_signature
from bot.providers.rollback_webhook import verify_signature as verify_opsbot_signature

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's integration keys
GENIE_KEY = "genie-key-5f1c0b7e-22aa-4bd0"
SMTP_PASSWORD = "smtp-pw-9d8c7b6a"
HOOK_SECRET = "hook-secret-4e5f6a7b"
PD_SECRET = "pd-webhook-secret-aa11bb22"
ENV = {"PD_KEY": ROUTING_KEY, "OG_KEY": GENIE_KEY, "SMTP_PASSWORD": SMTP_PASSWORD, "HOOK_SECRET": HOOK_SECRET}
SECRETS = (ROUTING_KEY, GENIE_KEY, SMTP_PASSWORD, HOOK_SECRET)
LINK = "https://slack.com/app_redirect?channel=C0INC0012"


def notice(action: str = "trigger", **changes: Any) -> Notice:
    values: dict[str, Any] = {
        "subject": "incident:12", "dedup_key": "opsbot-incident-12", "action": action,
        "title": "INC-12 · P1 · Checkout <is> down & \"out\"", "severity": "P1", "urgent": True,
        "text": "Payments fail for everyone.\n<script>alert(1)</script>", "link": LINK,
        "details": {"Commander": "@alice", "Status": "<investigating>"},
    }
    return Notice(**{**values, **changes})


def paging(**sections: Any) -> Paging:
    return Paging.model_validate(sections)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every line logged, except httpx's request lines (opsbot runs httpx at WARNING: bot/logs.py)."""
    return "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if not r.name.startswith(("httpx", "httpcore")))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def pd() -> AsyncIterator[PagerDutyServer]:
    async with PagerDutyServer() as server:
        yield server


@pytest.fixture
async def og() -> AsyncIterator[OpsgenieServer]:
    async with OpsgenieServer(api_key=GENIE_KEY) as server:
        yield server


def pd_paging(pd: PagerDutyServer, **service: Any) -> Paging:
    return paging(pagerduty={"events_url": "${PD_URL}", "services": {
        "checkout": {"routing_key": "${PD_KEY}", **service},
        "broken": {"routing_key": "short-key"}}})


def pd_env(pd: PagerDutyServer) -> dict[str, str]:
    return {**ENV, "PD_URL": pd.url}


# -- PagerDuty Events v2 -----------------------------------------------------------------------------------

async def test_pagerduty_trigger_acknowledge_resolve_follow_one_alert(pd: PagerDutyServer,
                                                                      http: httpx.AsyncClient) -> None:
    provider = build(pd_paging(pd), http, pd_env(pd))["pagerduty"]
    delivered = [await provider.send("checkout", notice(action)) for action in ("trigger", "acknowledge", "resolve")]
    assert [d.reference for d in delivered] == ["opsbot-incident-12"] * 3
    assert [(e.action, e.dedup_key, e.dropped) for e in pd.state.events] == [
        ("trigger", "opsbot-incident-12", False), ("acknowledge", "opsbot-incident-12", False),
        ("resolve", "opsbot-incident-12", False)]
    alert = pd.state.alerts["opsbot-incident-12"]
    assert (alert.status, len(alert.events)) == ("resolved", 3)
    trigger = pd.state.events[0].body
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["summary"] == "INC-12 · P1 · Checkout <is> down & \"out\""
    assert (trigger["payload"]["source"], trigger["payload"]["severity"]) == ("opsbot", "critical")
    assert trigger["payload"]["custom_details"]["Commander"] == "@alice"
    assert trigger["links"] == [{"href": LINK, "text": "Slack channel"}] and trigger["client_url"] == LINK
    assert "payload" not in pd.state.events[1].body  # acknowledge and resolve name the key only


@pytest.mark.parametrize(("severity", "urgent", "rank", "expected"), [
    ("P1", True, None, "critical"), ("P2", False, None, "error"), ("P3", False, None, "warning"),
    ("minor", False, 1, "error"), ("minor", False, 3, "warning"), ("warning", False, None, "warning"),
    ("P2", False, None, "info"),  # the service's own map wins (below)
])
async def test_pagerduty_severity_from_the_map_urgency_or_rank(pd: PagerDutyServer, http: httpx.AsyncClient,
                                                               severity: str, urgent: bool, rank: int | None,
                                                               expected: str) -> None:
    mapping = {"severity": {"P2": "info"}} if expected == "info" else {}
    provider = build(pd_paging(pd, **mapping), http, pd_env(pd))["pagerduty"]
    await provider.send("checkout", notice(severity=severity, urgent=urgent, rank=rank))
    assert pd.state.events[-1].body["payload"]["severity"] == expected


async def test_pagerduty_5xx_and_429_are_transient_without_the_key(pd: PagerDutyServer, http: httpx.AsyncClient,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = build(pd_paging(pd), http, pd_env(pd))["pagerduty"]
    pd.state.fail(1, status=500)
    pd.state.fail(1, status=429, retry_after=30)
    with pytest.raises(DependencyDown) as server_error:
        await provider.send("checkout", notice())
    with pytest.raises(Throttled) as throttled:
        await provider.send("checkout", notice())
    assert "HTTP 500" in str(server_error.value)
    assert "HTTP 429" in str(throttled.value) and "retry after 30 s" in str(throttled.value)
    assert throttled.value.retry_after == 30
    await provider.send("checkout", notice())  # the third attempt goes through, once
    assert [e.action for e in pd.state.events] == ["trigger"] and pd.state.requests == 3
    assert_no_secret(str(server_error.value), str(throttled.value), log_text(caplog))


async def test_pagerduty_refuses_a_bad_key_for_good_and_says_why(pd: PagerDutyServer, http: httpx.AsyncClient,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = build(pd_paging(pd), http, pd_env(pd))["pagerduty"]
    with pytest.raises(PageRejected) as refused:
        await provider.send("broken", notice())
    assert "HTTP 400" in str(refused.value) and "routing_key" in str(refused.value)
    assert "short-key" not in str(refused.value)
    with pytest.raises(PageRejected, match="No PagerDuty service `nope`"):
        await provider.send("nope", notice())
    with pytest.raises(PageRejected, match="PD_KEY is not set"):
        await build(pd_paging(pd), http, {"PD_URL": pd.url})["pagerduty"].send("checkout", notice())
    assert pd.state.events == []
    assert_no_secret(str(refused.value), log_text(caplog))


async def test_pagerduty_unreachable_is_transient(http: httpx.AsyncClient) -> None:
    async with PagerDutyServer() as gone:
        url = gone.url
    provider = build(paging(pagerduty={"events_url": url, "services": {"checkout": {"routing_key": "${PD_KEY}"}}}),
                     http, ENV)["pagerduty"]
    with pytest.raises(DependencyDown, match="unreachable"):
        await provider.send("checkout", notice())


async def test_pagerduty_stand_in_validates_events_as_documented(pd: PagerDutyServer,
                                                                 http: httpx.AsyncClient) -> None:
    async def enqueue(body: Any) -> httpx.Response:
        return await http.post(f"{pd.url}/v2/enqueue", content=json.dumps(body))

    good = {"routing_key": ROUTING_KEY, "event_action": "trigger",
            "payload": {"summary": "Disk full", "source": "db1", "severity": "error"}}
    accepted = await enqueue(good)
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "success" and accepted.json()["message"] == "Event processed"
    assert len(accepted.json()["dedup_key"]) >= 16  # made up by PagerDuty when the trigger has none
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "routing_key": "abc"}, "Length of 'routing_key' is incorrect (should be 32 characters)"),
        ({**good, "event_action": "open"}, "'event_action' is invalid"),
        ({**good, "payload": {"source": "db1", "severity": "error"}}, "'payload.summary' is missing"),
        ({**good, "payload": {"summary": "x", "severity": "error"}}, "'payload.source' is missing"),
        ({**good, "payload": {"summary": "x", "source": "db1", "severity": "fatal"}}, "'payload.severity' is invalid"),
        ({"routing_key": ROUTING_KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
    ]
    for body, error in cases:
        answer = await enqueue(body)
        assert answer.status_code == 400, body
        assert answer.json()["status"] == "invalid event" and answer.json()["message"] == "Event object is invalid"
        assert any(error in e for e in answer.json()["errors"]), (error, answer.json())
    resolved_nothing = await enqueue({"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "nope"})
    assert resolved_nothing.status_code == 202 and pd.state.events[-1].dropped  # accepted and dropped, as documented
    assert len([e for e in pd.state.events if not e.dropped]) == 1


# -- PagerDuty v3 webhooks -----------------------------------------------------------------------------------

def test_pagerduty_webhook_signature_good_bad_and_rotated() -> None:
    body = json.dumps(webhook_envelope("incident.acknowledged", "opsbot-incident-12", "Alice")).encode()
    assert verify_signature(PD_SECRET, body, sign(PD_SECRET, body))
    assert not verify_signature(PD_SECRET, body, sign("another-secret", body))
    assert not verify_signature(PD_SECRET, body + b" ", sign(PD_SECRET, body))  # the raw bytes, not re-serialised
    assert not verify_signature(PD_SECRET, body, None) and not verify_signature(PD_SECRET, body, "")
    assert not verify_signature(PD_SECRET, body, "v0=" + sign(PD_SECRET, body)[3:])
    rotated_new = sign(["old-secret-0001", PD_SECRET], body)
    rotated_old = sign([PD_SECRET, "new-secret-0002"], body)
    assert rotated_new.count("v1=") == 2
    assert verify_signature(PD_SECRET, body, rotated_new) and verify_signature(PD_SECRET, body, rotated_old)
    assert verify_signature(PD_SECRET, body, rotated_new.replace(",", ", ").upper().replace("V1=", "v1="))
    assert not verify_signature(PD_SECRET, body, sign(["old-secret-0001", "new-secret-0002"], body))


def test_pagerduty_webhook_parsing_of_acknowledged_and_resolved() -> None:
    acked = parse_webhook(json.dumps(webhook_envelope("incident.acknowledged", "opsbot-incident-12", "Alice Example",
                                                      event_id="01ABCDEF")).encode())
    assert (acked.id, acked.kind, acked.event_type) == ("01ABCDEF", "acknowledged", "incident.acknowledged")
    assert (acked.dedup_key, acked.agent) == ("opsbot-incident-12", "Alice Example")
    assert acked.occurred_at is not None and acked.occurred_at.tzinfo is not None
    assert acked.url is not None and acked.url.startswith("https://")
    resolved = parse_webhook(json.dumps(webhook_envelope("incident.resolved", "opsbot-alert-p95-1700000000",
                                                         None)).encode())
    assert (resolved.kind, resolved.dedup_key, resolved.agent) == ("resolved", "opsbot-alert-p95-1700000000", None)
    service = parse_webhook(json.dumps({"event": {"id": "X1", "event_type": "service.updated",
                                                  "resource_type": "service", "data": {"type": "service"}}}).encode())
    assert (service.kind, service.dedup_key) == ("service.updated", None)
    for junk in (b"not json", b"[]", b'{"event": {"id": "1"}}', b'{"messages": []}'):
        with pytest.raises(InvalidInput, match="PagerDuty"):
            parse_webhook(junk)


async def test_pagerduty_stand_in_sends_a_signed_webhook_opsbot_can_verify(pd: PagerDutyServer,
                                                                           http: httpx.AsyncClient) -> None:
    received: list[tuple[bytes, dict[str, str]]] = []

    async def receive(request: Request) -> JSONResponse:
        received.append((await request.body(), dict(request.headers)))
        return JSONResponse({}, status_code=200)

    provider = build(pd_paging(pd), http, pd_env(pd))["pagerduty"]
    await provider.send("checkout", notice())
    async with LocalServer(Starlette(routes=[Route("/webhooks/pagerduty", receive, methods=["POST"])])) as opsbot:
        answer = await pd.send_webhook(f"{opsbot.url}/webhooks/pagerduty", [PD_SECRET, "rotating-in-2"],
                                       "incident.acknowledged", "opsbot-incident-12", "Bob Builder", webhook_id="w-1")
    assert answer.status_code == 200
    [(body, headers)] = received
    assert headers["x-webhook-id"] == "w-1"
    assert verify_signature(PD_SECRET, body, headers["x-pagerduty-signature"])
    event = parse_webhook(body)
    assert (event.kind, event.dedup_key, event.agent) == ("acknowledged", "opsbot-incident-12", "Bob Builder")
    assert json.loads(body)["event"]["data"]["title"] == "INC-12 · P1 · Checkout <is> down & \"out\""
    assert pd.state.alerts["opsbot-incident-12"].status == "acknowledged"


# -- Opsgenie ------------------------------------------------------------------------------------------------

def og_paging(og: OpsgenieServer, teams: list[str] | None = None) -> Paging:
    return paging(opsgenie={"api_url": og.url, "api_key": "${OG_KEY}", "teams": teams or []})


async def test_opsgenie_create_acknowledge_close_by_alias(og: OpsgenieServer, http: httpx.AsyncClient) -> None:
    provider = build(og_paging(og, ["payments"]), http, ENV)["opsgenie"]
    trigger = await provider.send("payments", notice(severity="P2", urgent=False))
    assert trigger.reference == og.state.requests[0].id
    await provider.send("payments", notice())  # a retried create updates the open alert
    await provider.send("payments", notice("acknowledge"))
    await provider.send("payments", notice("resolve"))
    [alert] = og.state.alerts.values()
    assert (alert.alias, alert.priority, alert.count) == ("opsbot-incident-12", "P2", 2)
    assert (alert.acknowledged, alert.status) == (True, "closed")
    assert alert.responders == [{"type": "team", "name": "payments"}]
    assert alert.message == "INC-12 · P1 · Checkout <is> down & \"out\""
    assert LINK in alert.description and alert.details["slack"] == LINK
    assert [(r.action, r.success) for r in og.state.requests] == [
        ("Create", True), ("Create", True), ("Acknowledge", True), ("Close", True)]
    with pytest.raises(PageRejected, match=r"not in paging\.opsgenie\.teams"):
        await provider.send("marketing", notice())


async def test_opsgenie_priority_and_message_limit(og: OpsgenieServer, http: httpx.AsyncClient) -> None:
    provider = build(og_paging(og), http, ENV)["opsgenie"]
    for i, (severity, urgent) in enumerate([("P1", True), ("P3", False), ("P9", False), ("odd", False)]):
        await provider.send("ops", notice(dedup_key=f"k{i}", severity=severity, urgent=urgent, title="x" * 300))
    alerts = list(og.state.alerts.values())
    assert [a.priority for a in alerts] == ["P1", "P3", "P5", "P3"]
    assert all(len(a.message) == 130 for a in alerts)


async def test_opsgenie_wrong_key_is_final_and_5xx_transient_never_showing_the_key(
        og: OpsgenieServer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = build(og_paging(og), http, {**ENV, "OG_KEY": "genie-key-wrong-0000"})["opsgenie"]
    with pytest.raises(PageRejected) as refused:
        await wrong.send("ops", notice())
    assert "HTTP 401" in str(refused.value) and "genie-key-wrong" not in str(refused.value)
    provider = build(og_paging(og), http, ENV)["opsgenie"]
    og.state.fail(1, status=503)
    with pytest.raises(DependencyDown) as down:
        await provider.send("ops", notice())
    assert "HTTP 503" in str(down.value)
    assert og.state.alerts == {}
    assert_no_secret(str(refused.value), str(down.value), log_text(caplog))


async def test_opsgenie_stand_in_checks_the_body_and_identifier_type(og: OpsgenieServer,
                                                                     http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"GenieKey {GENIE_KEY}"}
    empty = await http.post(f"{og.url}/v2/alerts", json={"message": "", "priority": "P7"}, headers=auth)
    assert empty.status_code == 422 and set(empty.json()["errors"]) == {"message", "priority"}
    assert (await http.post(f"{og.url}/v2/alerts", json={"message": "m"})).status_code == 401
    created = await http.post(f"{og.url}/v2/alerts", json={"message": "m", "alias": "a-1"}, headers=auth)
    assert created.status_code == 202 and created.json()["result"] == "Request will be processed"
    bad_type = await http.post(f"{og.url}/v2/alerts/a-1/close?identifierType=name", json={}, headers=auth)
    assert bad_type.status_code == 422
    by_id = await http.post(f"{og.url}/v2/alerts/a-1/close", json={}, headers=auth)  # identifierType=id by default
    status = await http.get(f"{og.url}/v2/alerts/requests/{by_id.json()['requestId']}", headers=auth)
    assert status.json()["data"]["status"] == "Alert does not exist"
    assert [a.status for a in og.state.alerts.values()] == ["open"]


# -- E-mail --------------------------------------------------------------------------------------------------

def mail_paging(server: MailServer, security: str = "none", **extra: Any) -> Paging:
    return paging(email={"host": server.host, "port": server.port, "security": security, "from": "opsbot@acme.test",
                         **extra})


@pytest.fixture(scope="module")
def mailbox() -> Iterator[MailServer]:
    with MailServer(username="opsbot", password=SMTP_PASSWORD) as server:
        yield server


async def test_email_has_both_parts_escaped_with_the_slack_link(mailbox: MailServer, http: httpx.AsyncClient) -> None:
    start = len(mailbox.messages)
    provider = build(mail_paging(mailbox, username="opsbot", password="${SMTP_PASSWORD}"), http,
                     ENV)["email"]
    delivery = await provider.send("oncall@acme.test", notice())
    [mail] = mailbox.messages[start:]
    assert mail.recipients == ["oncall@acme.test"] and mail.to == "oncall@acme.test" and mail.login == "opsbot"
    assert mail.sender == "opsbot@acme.test"
    assert mail.subject == "INC-12 · P1 · Checkout <is> down & \"out\""
    assert mail.message.get_content_type() == "multipart/alternative"
    assert mail.message["Message-ID"] == delivery.reference == "<opsbot-incident-12.trigger@acme.test>"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    assert "Checkout <is> down" in mail.text and "<script>alert(1)</script>" in mail.text
    assert f"Slack channel: {LINK}" in mail.text and "Severity: P1 (urgent)" in mail.text
    assert "Commander: @alice" in mail.text
    html = mail.html
    assert "Checkout &lt;is&gt; down &amp; &quot;out&quot;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "&lt;investigating&gt;" in html
    assert f'<a href="{LINK}">' in html


async def test_email_message_id_is_stable_per_page_and_action(mailbox: MailServer, http: httpx.AsyncClient) -> None:
    start = len(mailbox.messages)
    provider = build(mail_paging(mailbox, username="opsbot", password="${SMTP_PASSWORD}"), http, ENV)["email"]
    first = await provider.send("oncall@acme.test", notice(dedup_key="opsbot-page-7", page_key="p7:level1"))
    retry = await provider.send("oncall@acme.test", notice(dedup_key="opsbot-page-7", page_key="p7:level1"))
    repeat = await provider.send("oncall@acme.test", notice(dedup_key="opsbot-page-7", page_key="p7:level1:cycle2"))
    resolved = await provider.send("oncall@acme.test", notice("resolve", dedup_key="opsbot-page-7"))
    assert first.reference == retry.reference  # a retry is recognisably the same mail
    assert len({first.reference, repeat.reference, resolved.reference}) == 3  # another page is another mail
    assert str(first.reference).startswith("<opsbot-page-7.trigger.") and str(first.reference).endswith("@acme.test>")
    mails = mailbox.messages[start:]
    assert {m.message["References"] for m in mails} == {"<opsbot-page-7@acme.test>"}  # one thread
    assert mails[-1].subject.startswith("Resolved: ")
    assert mails[-1].message["In-Reply-To"] == "<opsbot-page-7@acme.test>"


async def test_email_wrong_password_is_final_and_a_deferral_transient(mailbox: MailServer, http: httpx.AsyncClient,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    start = len(mailbox.messages)
    wrong = build(mail_paging(mailbox, username="opsbot", password="${SMTP_PASSWORD}"), http,
                  {"SMTP_PASSWORD": "smtp-pw-wrong-000"})["email"]
    with pytest.raises(PageRejected, match="refused opsbot's login") as refused:
        await wrong.send("oncall@acme.test", notice())
    provider = build(mail_paging(mailbox, username="opsbot", password="${SMTP_PASSWORD}"), http,
                     ENV)["email"]
    mailbox.defer(1)
    with pytest.raises(DependencyDown, match="451") as deferred:
        await provider.send("oncall@acme.test", notice())
    mailbox.refuse("gone@acme.test")
    with pytest.raises(PageRejected, match="550") as gone:
        await provider.send("gone@acme.test", notice())
    with pytest.raises(PageRejected, match="not an e-mail address"):
        await provider.send("oncall@acme.test\r\nBcc: x@evil.test", notice())
    assert mailbox.messages[start:] == []
    assert_no_secret(str(refused.value), str(deferred.value), str(gone.value), log_text(caplog))
    assert "smtp-pw-wrong" not in str(refused.value) + log_text(caplog)


async def test_email_server_down_is_transient(http: httpx.AsyncClient) -> None:
    with MailServer() as server:
        config = mail_paging(server)
    with pytest.raises(DependencyDown, match="unreachable"):
        await build(config, http, ENV)["email"].send("oncall@acme.test", notice())


@pytest.mark.skipif(not mail_standin.TLS_AVAILABLE, reason="the openssl command makes the throwaway certificate")
@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_starttls_and_tls_with_auth(security: str, http: httpx.AsyncClient) -> None:
    with MailServer(security=security, username="opsbot", password=SMTP_PASSWORD) as server:  # type: ignore[arg-type]
        trusted = mail_paging(server, security, username="opsbot", password="${SMTP_PASSWORD}",
                              ca_file=server.cert_file)
        await build(trusted, http, ENV)["email"].send("oncall@acme.test", notice())
        untrusted = mail_paging(server, security, username="opsbot", password="${SMTP_PASSWORD}")
        with pytest.raises(PageRejected, match="certificate is not trusted"):
            await build(untrusted, http, ENV)["email"].send("oncall@acme.test", notice())
        [mail] = server.messages
    assert mail.login == "opsbot" and mail.subject.startswith("INC-12")


@pytest.mark.skipif(not mail_standin.TLS_AVAILABLE, reason="the openssl command makes the throwaway certificate")
async def test_email_plain_connection_to_a_server_requiring_starttls_is_refused(
        http: httpx.AsyncClient) -> None:
    with MailServer(security="starttls") as server:
        with pytest.raises(PageRejected):
            await build(mail_paging(server, "none"), http, ENV)["email"].send("a@acme.test", notice())
        assert server.messages == []


# -- Webhook -------------------------------------------------------------------------------------------------

class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, str]]] = []
        self.answers: list[int] = []

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            self.requests.append((await request.body(), dict(request.headers)))
            status = self.answers.pop(0) if self.answers else 200
            return JSONResponse({"ok": status < 300, "echo": request.url.query}, status_code=status)

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def test_webhook_posts_signed_json_stable_delivery_and_errors(http: httpx.AsyncClient,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    async with LocalServer(receiver.app()) as server:
        config = paging(webhooks={"ops": {"url": f"{server.url}/hook?token=url-token-123456",
                                          "secret": "${HOOK_SECRET}"}})
        provider = build(config, http, ENV)["webhook"]
        receiver.answers = [503, 401]
        with pytest.raises(DependencyDown, match="HTTP 503") as down:
            await provider.send("ops", notice())
        with pytest.raises(PageRejected, match="HTTP 401") as refused:
            await provider.send("ops", notice())
        delivered = await provider.send("ops", notice())
        await provider.send("ops", notice("resolve"))
    assert len(receiver.requests) == 4
    body, headers = receiver.requests[2]
    assert verify_opsbot_signature(HOOK_SECRET, body, headers["x-opsbot-signature"])
    assert not verify_opsbot_signature("other-secret", body, headers["x-opsbot-signature"])
    data = json.loads(body)
    assert data["event"] == "trigger" and data["dedup_key"] == "opsbot-incident-12" and data["link"] == LINK
    assert data["details"] == {"Commander": "@alice", "Status": "<investigating>"}
    assert str(data["timestamp"]) == headers["x-opsbot-timestamp"]
    deliveries = [h["x-opsbot-delivery"] for _b, h in receiver.requests]
    assert deliveries[0] == deliveries[1] == deliveries[2] == delivered.reference != deliveries[3]
    said = str(down.value) + str(refused.value) + log_text(caplog)
    assert_no_secret(said)
    assert "url-token-123456" not in said


async def test_build_makes_only_the_configured_providers(http: httpx.AsyncClient) -> None:
    assert build(Paging(), http) == {}
    config = paging(pagerduty={"services": {}}, opsgenie={"api_key": "${OG_KEY}"},
                    email={"host": "localhost", "from": "o@acme.test"},
                    webhooks={"w": {"url": "https://hooks.acme.test/x", "secret": "${HOOK_SECRET}"}})
    assert sorted(build(config, http)) == ["email", "opsgenie", "pagerduty", "webhook"]
