"""Alert delivery through a durable outbox in the database, each service on its own.

Targets (building them from `[alerts]`, routing by tag, per-scheme timeouts, one thread per send) live
in monitor.alerts.targets; this module decides what to send when, and records what happened.

Outbox. `Outbox.enqueue` stores one row per (notification, target) BEFORE anything is sent; the
unique (notification_id, service) key makes enqueueing the same notification again (a replay, a
restart) harmless. `Outbox.deliver` then sends the due rows: claim (one UPDATE that counts the attempt
and takes a lease), send, and record the outcome (one UPDATE: sent, or pending again with
exponential backoff, or failed once the row is older than `retry_max_hours`).

Isolation. A pass hands each service its own rows, oldest first, one at a time, and every service
sends in its own thread with its own deadline (monitor.alerts.targets). The pass records outcomes as they
come and returns once nothing is left to start and the still-running sends have had `wait_seconds`
(the daemon passes about a second): a receiver that answers slowly, or drips a byte every few seconds
and never times out at the socket, delays only its own queue. Its send goes on in the background and
its outcome is recorded by a later pass; meanwhile that service takes no new send (one thread per
service at most, however long the receiver holds on).

"Maybe delivered" (the duplicate policy). When a send fails after the request went out (an HTTP read
timeout, an SMTP timeout inside the mail transaction, or the deadline passing while the send still
runs), the receiver may have the message. Such a row is NOT sent again for `MAYBE_DELIVERED_WAIT`
(30 minutes; `alerts retry` does not force it either), and when its next try ends the same way it is
given up (state failed, "maybe delivered twice"): a receiver that takes messages but never answers in
time gets each alert at most twice, 30 minutes apart, instead of one copy per backoff step for 48 h.
A send that was still running at its deadline and then succeeds is recorded as sent. Failures before
the request went out (refused, DNS, connect timeout, an HTTP error status) are retried with backoff.

The crash window. A process can die after a service accepted a message and before the database
recorded it. Nothing can close that window (the receiver and the database do not share a
transaction), so this outbox is at-least-once: a row whose sender died is sent again when its lease
runs out (a duplicate alert is a nuisance, a lost one is a miss). Concurrent senders never both send
a row: the claim is atomic, so the daemon and `alerts retry` never both take one.

Promptness. A service that fails is not tried again in that pass and its other queued rows wait for
the same retry time, so a dead receiver costs one attempt per retry, not one per queued message.
`deliver(budget_seconds=...)` stops starting new attempts when the budget is spent; whatever is left
stays pending for the next pass.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.alerts.targets import ALWAYS_TAG, SendResult, Target, load_targets, route
from monitor.config import AlertSettings
from monitor.core.records import Notification, Severity
from monitor.core.sanitize import cap, clean, neutralise
from monitor.store import Store, utcnow
from monitor.store import outbox_queries as q

__all__ = ["ALWAYS_TAG", "Attempt", "Outbox", "Target", "load_targets", "route", "send_test"]

log = logging.getLogger("monitor.alerts.dispatch")

TITLE_MAX = 200  # email subjects and chat titles; one line
BODY_MAX = 1900  # Discord caps a message at 2,000 characters, the tightest common limit
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
LEASE_MARGIN = timedelta(seconds=60)
MAYBE_DELIVERED_WAIT = timedelta(minutes=30)
MAYBE_PREFIX = "maybe delivered: "
PASS_LIMIT = 2000  # rows read per delivery pass


@dataclass(frozen=True)
class Attempt:
    """The outcome of one delivery attempt (or of giving up on a row without one).

    `maybe_delivered`: the request went out before the failure (see the module doc); `in_flight`: the
    send was still running when the pass stopped waiting (its outcome is recorded later)."""

    notification_id: str
    service: str
    label: str
    ok: bool
    attempts: int
    error: str | None = None
    gave_up: bool = False
    next_attempt_at: datetime | None = None
    maybe_delivered: bool = False
    in_flight: bool = False


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 30 s, 1 min, 2 min, ... capped at 1 h."""
    return min(BACKOFF_FIRST * (2 ** max(0, min(attempts - 1, 20))), BACKOFF_MAX)


