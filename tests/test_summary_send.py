"""`--send`: the summary reaches a real local SMTP server (aiosmtpd) as HTML with its SVG charts, and a
real local HTTP server (apprise's json:// service) as a short neutralised text digest."""

from __future__ import annotations

import email
import json
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from monitor.config import AlertSettings
from monitor.core.errors import AlertError
from monitor.reports.summary import build as summary
from monitor.reports.summary.send import chat_text, send
from monitor.store import Store
from tests.receivers import HttpReceiver, SmtpReceiver
from tests.test_summary_week import HOSTILE_IP, NOW, UNTIL, WEEK, Week, build_week


@pytest.fixture(scope="session")
def summary_week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    return build_week(tmp_path_factory)


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(email.message_from_bytes(envelope.content))
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    inbox = _Inbox()
    port = _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], int]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def week_summary(summary_week: Week) -> summary.Summary:
    with Store.open(summary_week.db_url) as store:
        return summary.build(store, summary_week.settings, WEEK, UNTIL, now=NOW)


def _parts(message: Message) -> dict[str, list[Message]]:
    out: dict[str, list[Message]] = {}
    for part in message.walk():
        out.setdefault(part.get_content_type(), []).append(part)
    return out


def test_email_with_charts_and_chat_digest(
    week_summary: summary.Summary, smtp: tuple[_Inbox, int], webhook: tuple[list[dict[str, Any]], int]
) -> None:
    inbox, port = smtp
    posts, http_port = webhook
    settings = AlertSettings(
        urls=[
            f"mailto://127.0.0.1:{port}?from=a@example.com&to=b@example.com&mode=insecure",
            f"json://127.0.0.1:{http_port}/hook",
        ]
    )
    report = send(week_summary, settings)
    assert report.ok, report
    assert report.delivered == ["E-Mail (mailto#0)", "JSON (json#1)"]  # the live alerts' names

    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert inbox.envelopes[0] == ("a@example.com", ["b@example.com"])
    assert "40,607 requests" in message["Subject"] and "4 alerts" in message["Subject"]
    parts = _parts(message)
    html_parts = [p for p in parts["text/html"] if not p.get_filename()]
    body = html_parts[0].get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert body.count("<svg") == 3 and "Requests per day" in body and "<script" not in body
    attachments = [p for p in message.walk() if p.get_filename()]
    assert [a.get_filename() for a in attachments] == ["ollama-usage-2026-03-09.html"]
    assert attachments[0].get_payload(decode=True).decode("utf-8").count("<svg") == 3  # type: ignore[union-attr]
    assert "text/plain" in parts  # apprise adds a plain-text alternative

    assert len(posts) == 1
    digest = posts[0]["message"]
    assert digest == chat_text(week_summary)
    assert HOSTILE_IP in digest and len(digest) <= 1900
    assert "<" not in digest and "@everyone" not in digest and "http://" not in digest


def test_a_failing_target_is_reported_not_raised(
    week_summary: summary.Summary, smtp: tuple[_Inbox, int]
) -> None:
    inbox, port = smtp
    dead = _free_port()  # nothing listens there
    settings = AlertSettings(
        urls=[
            f"json://127.0.0.1:{dead}/hook?cto=1&rto=1",
            f"mailto://127.0.0.1:{port}?from=a@example.com&to=b@example.com&mode=insecure",
        ]
    )
    report = send(week_summary, settings)
    assert report.failed == ["JSON (json#0)"] and report.delivered == ["E-Mail (mailto#1)"] and not report.ok
    assert len(inbox.messages) == 1


def test_configuration_errors(week_summary: summary.Summary) -> None:
    with pytest.raises(AlertError, match="no alert targets"):
        send(week_summary, AlertSettings())
    with pytest.raises(AlertError, match=r"alerts.urls\[0\]: not a usable apprise URL") as info:
        send(week_summary, AlertSettings(urls=["notaservice://secret-token@host"]))
    assert "secret-token" not in str(info.value)


def test_chat_text_is_capped(week_summary: summary.Summary) -> None:
    assert len(chat_text(week_summary, limit=200)) <= 200


def test_tagged_urls_and_routes_like_live_alerts(week_summary: summary.Summary) -> None:
    """12.3: a tagged URL (`chat=json://...`, documented for live alerts) takes the summary, and
    `routes.info` decides which services get it (the summary is an info message)."""
    with HttpReceiver() as chat, HttpReceiver() as other, SmtpReceiver() as mail:
        urls = [f"email={mail.apprise_url()}", f"chat={chat.apprise_url()}", f"ops={other.apprise_url()}"]
        report = send(
            week_summary, AlertSettings(urls=urls, routes={"info": ["chat"], "critical": ["email"]})
        )
        assert report.ok and report.delivered == ["JSON (json#1)"], report
        (post,) = chat.wait_for(1)
        assert post.json["message"] == chat_text(week_summary)
        assert mail.received() == [] and other.received() == []

        everywhere = send(week_summary, AlertSettings(urls=urls))  # no info route: every service
        assert everywhere.delivered == ["E-Mail (mailto#0)", "JSON (json#1)", "JSON (json#2)"]
        assert len(mail.wait_for(1)) == 1 and len(other.wait_for(1)) == 1
