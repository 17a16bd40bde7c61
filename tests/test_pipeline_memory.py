"""The pipeline holds no per-request state between batches: an open window's memory does not grow
with its traffic (issue: 1M lines appended three times grew the daemon to 1.3 GB). The 3M-line flood
with an RSS ceiling is bench/window_memory.py; this is its quick form, measured with tracemalloc."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor import config
from monitor.core.records import Request
from monitor.detect.known import KnownSources
from monitor.detect.pipeline import Pipeline, make_dispatcher
from monitor.store import Store


def test_batches_of_one_open_window_leave_no_requests_behind(tmp_path: Path) -> None:
    settings = config.validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
            "sources": [{"name": "web", "path": str(tmp_path / "a.log"), "format": "nginx", "proxy": True}],
            "detector": {"model_dir": str(tmp_path / "models")},
            "known": {"allow": ["10.0.0.0/8"]},
        }
    )
    store = Store.open(settings.database.url)
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    pipeline = Pipeline(settings, store, make_dispatcher(settings, None), KnownSources(settings.known))
    source = settings.sources[0]

    def batch(k: int) -> list[Request]:
        return [
            Request(
                start + timedelta(microseconds=k * 20_000 + i),
                f"10.0.0.{i % 50}",
                "POST",
                "/api/chat",
                200,
                12.5,
                100,
                "ua",
            )
            for i in range(20_000)
        ]

    try:
        pipeline.process(source, batch(0), start)  # warm up: imports, caches, the rules' first state
        pipeline.tick(start + timedelta(seconds=1))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for k in range(1, 11):  # 200,000 requests into the same open window
            pipeline.process(source, batch(k), start + timedelta(seconds=k))
            pipeline.tick(start + timedelta(seconds=k))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    finally:
        store.close()
    assert grown < 2_000_000, f"{grown:,} bytes kept after 200,000 requests"  # a buffer keeps ~50 MB
