"""The alerting half of the daemon, built from the settings and rebuilt on a reload (SIGHUP).

`build_detection(settings, store, approved)` returns the known sources (the `[known]` allow-list plus
the networks approved with `sources approve`), the dispatcher (noise control; with a store it records
admitted alerts and queues released notifications), its outbox (None without alert services) and the
pipeline that drives them. `monitor.service.jobs.Jobs` holds one `Detection` at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.config import Settings
from monitor.detect.known import KnownSources

if TYPE_CHECKING:
    from monitor.alerts.delivery import Outbox
    from monitor.alerts.dispatch import Dispatcher
    from monitor.detect.pipeline import Pipeline
    from monitor.store import Store


@dataclass(frozen=True)
class Detection:
    known: KnownSources
    dispatcher: Dispatcher
    outbox: Outbox | None
    pipeline: Pipeline


BuildDetection = Callable[[Settings, "Store", Sequence[str]], Detection]


def build_detection(settings: Settings, store: Store, approved: Sequence[str]) -> Detection:
    """Known sources -> dispatcher (and its outbox) -> pipeline, for `settings` on `store`. A bad alert
    URL raises AlertError here, at construction, not at the first alert."""
    from monitor.alerts.dispatch import Dispatcher
    from monitor.detect.pipeline import Pipeline

    known = KnownSources(settings.known, approved)
    dispatcher = Dispatcher(settings.alerts, store)
    return Detection(known, dispatcher, dispatcher.outbox, Pipeline(settings, store, dispatcher, known))
