"""Forwarded-for impersonation (issue 13, item 1) and Traefik's raw quotes (item 14), parser level.

The client is the first untrusted hop walking X-Forwarded-For from the right (nginx
`real_ip_recursive on`); a hop that is no address ends the walk at the last trusted address and the
forwarded-mismatch rule reports it. The end-to-end check through real nginx is in test_e2e_nginx.py.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from monitor import parsers
from monitor.config import KnownSettings, RuleSettings
from monitor.core.records import Request
from monitor.detect.known import KnownSources
from monitor.detect.rules import RulesEngine
from monitor.parsers import ParseContext, resolve_client
from monitor.parsers.decoder import LineDecoder

PROXY = "127.0.0.20"
CTX = ParseContext.build(trusted_proxies=[f"{PROXY}/32", "10.9.0.0/16"])


@pytest.mark.parametrize(
    ("forwarded", "client", "peer"),
    [
        # nginx $proxy_add_x_forwarded_for appends the peer it saw: the sender's own claim is on the left.
        ("10.0.0.5, 203.0.113.10", "203.0.113.10", PROXY),
        ("garbage, 203.0.113.11", "203.0.113.11", PROXY),
        ("203.0.113.12:4444", "203.0.113.12", PROXY),
        ("[2001:db8::12]:4444", "2001:db8::12", PROXY),
        ("[2001:db8::13]", "2001:db8::13", PROXY),
        ("10.0.0.5, 203.0.113.14:4444", "203.0.113.14", PROXY),
        # Trusted hops are skipped; the first untrusted one from the right is the client.
        ("198.51.100.1, 10.9.3.4", "198.51.100.1", PROXY),
        ("10.0.0.5, 198.51.100.2, 10.9.3.4, 10.9.3.5", "198.51.100.2", PROXY),
        # Every hop trusted: the left-most is the client (nginx does the same).
        ("10.9.1.1, 10.9.1.2", "10.9.1.1", PROXY),
        # No address where the walk needs one: it stops at the last trusted address, marked peer == client.
        ("unknown", PROXY, PROXY),
        ("010.000.000.005", PROXY, PROXY),
        ("203.0.113.15, garbage", PROXY, PROXY),
        ("198.51.100.3, unknown, 10.9.1.1", "10.9.1.1", "10.9.1.1"),
        ("", PROXY, None),
    ],
)
def test_forwarded_chain_walked_from_the_right(forwarded: str, client: str, peer: str | None) -> None:
    assert resolve_client(PROXY, forwarded, CTX) == (client, peer)


def test_untrusted_peer_never_takes_the_forwarded_value() -> None:
    assert resolve_client("203.0.113.9", "10.0.0.5", CTX) == ("203.0.113.9", None)
    assert resolve_client(PROXY, "10.0.0.5", ParseContext()) == (PROXY, None)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("203.0.113.12:4444", "203.0.113.12"),
        ("[2001:db8::12]:4444", "2001:db8::12"),
        (" [::ffff:203.0.113.1]:80 ", "203.0.113.1"),
        ("2001:db8::12", "2001:db8::12"),
        ("010.000.000.005", None),
        ("unknown", None),
        ("_hidden", None),
        ("203.0.113.12:", None),
        ("203.0.113.12:123456", None),
        ("[2001:db8::12]:x", None),
        ("", None),
    ],
)
def test_forwarded_hop(text: str, want: str | None) -> None:
    assert parsers.forwarded_hop(text) == want


def _nginx_main(forwarded: str, peer: str = PROXY) -> str:
    return (
        f'{peer} - - [21/Mar/2025:08:52:32 +0000] "POST /api/pull HTTP/1.1" 200 92 "-" "curl/8.5.0" '
        f'"{forwarded}" 0.012'
    )


def test_impersonation_of_an_admin_through_nginx_main_format() -> None:
    """The sender claims to be the admin 10.0.0.5; nginx appended the real peer 203.0.113.10."""
    result = parsers.get("nginx").parse(_nginx_main("10.0.0.5, 203.0.113.10"), CTX)
    assert isinstance(result, Request)
    assert result.client_ip == "203.0.113.10"
    assert result.peer_ip == PROXY


def _engine(admins: list[str]) -> RulesEngine:
    return RulesEngine(RuleSettings(), KnownSources(KnownSettings(allow=[], admins=admins)))


def test_unreadable_hop_behind_a_trusted_proxy_raises_forwarded_mismatch() -> None:
    now = datetime(2025, 3, 21, 8, 53, tzinfo=UTC)
    reqs = [parsers.get("nginx").parse(_nginx_main(v), CTX) for v in ("unknown", "010.000.000.005")]
    assert all(isinstance(r, Request) for r in reqs)
    alerts = _engine([f"{PROXY}/32"]).evaluate(
        [r for r in reqs if isinstance(r, Request)], now, source="nginx"
    )
    mismatch = [a for a in alerts if a.rule == "forwarded-mismatch"]
    assert len(mismatch) == 1 and mismatch[0].client_ips == (PROXY,)
    assert "not an address" in mismatch[0].message and "'unknown'" in mismatch[0].message


def test_readable_chain_from_a_trusted_proxy_is_no_mismatch() -> None:
    now = datetime(2025, 3, 21, 8, 53, tzinfo=UTC)
    req = parsers.get("nginx").parse(_nginx_main("10.0.0.5, 203.0.113.10"), CTX)
    assert isinstance(req, Request)
    alerts = _engine([]).evaluate([req], now, source="nginx")
    assert not [a for a in alerts if a.rule == "forwarded-mismatch"]
    assert {a.rule for a in alerts} >= {"unknown-source", "management-endpoint"}


TRAEFIK_LIST = (
    '10.0.0.5, 203.0.113.32 - - [21/Mar/2025:08:52:35 +0000] "POST /api/pull HTTP/1.1" 200 977 "-" '
    '"curl/8.5.0" 20 "ollama@docker" "http://172.18.0.5:11434" 3ms'
)


def test_traefik_clf_list_is_not_believed_without_trusted_proxies() -> None:
    result = parsers.get("traefik").parse(TRAEFIK_LIST, ParseContext())
    assert isinstance(result, Request)
    assert result.client_ip == "203.0.113.32"
    assert result.forwarded_for == "10.0.0.5, 203.0.113.32" and result.peer_ip is None
    # ... and the claim is reported.
    alerts = _engine(["10.0.0.5/32"]).evaluate([result], result.ts, source="traefik")
    assert "forwarded-mismatch" in {a.rule for a in alerts}


def test_traefik_json_clienthost_list_without_clientaddr_is_not_believed() -> None:
    line = (
        '{"ClientHost":"10.0.0.5, 203.0.113.33","DownstreamStatus":200,"RequestMethod":"POST",'
        '"RequestPath":"/api/pull","StartUTC":"2025-03-21T08:52:44Z"}'
    )
    result = parsers.get("traefik").parse(line, ParseContext())
    assert isinstance(result, Request) and result.client_ip == "203.0.113.33"


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ('/api/pull"x', '/api/pull"x'),
        ('/a" 200 0 "-" "x', '/a" 200 0 "-" "x'),
        ('/"', '/"'),
    ],
)
def test_traefik_clf_raw_quote_in_path(path: str, want: str) -> None:
    line = (
        f'203.0.113.40 - - [21/Mar/2025:08:52:35 +0000] "GET {path} HTTP/1.1" 404 19 "-" "curl/8.5.0" 21 '
        '"ollama@docker" "http://172.18.0.5:11434" 0ms'
    )
    decoder = LineDecoder("auto")
    result = decoder.decode(line)
    assert isinstance(result, Request), result
    assert decoder.detected == "traefik"
    assert (result.client_ip, result.method, result.path, result.status) == ("203.0.113.40", "GET", want, 404)


def test_traefik_clf_hostile_quotes_stay_linear() -> None:
    """Many tail-like fragments: the fallback tries a bounded number of split points."""
    path = '/" 200 0 "' * 5000
    line = (
        f'203.0.113.41 - - [21/Mar/2025:08:52:35 +0000] "GET {path} HTTP/1.1" 404 19 "-" "-" 21 "-" "-" 0ms'
    )
    import time

    start = time.process_time()
    parsers.get("traefik").parse(line, ParseContext())
    assert time.process_time() - start < 1.0


def test_haproxy_captured_forwarded_chain_is_walked_from_the_right() -> None:
    base = (
        "127.0.0.20:39759 [09/Dec/2013:12:59:46.633] loadbalancer default/instance8 0/51536/1/48082/99627 "
        '200 83285 - - ---- 87/87/87/1/0 0/67 {%s} "POST /api/pull HTTP/1.1"'
    )
    parse = parsers.get("haproxy").parse
    spoofed = parse(base % "10.0.0.5, 203.0.113.50", CTX)
    assert isinstance(spoofed, Request) and spoofed.client_ip == "203.0.113.50"
    hidden = parse(base % "unknown", CTX)  # what Squid sends with forwarded_for off
    assert isinstance(hidden, Request) and (hidden.client_ip, hidden.peer_ip) == (PROXY, PROXY)
