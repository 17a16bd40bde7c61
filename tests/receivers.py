"""Real notification receivers on 127.0.0.1 for tests: an SMTP server and an HTTP (webhook) server.

Both start on an ephemeral port, record what they receive, can be stopped (the port then refuses
connections, like a receiver that is down) and restarted on the SAME port, so a queued notification
can arrive after it "comes back". Use them as context managers or call start()/stop():

    from tests.receivers import HttpReceiver, SmtpReceiver

    with SmtpReceiver() as smtp, HttpReceiver() as http:
        url = smtp.apprise_url()            # mailto://127.0.0.1:PORT?from=...&to=...&mode=insecure
        hook = http.apprise_url("/hook")    # json://127.0.0.1:PORT/hook
        ...
        smtp.wait_for(1)                    # -> list of email.message.EmailMessage
        http.wait_for(1)                    # -> list of Received(path, headers, body, json)

They talk only to 127.0.0.1 and need nothing installed beyond aiosmtpd (a test dependency).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def _bound_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(16)
    return sock


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    sock = _bound_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class _SocketController(Controller):
    """aiosmtpd's Controller cannot bind port 0; this one serves on a socket bound beforehand."""

    def __init__(self, handler: Any, sock: socket.socket) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=int(sock.getsockname()[1]), ready_timeout=5.0)

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.receiver.lock:
            self.receiver.messages.append(message)
            self.receiver.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 (plain, no TLS, no auth) recording every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()
        self.port = 0
        self._controller: _SocketController | None = None

    def start(self) -> SmtpReceiver:
        """Start listening (on the previous port when restarted, else an ephemeral one)."""
        if self._controller is not None:
            return self
        sock = _bound_socket(self.port)
        self.port = int(sock.getsockname()[1])
        self._controller = _SocketController(_SmtpHandler(self), sock)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start() again."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def apprise_url(self, sender: str = "monitor@example.com", to: str = "admin@example.com") -> str:
        """The apprise URL that sends to this server (apprise 2.x `mailto://`, plain SMTP)."""
        return f"mailto://{HOST}:{self.port}?from={sender}&to={to}&mode=insecure"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived; return them all (AssertionError on timeout)."""
        _wait(
            lambda: len(self.received()) >= count, timeout, f"{count} email(s), have {len(self.received())}"
        )
        return self.received()

    @staticmethod
    def text_of(message: EmailMessage) -> str:
        """Return the plain-text body of a message (the text/plain part, else the HTML part)."""
        part = message.get_body(preferencelist=("plain", "html"))
        assert part is not None, "message has no text body"
        return str(part.get_content())


@dataclass(frozen=True)
class Received:
    """One HTTP request the receiver recorded."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: HttpReceiver


class _HttpHandler(BaseHTTPRequestHandler):
    server: _HttpServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        status = receiver.status
        if 200 <= status < 300:
            with receiver.lock:
                receiver.requests.append(Received(self.command, self.path, dict(self.headers.items()), body))
        else:
            with receiver.lock:
                receiver.refused += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output quiet


class HttpReceiver:
    """An HTTP server on 127.0.0.1 recording every POST. Set `status` (e.g. 500) to make it refuse."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.refused = 0
        self.status = 200
        self.lock = threading.Lock()
        self.port = 0
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> HttpReceiver:
        """Start listening (on the previous port when restarted, else an ephemeral one)."""
        if self._server is not None:
            return self
        server = _HttpServer((HOST, self.port), _HttpHandler)
        server.receiver = self
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: connections to the port are refused until start() again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def apprise_url(self, path: str = "/hook") -> str:
        """The apprise URL that posts JSON to this server (`json://127.0.0.1:PORT/path`)."""
        return f"json://{HOST}:{self.port}{path}"

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` requests arrived; return them all (AssertionError on timeout)."""
        _wait(
            lambda: len(self.received()) >= count, timeout, f"{count} request(s), have {len(self.received())}"
        )
        return self.received()
