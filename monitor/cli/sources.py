"""`ollama-monitor sources list | approve IP_OR_CIDR [--note TEXT] | revoke IP_OR_CIDR`.

The listing comes from `monitor.reports.sources`, the canonical form of a network from
`monitor.detect.known`; this module renders them and stores approvals.
"""

from __future__ import annotations

from datetime import datetime

import click

from monitor.cli.common import Env, pass_env
from monitor.core.errors import MonitorError
from monitor.detect import known
from monitor.detect.known import Status
from monitor.reports.sources import iso_z, list_sources


class SourceArgumentError(MonitorError):
    """IP_OR_CIDR is neither an address nor a network."""

    exit_code = 2


def canonical_network(text: str) -> str:
    """The stored form of IP_OR_CIDR (`monitor.detect.known.canonical_network`); raise
    SourceArgumentError for anything that is neither an address nor a network."""
    try:
        return known.canonical_network(text)
    except ValueError:
        raise SourceArgumentError(
            f"not an IP address or CIDR network: {text!r}",
            hint="examples: 203.0.113.7, 10.0.0.0/24, 2001:db8::/48",
        ) from None


def _short(ts: datetime | None) -> str:
    text = iso_z(ts)
    return text[:16].replace("T", " ") if text else "-"


@click.group("sources")
def sources() -> None:
    """Client sources: who has used the API, and which are known."""


@sources.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_cmd(env: Env, as_json: bool) -> None:
    """List every source seen: status (admin, known, approved, unknown), requests, first and last seen."""
    store = env.open_store()
    try:
        rows = list_sources(store, env.settings.known)
    finally:
        store.close()
    if as_json:
        env.print_json({"sources": [r.to_dict() for r in rows]})
        return
    if not rows:
        env.out.print("no sources seen yet", markup=False)
        return
    from rich.table import Table  # only the text output draws a table: --json does not import it

    table = Table("source", "status", "name", "requests", "first seen (UTC)", "last seen (UTC)")
    for r in rows:
        table.add_row(
            r.client_ip,
            r.status.value,
            r.name or "",
            f"{r.requests:,}",
            _short(r.first_seen),
            _short(r.last_seen),
        )
    env.out.print(table)
    unknown = sum(1 for r in rows if r.status is Status.UNKNOWN)
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
