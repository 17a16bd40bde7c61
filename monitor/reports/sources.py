"""Every client source seen, with its status and counts, as `ollama-monitor sources list` shows them.

Read from the rollups (never the rows), so it stays cheap however long the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor.detect.known import ApprovalNotes, KnownSources, Status

if TYPE_CHECKING:
    from monitor.config import KnownSettings
    from monitor.store import Store


@dataclass(frozen=True)
class SourceRow:
    """One client address (or an approved network never seen): status, friendly name, usage."""

    client_ip: str
    status: Status
    name: str | None  # [known] names, else the approval's note
    requests: int
    first_seen: datetime | None
    last_seen: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_ip": self.client_ip,
            "status": self.status.value,
            "name": self.name,
            "requests": self.requests,
            "first_seen": iso_z(self.first_seen),
            "last_seen": iso_z(self.last_seen),
        }


def list_sources(store: Store, known_settings: KnownSettings) -> list[SourceRow]:
    """Every client seen, with status, counts and first/last seen; approvals never seen are listed
    too. Unknown sources come first, then the busiest."""
    from monitor.store import rollup_queries as q

    approvals = store.approvals()
    stats = q.client_totals(store)
    known = KnownSources(known_settings, [a["network"] for a in approvals])
    notes = ApprovalNotes((a["network"], a.get("note") or None) for a in approvals)
    rows = [
        SourceRow(
            client_ip=s["client_ip"],
            status=known.status(s["client_ip"]),
            name=known.name(s["client_ip"]) or notes.note(s["client_ip"]),
            requests=int(s["requests"]),
            first_seen=s["first_seen"],
            last_seen=s["last_seen"],
        )
        for s in stats
    ]
    seen = {r.client_ip for r in rows}
    for a in approvals:
        if a["network"] not in seen:
            rows.append(
                SourceRow(
                    client_ip=a["network"],
                    status=Status.APPROVED,
                    name=a.get("note") or None,
                    requests=0,
                    first_seen=None,
                    last_seen=None,
                )
            )
    rows.sort(key=lambda r: (r.status is not Status.UNKNOWN, -r.requests, r.client_ip))
    return rows


def iso_z(ts: datetime | None) -> str | None:
    """ISO 8601 with `Z` for UTC, or None."""
    return ts.isoformat().replace("+00:00", "Z") if ts else None
