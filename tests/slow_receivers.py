"""Slow and stalling notification receivers on 127.0.0.1, real sockets that delay (for delivery tests
and bench/delivery.py).

- `SlowHttpReceiver(delay)`: an HTTP server that records each POST at once, then answers 200 only after
  `delay` seconds (a webhook behind a slow proxy).
- `SlowSmtpReceiver(delay)`: aiosmtpd that takes the message, then answers 250 to DATA after `delay`
  seconds (a mail server that scans content).
- `DripReceiver(interval)`: accepts a connection, reads the request, then sends its answer one byte every
  `interval` seconds and never finishes: a socket read timeout restarts with each byte, so a client
  that relies on socket timeouts waits forever.

Each is a context manager and exposes `apprise_url()`; they talk only to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.receivers import HOST, _bound_socket, _SocketController, _wait


class _SlowHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: SlowHttpReceiver


class _SlowHandler(BaseHTTPRequestHandler):
    server: _SlowHttpServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        with receiver.lock:
            receiver.bodies.append(body)
            receiver.times.append(time.monotonic())
        time.sleep(receiver.delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class SlowHttpReceiver:
    """Records every POST when it arrives, answers 200 `delay` seconds later."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.bodies: list[bytes] = []
        self.times: list[float] = []  # time.monotonic() of each arrival
        self.lock = threading.Lock()
        self._server = _SlowHttpServer((HOST, 0), _SlowHandler)
        self._server.receiver = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> SlowHttpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def apprise_url(self, path: str = "/hook") -> str:
        return f"json://{HOST}:{self.port}{path}"

    def count(self) -> int:
        with self.lock:
            return len(self.bodies)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        _wait(lambda: self.count() >= count, timeout, f"{count} request(s), have {self.count()}")


class _SlowSmtpHandler:
    def __init__(self, receiver: SlowSmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        with self.receiver.lock:
            self.receiver.messages.append(email.message_from_bytes(raw, policy=email.policy.default))
        await asyncio.sleep(self.receiver.delay)
        return "250 OK"


class SlowSmtpReceiver:
    """An SMTP server that keeps each message, then answers 250 to DATA `delay` seconds later."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.messages: list[Any] = []
        self.lock = threading.Lock()
        sock = _bound_socket()
        self.port = int(sock.getsockname()[1])
        self._controller = _SocketController(_SlowSmtpHandler(self), sock)

    def __enter__(self) -> SlowSmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    def apprise_url(self) -> str:
        return f"mailto://{HOST}:{self.port}?from=monitor@example.com&to=admin@example.com&mode=insecure"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class DripReceiver:
    """Accepts connections, reads the request head, then drips `HTTP/1.1 200 OK...` a byte every
    `interval` seconds, never completing the answer, until stopped."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.connections = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = _bound_socket()
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._clients: list[threading.Thread] = []

    def __enter__(self) -> DripReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for t in self._clients:
            t.join(timeout=5)
        self._sock.close()

    def apprise_url(self, path: str = "/drip") -> str:
        return f"json://{HOST}:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = threading.Thread(target=self._drip, args=(conn,), daemon=True)
            t.start()
            self._clients.append(t)

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            head = b""
            while b"\r\n\r\n" not in head and not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                head += chunk
            answer = b"HTTP/1.1 200 OK\r\nX-Drip: " + b"a" * 60000
            for byte in answer:
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
