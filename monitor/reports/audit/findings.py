"""The audit's result types: a `Finding` and the `Report` that orders them.

Shared by `monitor.reports.audit.report` (the host checks, which build the report) and `monitor.reports.audit.logs` (the
checks on stored requests), so that neither has to import the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.core.records import Severity

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Finding:
    """One thing the audit found. `id` is `category.name` (e.g. `socket.listen-all`)."""

    id: str
    severity: Severity
    title: str
    evidence: tuple[str, ...] = ()
    remediation: str = ""

    @property
    def category(self) -> str:
        return self.id.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "severity": self.severity.value,
            "title": self.title,
            "evidence": list(self.evidence),
            "remediation": self.remediation,
        }


@dataclass(frozen=True)
class Report:
    host: str
    ports: tuple[int, ...]
    generated_at: datetime
    since: datetime
    findings: tuple[Finding, ...]

    def counts(self) -> dict[str, int]:
        return {s.value: sum(f.severity is s for f in self.findings) for s in Severity}

    @property
    def exit_status(self) -> int:
        """0: nothing above info; 1: warnings; 2: anything critical."""
        return max((f.severity.rank for f in self.findings), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "host": self.host,
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat(),
            "ports": list(self.ports),
            "exit_status": self.exit_status,
            "counts": self.counts(),
            "findings": [f.to_dict() for f in self.findings],
        }
