"""End to end with real nginx: clients -> nginx -> stub Ollama; `ollama-monitor run` follows nginx's
access log; a local webhook receives the unknown-source alert for the unknown address only.

Clients bind to distinct loopback addresses (127.0.0.2, 127.0.0.3, ...), so nginx logs each as its own
`$remote_addr`. The request-to-webhook latency is measured and printed (README, Performance).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import services
from tests.conftest import isolated_env
from tests.receivers import HttpReceiver

KNOWN = [f"127.0.0.{i}" for i in range(2, 14)]
# Three: more new unknown sources within ten minutes are reported together as one wave alert.
UNKNOWN = ["127.0.9.1", "127.0.9.2", "127.0.9.3"]


class StubOllama(BaseHTTPRequestHandler):
    """Answers like Ollama does, enough for clients and scanners."""

    def _reply(self, status: int, body: dict[str, object] | str) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            self._reply(200, "Ollama is running")
        elif self.path == "/api/tags":
            self._reply(200, {"models": [{"name": "llama3.2:1b"}]})
        else:
            self._reply(404, "404 page not found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/api/pull":
            self._reply(200, {"status": "success"})
        elif self.path in ("/api/chat", "/api/generate"):
            self._reply(200, {"message": {"role": "assistant", "content": "hi"}, "done": True})
        else:
            self._reply(404, "404 page not found")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def stub_ollama() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def nginx(tmp_path: Path, stub_ollama: int) -> Iterator[tuple[int, Path]]:
    binary = services.nginx_binary()
    services.require("nginx (apt-get install nginx-light)", binary)
    assert binary is not None
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    root.chmod(0o755)
    (root / "tmp").chmod(0o777)
    port = services.free_port()
    log = root / "access.log"
    conf = root / "nginx.conf"
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
  access_log {log} combined;
  client_body_temp_path {root}/tmp/body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{stub_ollama};
      proxy_set_header Host localhost:11434;
    }}
  }}
}}
""")
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        services.wait_port("127.0.0.1", port)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(10)


