"""`ollama-monitor status [--json]`: is the daemon alive, how far has it read, what is pending."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli.common import Env, pass_env
from monitor.core.sanitize import for_terminal
from monitor.store import as_utc

# Exit statuses: 0 healthy (or nothing configured to follow), 2 stuck or crashed, 3 not running.
EXIT_STUCK = 2
EXIT_NOT_RUNNING = 3


def collect(env: Env, now: datetime | None = None) -> dict[str, Any]:
    """Gather the status facts as plain data (the JSON output)."""
    from monitor.store import status_queries

    now = now or datetime.now(UTC)
    settings = env.settings
    store = env.open_store()
    try:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = status_queries.requests_since_by_source(store, day_start)
        rejected = status_queries.rejects_since_by_source(store, now - timedelta(hours=24))
        checkpoints = store.checkpoints()
        sources = []
        for src in settings.sources:
            mine = [c for c in checkpoints if c["source"] == src.name]
            newest = mine[0] if mine else None
            lag = None
            if newest and src.path and os.path.exists(src.path):
                size = os.path.getsize(src.path)
                lag = max(0, size - int(newest["position"])) if size >= int(newest["position"]) else size
            last_ts = max((c["last_line_ts"] for c in mine if c["last_line_ts"]), default=None)
            sources.append(
                {
                    "name": src.name,
                    "origin": src.path or f"journal:{src.journal_unit}",
                    "format": src.format,
                    "position": int(newest["position"]) if newest else None,
                    "cursor": newest["cursor"] if newest else None,
                    "lag_bytes": lag,
                    "last_line_ts": last_ts.isoformat() if last_ts else None,
                    "lines_today": today.get(src.name, 0),
                    "lines_total": sum(int(c["lines"]) for c in mine),
                    "rejects": sum(int(c["rejected"]) for c in mine),
                    "rejects_24h": dict(list(rejected.get(src.name, {}).items())[:10]),
                    "files": len(mine),
                }
            )
        heartbeat = as_utc(store.get_meta("daemon.heartbeat"))
        stopped = as_utc(store.get_meta("daemon.stopped_at"))
        stuck_after = timedelta(minutes=settings.daemon.stuck_minutes)
        if heartbeat is None:
            state = "never run"
        elif stopped is not None and stopped >= heartbeat:
            state = "stopped"
        elif now - heartbeat > stuck_after:
            state = "stuck"
        else:
            state = "running"
        outbox = status_queries.outbox_counts(store)
        data = {
            "now": now.isoformat(),
            "daemon": {
                "state": state,
                "heartbeat": heartbeat.isoformat() if heartbeat else None,
                "stopped_at": stopped.isoformat() if stopped else None,
                "pid": store.get_meta("daemon.pid"),
                "lines_per_second": _float(store.get_meta("daemon.lines_per_second")),
            },
            "sources": sources,
            "model": model_state(Path(settings.detector.model_dir)),
            "outbox": {
                "pending": outbox.get("pending", 0),
                "failed": outbox.get("failed", 0),
                "sent": outbox.get("sent", 0),
            },
            "alerts_last_24h": status_queries.alerts_since(store, now - timedelta(hours=24)),
            "database": {
                "url": _db_label(settings.database.url),
                "size_bytes": store.database_size(),
                "requests": store.count_requests(),
            },
        }
    finally:
        store.close()
    return data


def model_state(model_dir: Path) -> dict[str, Any]:
    """Summarise the saved detector in model_dir (its metadata, and whether the model file matches its
    checksum), without importing scikit-learn: `status` must stay fast."""
    import hashlib

    meta_path = model_dir / "detector.json"  # monitor.detect.model.META_FILE
    if not meta_path.is_file():
        return {
            "trained": False,
            "note": "no trained model yet: rules only until enough history (ollama-monitor train)",
        }
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model_file = model_dir / str(meta["model_file"])
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return {
            "trained": False,
            "file": str(meta_path),
            "note": f"model unusable ({exc}): rules only; run ollama-monitor train",
        }
    if digest != meta.get("sha256"):
        return {
            "trained": False,
            "file": str(meta_path),
            "note": "model file does not match its checksum (corrupt or replaced): rules only; run ollama-monitor train",
        }
    return {
        "trained": True,
        "file": str(meta_path),
        "trained_at": meta.get("trained_at"),
        "windows": meta.get("rows"),
        "threshold": meta.get("threshold"),
        "features": len(meta.get("features", [])) or None,
    }


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _db_label(url: str) -> str:

    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def status(env: Env, as_json: bool) -> None:
    """Show the daemon's health, each source's position and lag, the model and the outbox.

    Exit status: 0 running (or nothing to follow), 2 the daemon looks stuck or crashed, 3 not running.
    """
    data = collect(env)
    if as_json:
        env.out.print_json(json.dumps(data))
    else:
        _print(env, data)
    state = data["daemon"]["state"]
    if state == "stuck":
        sys.exit(EXIT_STUCK)
    if state in ("never run", "stopped") and env.settings.sources:
        sys.exit(EXIT_NOT_RUNNING)


def _print(env: Env, data: dict[str, Any]) -> None:
    out = env.out
    d = data["daemon"]
    colour = {"running": "green", "stuck": "red", "stopped": "yellow", "never run": "yellow"}[d["state"]]
    rate = f", {d['lines_per_second']:.1f} lines/s" if d["lines_per_second"] is not None else ""
    out.print(f"daemon: [{colour}]{d['state']}[/] (last heartbeat {d['heartbeat'] or 'never'}{rate})")
    if data["sources"]:
        table = Table("source", "origin", "position", "lag", "last line", "today", "total", "rejects (24 h)")
        for s in data["sources"]:
            table.add_row(
                s["name"],
                s["origin"],
                "-" if s["position"] is None else f"{s['position']:,}",
                "-" if s["lag_bytes"] is None else f"{s['lag_bytes']:,} B",
                s["last_line_ts"] or "-",
                f"{s['lines_today']:,}",
                f"{s['lines_total']:,}",
                f"{s['rejects']:,} ({sum(s['rejects_24h'].values()):,})",
            )
        out.print(table)
        for s in data["sources"]:
            if s["rejects_24h"]:
                reasons = ", ".join(f"{for_terminal(r, 60)} x{n:,}" for r, n in s["rejects_24h"].items())
                out.print(f"rejects of {s['name']} in the last 24 h: {reasons}", markup=False)
    else:
        out.print(
            "sources: none configured (add [[sources]] to the config; see config/monitor.example.toml)",
            markup=False,
        )
    m = data["model"]
    if m["trained"]:
        out.print(f"model: trained {m['trained_at']} on {m['windows']} windows, threshold {m['threshold']}")
    else:
        out.print(f"model: {m['note']}", markup=False)
    o = data["outbox"]
    out.print(
        f"outbox: {o['pending']} pending, {o['failed']} failed, {o['sent']} sent; "
        f"alerts in the last 24 h: {data['alerts_last_24h']}"
    )
    db = data["database"]
    size = db["size_bytes"]
    out.print(
        f"database: {db['url']} ({db['requests']:,} requests" + (f", {size / 1e6:.1f} MB)" if size else ")"),
        markup=False,
    )


COMMANDS = [status]