def render_title(title: str) -> str:
    """One line, no control characters, no mentions or links, at most TITLE_MAX characters."""
    return cap(neutralise(clean(title, TITLE_MAX * 2)), TITLE_MAX)


def render_body(body: str) -> str:
    """Lines kept, no control characters, no mentions or links, at most BODY_MAX characters."""
    return cap(neutralise(clean(body, BODY_MAX * 2, keep_newlines=True)), BODY_MAX)


@dataclass
class _Running:
    row: dict[str, Any]
    target: Target
    future: cf.Future[SendResult]
    started: float
    attempts: int
    recorded: bool = False  # its outcome was recorded at the deadline


class Outbox:
    """The durable queue between the dispatcher and the services (see the module doc).

    Given the alert settings and an open Store; `targets` defaults to `load_targets(settings, ...)`
    (per-scheme timeouts unless `connect_timeout`/`read_timeout` are given). Times are wall-clock UTC
    (delivery happens now, even when the alerts came from a replay). Use it from one thread.
    """

    def __init__(
        self,
        settings: AlertSettings,
        store: Store,
        *,
        targets: Sequence[Target] | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        throttle: float | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = (
            list(targets)
            if targets is not None
            else load_targets(
                settings, connect_timeout=connect_timeout, read_timeout=read_timeout, throttle=throttle
            )
        )
        self._by_name = {t.name: t for t in self.targets}
        # A claimed row's lease must outlast its attempt, or a second sender could take it mid-send.
        longest = max((t.deadline for t in self.targets), default=0.0)
        self.lease = timedelta(seconds=longest) + LEASE_MARGIN
        self._late: dict[str, _Running] = {}  # sends past their deadline, still running
        if not self.targets:
            log.warning("no alert service configured ([alerts] urls / config_file): alerts are only logged")

    # --- enqueue -----------------------------------------------------------------------------
    def enqueue(
        self,
        notifications: Iterable[Notification],
        now: datetime | None = None,
        *,
        targets: Sequence[Target] | None = None,
    ) -> int:
        """Store one row per (notification, routed target), sanitised; return rows added (known ones are skipped)."""
        now = now or utcnow()
        rows = []
        for n in notifications:
            for target in (
                targets if targets is not None else route(self.targets, n.severity, self.settings.routes)
            ):
                rows.append(
                    {
                        "notification_id": n.id,
                        "service": target.name,
                        "severity": n.severity.value,
                        "title": render_title(n.title),
                        "body": render_body(n.message),
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                )
        return q.enqueue(self.store, rows)

    # --- deliver -----------------------------------------------------------------------------
    def deliver(
        self,
        now: datetime | None = None,
        *,
        force: bool = False,
        budget_seconds: float | None = None,
        notification_ids: Iterable[str] | None = None,
        wait_seconds: float | None = None,
    ) -> list[Attempt]:
        """Attempt every due row once, each service in its own thread; return what happened.

        `force` ignores backoff (every pending row is due: `alerts retry`), except for rows that may
        have been delivered. A service that fails is not tried again in this pass. With
        `budget_seconds`, no new attempt starts once it is spent. `notification_ids` limits the pass
        to those notifications. Running sends are waited for up to their deadlines; with
        `wait_seconds`, the pass also stops waiting once no send has ended for that long (those still
        running are reported with `in_flight` and recorded by a later pass). Outcomes of sends that
        outlived an earlier pass come first.
        """
        start = time.monotonic()
        now = now or utcnow()
        results = self._collect_late(now)
        only = set(notification_ids) if notification_ids is not None else None
        give_up_before = now - timedelta(hours=self.settings.retry_max_hours)
        queues: dict[str, deque[dict[str, Any]]] = {}
        for row in q.due(self.store, now, force=force, limit=PASS_LIMIT):  # one read per pass
            if only is not None and row["notification_id"] not in only:
                continue
            if force and self._maybe_waiting(row, now):
                continue
            queues.setdefault(row["service"], deque()).append(row)
        running: dict[str, _Running] = {}
        while True:
            spent = budget_seconds is not None and time.monotonic() - start >= budget_seconds
            for service, queue in queues.items():
                if spent or service in self._late:
                    continue
                while queue and service not in running:
                    row = queue.popleft()
                    at = now + timedelta(seconds=time.monotonic() - start)
                    job = self._start(row, at, force, give_up_before, results)
                    if job is not None:
                        running[service] = job
            if not running:
                break
            timeout = min(job.started + job.target.deadline for job in running.values()) - time.monotonic()
            if wait_seconds is not None:
                timeout = min(timeout, wait_seconds)
            done, _ = cf.wait([j.future for j in running.values()], max(0.0, timeout), cf.FIRST_COMPLETED)
            at = now + timedelta(seconds=time.monotonic() - start)
            for service, job in list(running.items()):
                if job.future in done:
                    del running[service]
                    attempt = self._record(job, job.future.result(), at)
                    results.append(attempt)
                    if not attempt.ok:
                        queues[service].clear()  # the service is down or stalling: its queue waits
                        retry_at = at + backoff(attempt.attempts)
                        if not attempt.maybe_delivered and attempt.next_attempt_at is not None:
                            retry_at = attempt.next_attempt_at
                        q.defer(self.store, service, retry_at)
                elif time.monotonic() >= job.started + job.target.deadline:
                    del running[service]  # its own deadline: "maybe delivered", left to run
                    results.append(self._record(job, job.target.overdue(), at))
                    job.recorded = True
                    self._late[service] = job
            if not done and running and wait_seconds is not None:
                for service, job in running.items():  # still running: reported now, recorded later
                    self._late[service] = job
                    results.append(
                        Attempt(
                            job.row["notification_id"],
                            service,
                            job.target.label,
                            False,
                            job.attempts,
                            "still sending",
                            in_flight=True,
                        )
                    )
                break
        return results

    def settle(self, now: datetime | None = None) -> list[Attempt]:
        """Record every send still running and not yet recorded as 'maybe delivered' (not sent again
        for 30 min). A process about to exit calls it, so that the row's lease does not bring it back
        within minutes while the receiver may still be taking it."""
        now = now or utcnow()
        out = []
        for job in self._late.values():
            if not job.recorded and not job.future.done():
                out.append(self._record(job, job.target.overdue(), now))
                job.recorded = True
        return out + self._collect_late(now)

    def _maybe_waiting(self, row: dict[str, Any], now: datetime) -> bool:
        error = row.get("last_error") or ""
        return bool(
            row["state"] == q.PENDING and error.startswith(MAYBE_PREFIX) and row["next_attempt_at"] > now
        )

    def _start(
        self,
        row: dict[str, Any],
        now: datetime,
        force: bool,
        give_up_before: datetime,
        results: list[Attempt],
    ) -> _Running | None:
        service, nid = row["service"], row["notification_id"]
        target = self._by_name.get(service)
        if target is None:
            reason = "service no longer configured"
            if q.give_up(self.store, row["id"], reason):
                log.warning("alert %s for %s: %s; dropped", nid, service, reason)
                results.append(Attempt(nid, service, service, False, row["attempts"], reason, gave_up=True))
            return None
        if row["created_at"] < give_up_before:
            reason = f"undelivered after {self.settings.retry_max_hours} h"
            if q.give_up(self.store, row["id"], reason):
                log.error("alert %s to %s: %s; giving up", nid, target.label, reason)
                results.append(
                    Attempt(nid, service, target.label, False, row["attempts"], reason, gave_up=True)
                )
            return None
        if target.busy:
            return None  # a send that outlived its deadline still holds this service
        if not q.claim(self.store, row["id"], now, now + self.lease, force=force):
            return None  # another sender took it
        try:
            severity = Severity(row["severity"])
        except ValueError:
            severity = Severity.WARNING
        future = target.start(row["title"], row["body"], severity)
        return _Running(row, target, future, time.monotonic(), row["attempts"] + 1)

    def _record(self, job: _Running, result: SendResult, now: datetime) -> Attempt:
        row, target, attempts = job.row, job.target, job.attempts
        nid, service = row["notification_id"], row["service"]
        if result.ok:
            q.finish(self.store, row["id"], sent=True, now=now)
            log.info("alert %s sent to %s", nid, target.label)
            return Attempt(nid, service, target.label, True, attempts)
        if result.maybe_delivered:
            error = MAYBE_PREFIX + (result.error or "timed out after sending")
            if (row.get("last_error") or "").startswith(MAYBE_PREFIX):
                reason = error + "; maybe delivered twice, not sent again"
                q.finish(self.store, row["id"], sent=False, now=now, give_up=True, error=reason)
                log.warning("alert %s to %s: %s", nid, target.label, reason)
                return Attempt(
                    nid, service, target.label, False, attempts, reason, gave_up=True, maybe_delivered=True
                )
            retry_at = now + MAYBE_DELIVERED_WAIT
            q.finish(self.store, row["id"], sent=False, now=now, next_attempt_at=retry_at, error=error)
            log.warning(
                "alert %s to %s %s; not sent again before %s",
                nid,
                target.label,
                error,
                retry_at.strftime("%H:%M:%S UTC"),
            )
            return Attempt(
                nid,
                service,
                target.label,
                False,
                attempts,
                error,
                next_attempt_at=retry_at,
                maybe_delivered=True,
            )
        retry_at = now + backoff(attempts)
        q.finish(self.store, row["id"], sent=False, now=now, next_attempt_at=retry_at, error=result.error)
        log.warning(
            "alert %s to %s failed (attempt %d, next try at %s): %s",
            nid,
            target.label,
            attempts,
            retry_at.strftime("%H:%M:%S UTC"),
            result.error,
        )
        return Attempt(nid, service, target.label, False, attempts, result.error, next_attempt_at=retry_at)

    def _collect_late(self, now: datetime) -> list[Attempt]:
        """Record sends that outlived an earlier pass. One past its deadline was recorded as 'maybe
        delivered' then: if it succeeds after all, it is recorded as sent."""
        results: list[Attempt] = []
        for service, job in list(self._late.items()):
            if not job.future.done():
                if not job.recorded and time.monotonic() >= job.started + job.target.deadline:
                    results.append(self._record(job, job.target.overdue(), now))
                    job.recorded = True
                continue
            del self._late[service]
            result = job.future.result()
            if not job.recorded:
                results.append(self._record(job, result, now))
            elif result.ok and q.claim(self.store, job.row["id"], now, now + self.lease, force=True):
                q.finish(self.store, job.row["id"], sent=True, now=now)
                log.info(
                    "alert %s reached %s late (after %.0f s): sent",
                    job.row["notification_id"],
                    job.target.label,
                    result.seconds,
                )
                results.append(
                    Attempt(job.row["notification_id"], service, job.target.label, True, job.attempts)
                )
        return results


def send_test(
    outbox: Outbox,
    now: datetime | None = None,
    *,
    budget_seconds: float | None = None,
    wait_seconds: float | None = None,
) -> list[Attempt]:
    """Queue a test notification for EVERY configured target (ignoring routes) and attempt it now.

    What fails stays pending: the daemon or `alerts retry` delivers it once the service works.
    """
    now = now or utcnow()
    note = Notification(
        id=f"test-{now.strftime('%Y%m%dT%H%M%S%fZ')}",
        ts=now,
        rule="test",
        severity=Severity.INFO,
        title="[TEST] ollama-monitor can reach this channel",
        message=(
            "This is a test notification from ollama-monitor (`ollama-monitor alerts test`).\n"
            f"Sent: {now.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}\n"
            "If you can read this, alerts will reach you here. Nothing needs to be done."
        ),
        client_ips=(),
    )
    outbox.enqueue([note], now, targets=outbox.targets)
    return outbox.deliver(
        now, force=True, budget_seconds=budget_seconds, notification_ids=[note.id], wait_seconds=wait_seconds
    )