def stored_requests(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def request(port: int, client: str, method: str, path: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(client, 0))
    try:
        conn.request(method, path, body=body, headers={"User-Agent": f"client-{client}"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.service
@pytest.mark.slow
def test_unknown_source_alert_through_real_nginx(tmp_path: Path, nginx: tuple[int, Path]) -> None:
    port, access_log = nginx
    # nginx opens its log at start; make sure it exists before the monitor starts following it.
    request(port, KNOWN[0], "GET", "/api/tags")
    with HttpReceiver() as hook:
        config = tmp_path / "monitor.toml"
        config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / "monitor.db"}"

[[sources]]
name = "nginx"
path = "{access_log}"
format = "nginx"
start_at = "beginning"

[known]
allow = {json.dumps([f"{ip}/32" for ip in KNOWN] + ["127.0.0.1/32"])}

[detector]
model_dir = "{tmp_path / "models"}"

[alerts]
urls = ["{hook.apprise_url()}"]
min_severity = "info"
digest_threshold = 100
max_per_hour = 1000
""")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-level", "info"],
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            services.wait_heartbeat(tmp_path / "monitor.db")
            # Known clients use the API: inference, enumeration.
            for ip in KNOWN:
                for path in ("/api/tags", "/"):
                    assert request(port, ip, "GET", path) == 200
                assert request(port, ip, "POST", "/api/chat", b'{"model":"llama3.2:1b"}') == 200
            # Every line of the known clients is stored (nginx writes a line after its response). The
            # daemon runs the rules on each batch in log order, so an alert for one of them would be
            # queued before the first unknown source's, and fail the checks on `got` below.
            services.wait_until(
                lambda: stored_requests(tmp_path / "monitor.db") == 1 + 3 * len(KNOWN),
                30,
                "the daemon stored every request of the known clients",
            )
            assert hook.received() == [], "a known source raised an alert"

            latencies: list[float] = []
            for ip in UNKNOWN:
                sent = time.monotonic()
                request(port, ip, "GET", "/api/tags")
                got = hook.wait_for(len(latencies) + 1, timeout=15)
                latencies.append(time.monotonic() - sent)
                assert ip in json.dumps(got[-1].json)
            unknown_messages = [r.json for r in hook.received()]
            # Known but not admin: a model pull is a critical management-endpoint alert, per source.
            for ip in KNOWN:
                sent = time.monotonic()
                request(port, ip, "POST", "/api/pull", b'{"model":"llama3.2:1b"}')
                got = hook.wait_for(len(latencies) + 1, timeout=15)
                latencies.append(time.monotonic() - sent)
                assert ip in json.dumps(got[-1].json) and "pull" in json.dumps(got[-1].json)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _out, err = daemon.communicate(timeout=15)
        assert daemon.returncode == 0, err[-2000:]
    assert len(unknown_messages) == len(UNKNOWN)
    alerted = " ".join(json.dumps(m) for m in unknown_messages)
    for ip in KNOWN:
        assert ip not in alerted
    assert all("unknown" in (m.get("title", "") + m.get("message", "")).lower() for m in unknown_messages)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"\nrequest -> webhook latency over {len(latencies)} alerts ({len(UNKNOWN)} unknown-source, "
        f"{len(KNOWN)} management-endpoint): p50 {p50:.3f}s, p95 {p95:.3f}s"
    )
    assert p95 < 2.0, f"p95 latency {p95:.2f}s"


# Impersonation through a real front proxy (issue 13, item 1). The front server sets
# `X-Forwarded-For $proxy_add_x_forwarded_for` (what the sender wrote, then the peer nginx saw) and
# forwards from 127.0.0.20 to a second server, whose `main`-style log the monitor reads with
# trusted_proxies = 127.0.0.20. Each hidden client binds its own loopback address.
PAYLOADS = {
    "127.0.9.11": "10.0.0.5",
    "127.0.9.12": "garbage, 203.0.113.11",
    "127.0.9.13": "unknown",
    "127.0.9.14": "203.0.113.12:4444",
    "127.0.9.15": "[2001:db8::12]:4444",
    "127.0.9.16": "010.000.000.005",
}


@pytest.mark.service
@pytest.mark.slow
def test_forwarded_for_impersonation_through_real_nginx(tmp_path: Path, stub_ollama: int) -> None:
    binary = services.nginx_binary()
    services.require("nginx (apt-get install nginx-light)", binary)
    assert binary is not None
    root = tmp_path / "nginx"
    (root / "tmp").mkdir(parents=True)
    root.chmod(0o755)
    (root / "tmp").chmod(0o777)
    front, inner = services.free_port(), services.free_port()
    log = root / "inner.log"
    log.touch()
    log.chmod(0o666)
    user = "user root;" if os.geteuid() == 0 else ""
    (root / "nginx.conf").write_text(f"""
{user}
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
  log_format main '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
                  '"$http_referer" "$http_user_agent" "$http_x_forwarded_for"';
  client_body_temp_path {root}/tmp/body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  access_log off;
  server {{
    listen 127.0.0.1:{front};
    location / {{
      proxy_pass http://127.0.0.1:{inner};
      proxy_bind 127.0.0.20;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}
  server {{
    listen 127.0.0.1:{inner};
    access_log {log} main;
    location / {{
      proxy_pass http://127.0.0.1:{stub_ollama};
    }}
  }}
}}
""")
    proc = subprocess.Popen(
        [binary, "-c", str(root / "nginx.conf"), "-p", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        services.wait_port("127.0.0.1", front)
        with HttpReceiver() as hook:
            config = tmp_path / "monitor.toml"
            config.write_text(f"""
[database]
url = "sqlite:///{tmp_path / "monitor.db"}"

[daemon]
poll_seconds = 0.2

[[sources]]
name = "inner"
path = "{log}"
format = "nginx"
start_at = "beginning"
trusted_proxies = ["127.0.0.20/32"]

[known]
allow = ["127.0.0.1/32", "127.0.0.20/32"]
admins = ["10.0.0.5/32"]

[detector]
model_dir = "{tmp_path / "models"}"

[alerts]
urls = ["{hook.apprise_url()}"]
min_severity = "info"
digest_threshold = 100
max_per_hour = 1000
""")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), "run"],
                env=isolated_env(tmp_path),
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                services.wait_heartbeat(tmp_path / "monitor.db")
                for client, forged in PAYLOADS.items():
                    conn = http.client.HTTPConnection(
                        "127.0.0.1", front, timeout=10, source_address=(client, 0)
                    )
                    try:
                        conn.request("POST", "/api/pull", body=b"{}", headers={"X-Forwarded-For": forged})
                        conn.getresponse().read()
                    finally:
                        conn.close()
                with contextlib.suppress(AssertionError):  # the assertion below shows the log
                    services.wait_until(
                        lambda: log.read_text().count("\n") >= len(PAYLOADS), 10, "nginx logged every request"
                    )
                logged = log.read_text()
                assert all(f'"{forged}, {client}"' in logged for client, forged in PAYLOADS.items()), logged
                missing = set(PAYLOADS)

                def all_named() -> bool:
                    nonlocal missing
                    received = json.dumps([r.json for r in hook.received()])
                    missing = {ip for ip in PAYLOADS if ip not in received}
                    return not missing

                with contextlib.suppress(AssertionError):  # the assertion below names what is missing
                    services.wait_until(all_named, 30, "an alert names every hidden client", every=0.3)
                assert not missing, f"no alert names {sorted(missing)}: {hook.received()}"
                pulls = [
                    r.json
                    for r in hook.received()
                    if "pull" in json.dumps(r.json) and "10.0.0.5 (admin" in json.dumps(r.json)
                ]
                assert pulls == [], "a forged X-Forwarded-For was believed as the admin"
            finally:
                daemon.send_signal(signal.SIGTERM)
                _out, err = daemon.communicate(timeout=15)
            assert "Traceback" not in err, err
    finally:
        proc.terminate()
        proc.wait(10)
