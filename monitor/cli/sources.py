"""`ollama-monitor sources list | approve IP_OR_CIDR [--note TEXT] | revoke IP_OR_CIDR`."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime
from typing import Any

import click

from monitor.cli.common import Env, pass_env
from monitor.core.errors import MonitorError
from monitor.detect.known import KnownSources, parse_network


class SourceArgumentError(MonitorError):
    """IP_OR_CIDR is neither an address nor a network."""

    exit_code = 2


def canonical_network(text: str) -> str:
    """Return `10.0.0.5` for an address (or a /32, /128) and `10.0.0.0/24` for a network; raise
    SourceArgumentError for anything else."""
    try:
        net = parse_network(text)
    except ValueError:
        raise SourceArgumentError(
            f"not an IP address or CIDR network: {text!r}",
            hint="examples: 203.0.113.7, 10.0.0.0/24, 2001:db8::/48",
        ) from None
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


def source_rows(env: Env) -> list[dict[str, Any]]:
    """Every client seen, with status, counts and first/last seen; approvals never seen are listed too."""
    from monitor.store import rollup_queries as q

    store = env.open_store()
    try:
        approvals = store.approvals()
        stats = q.client_totals(store)
    finally:
        store.close()
    known = KnownSources(env.settings.known, [a["network"] for a in approvals])
    notes = [(ipaddress.ip_network(a["network"], strict=False), a.get("note") or None) for a in approvals]

    def note_for(ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        matches = [
            (net.prefixlen, note)
            for net, note in notes
            if note and addr.version == net.version and addr in net
        ]
        return max(matches)[1] if matches else None

    rows = [
        {
            "client_ip": s["client_ip"],
            "status": known.status(s["client_ip"]).value,
            "name": known.name(s["client_ip"]) or note_for(s["client_ip"]),
            "requests": int(s["requests"]),
            "first_seen": _iso(s["first_seen"]),
            "last_seen": _iso(s["last_seen"]),
        }
        for s in stats
    ]
    seen = {r["client_ip"] for r in rows}
    for a in approvals:
        if a["network"] not in seen:
            rows.append(
                {
                    "client_ip": a["network"],
                    "status": "approved",
                    "name": a.get("note") or None,
                    "requests": 0,
                    "first_seen": None,
                    "last_seen": None,
                }
            )
    # The ones to look at first: unknown sources, then the busiest.
    rows.sort(key=lambda r: (r["status"] != "unknown", -r["requests"], r["client_ip"]))
    return rows


def _short(ts: str | None) -> str:
    return ts[:16].replace("T", " ") if ts else "-"


@click.group("sources")
def sources() -> None:
    """Client sources: who has used the API, and which are known."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_cmd(env: Env, as_json: bool) -> None:
    """List every source seen: status (admin, known, approved, unknown), requests, first and last seen."""
    rows = source_rows(env)
    if as_json:
        env.out.print_json(json.dumps({"sources": rows}))
        return
    if not rows:
        env.out.print("no sources seen yet", markup=False)
        return
    from rich.table import Table  # only the text output draws a table: --json does not import it

    table = Table("source", "status", "name", "requests", "first seen (UTC)", "last seen (UTC)")
    for r in rows:
        table.add_row(
            r["client_ip"],
            r["status"],
            r["name"] or "",
            f"{r['requests']:,}",
            _short(r["first_seen"]),
            _short(r["last_seen"]),
        )
    env.out.print(table)
    unknown = sum(1 for r in rows if r["status"] == "unknown")
    if unknown:
        env.out.print(
            f"{unknown} unknown source(s); approve one with: ollama-monitor sources approve IP --note TEXT",
            markup=False,
        )


@sources.command("approve")
@click.argument("network", metavar="IP_OR_CIDR")
@click.option("--note", default="", help="Who or what this is (shown in `sources list`).")
@pass_env
def approve(env: Env, network: str, note: str) -> None:
    """Approve a source (an address or a CIDR network): it no longer raises unknown-source alerts.

    The running daemon picks approvals up at its next reload (SIGHUP) or restart.
    """
    net = canonical_network(network)
    store = env.open_store()
    try:
        created = store.approve(net, note)
    finally:
        store.close()
    env.out.print(
        f"approved {net}" if created else f"{net} was already approved (note updated)", markup=False
    )


@sources.command("revoke")
@click.argument("network", metavar="IP_OR_CIDR")
@pass_env
def revoke(env: Env, network: str) -> None:
    """Revoke an approval made with `sources approve`."""
    net = canonical_network(network)
    store = env.open_store()
    try:
        removed = store.revoke(net)
    finally:
        store.close()
    if not removed:
        raise MonitorError(f"{net} is not approved", hint="see `ollama-monitor sources list`")
    env.out.print(f"revoked {net}", markup=False)


COMMANDS = [sources]
