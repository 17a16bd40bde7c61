"""`score` and the pipeline count a window's requests the same way: with a proxy source configured, the
proxy's requests only (Ollama's own log repeats them). Also what `train` says when windows are too few
because the requests were stored under a source that windows do not count."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.core.records import Request
from monitor.service import simulate
from monitor.store import Store
from tests.conftest import CliRunner, assert_no_traceback

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _config(tmp_path: Path, log: Path) -> Path:
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "m.db"}"\n[detector]\nmodel_dir = "{tmp_path / "models"}"\n'
        '[known]\nallow = ["10.0.0.0/8"]\n'
        f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\nproxy = true\n'
        f'[[sources]]\nname = "ollama"\npath = "{tmp_path / "ollama.log"}"\nformat = "ollama"\n',
        encoding="utf-8",
    )
    return config


def _store_in_both_logs(tmp_path: Path, events: list[simulate.Event]) -> None:
    """Store the same requests under the proxy source and under Ollama's own log, as both log them."""
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    for source in ("nginx", "ollama"):
        fid = store.file_id(source, "fp", source)
        rows = [
            (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms))
            for i, e in enumerate(events)
        ]
        store.add_batch(source, fid, rows)
    store.close()


def test_score_counts_the_proxys_requests_only_as_the_pipeline_does(tmp_path: Path, cli: CliRunner) -> None:
    events = simulate.simulate(T0, days=3, seed=2)
    _store_in_both_logs(tmp_path, events)
    config = _config(tmp_path, tmp_path / "access.log")
    trained = cli("--config", str(config), "train")
    assert trained.returncode == 0 and "trained on" in trained.stdout, trained.stdout + trained.stderr
    with sqlite3.connect(tmp_path / "m.db") as conn:
        stored = dict(
            conn.execute(
                "SELECT client_ip || window_start, json_extract(features, '$.requests') FROM windows"
            )
        )
    scored = cli("--config", str(config), "score", "--count", "3", "--json")
    assert scored.returncode == 0, scored.stderr
    windows = json.loads(scored.stdout)["windows"]
    assert windows
    last = max(e.ts for e in events)
    for w in windows:
        start = datetime.fromisoformat(w["window_start"])
        expected = sum(
            1 for e in events if e.client_ip == w["client_ip"] and start <= e.ts < start + timedelta(hours=1)
        )
        assert w["requests"] == expected, (w, expected)  # not twice that
        key = w["client_ip"] + start.strftime("%Y-%m-%d %H:%M:%S.%f")
        if start + timedelta(hours=1) <= last:
            assert stored[key] == expected


def test_train_names_the_excluded_source_and_trains_after_ingest_with_the_right_source(
    tmp_path: Path, cli: CliRunner
) -> None:
    events = simulate.simulate(T0, days=3, seed=2)
    copy = tmp_path / "copy-of-access.log"
    simulate.write_log(events, copy, "nginx")
    config = _config(tmp_path, tmp_path / "access.log")
    assert cli("--config", str(config), "ingest", str(copy)).returncode == 0
    early = cli("--config", str(config), "train")
    assert_no_traceback(early)
    assert early.returncode == 0 and "not trained" in early.stdout
    assert "'copy-of-access'" in early.stdout and "--source nginx" in early.stdout, early.stdout
    again = cli("--config", str(config), "ingest", "--source", "nginx", str(copy))
    assert again.returncode == 0, again.stderr
    trained = cli("--config", str(config), "train")
    assert trained.returncode == 0 and "trained on" in trained.stdout, trained.stdout + trained.stderr


def test_train_rebuild_windows_recomputes_windows_made_under_an_old_config(
    tmp_path: Path, cli: CliRunner
) -> None:
    """Windows computed before the proxy source was configured counted both logs; --rebuild-windows
    recounts them."""
    events = simulate.simulate(T0, days=3, seed=2)
    _store_in_both_logs(tmp_path, events)
    config = _config(tmp_path, tmp_path / "access.log")
    old = tmp_path / "old.toml"
    text = config.read_text()  # the same without the proxy source: windows counted both logs
    cut = text.index('[[sources]]\nname = "nginx"')
    old.write_text(text[:cut] + text[text.index("[[sources]]", cut + 1) :], encoding="utf-8")

    def total() -> int:
        with sqlite3.connect(tmp_path / "m.db") as conn:
            return int(
                conn.execute("SELECT sum(json_extract(features, '$.requests')) FROM windows").fetchone()[0]
            )

    assert cli("--config", str(old), "train").returncode == 0
    assert total() == 2 * len(events)
    assert cli("--config", str(config), "train").returncode == 0
    assert total() == 2 * len(events)  # nothing new was stored: the windows stand
    rebuilt = cli("--config", str(config), "train", "--rebuild-windows")
    assert rebuilt.returncode == 0 and "trained on" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr
    assert total() == len(events)


@pytest.mark.service
def test_windows_on_postgresql_match_sqlite(tmp_path: Path) -> None:
    """The same windows, states and training on the real PostgreSQL server as on SQLite."""
    from monitor.config import validate
    from monitor.detect.known import KnownSources
    from monitor.detect.pipeline import Pipeline, make_dispatcher
    from monitor.store import detect_queries as q
    from tests import services

    events = simulate.simulate(T0, days=2, seed=4)
    now = T0 + timedelta(days=2, hours=1)

    def run(url: str) -> tuple[int, list[tuple[str, float]]]:
        settings = validate(
            {
                "database": {"url": url},
                "detector": {"model_dir": str(tmp_path / url[:5]), "min_windows": 50},
                "known": {"allow": ["10.0.0.0/8"]},
            }
        )
        with Store.open(url) as store:
            fid = store.file_id("ollama", "fp", "x")
            rows = [
                (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms))
                for i, e in enumerate(events)
            ]
            store.add_batch("ollama", fid, rows)
            pipeline = Pipeline(
                settings, store, make_dispatcher(settings, None), KnownSources(settings.known)
            )
            assert pipeline.train(now) is not None
            assert pipeline.find_missing(now, T0) == 0  # every window is computed, and recorded so
            got = q.load_windows(store, T0, now)
            return len(got), [(w["client_ip"], w["features"]["requests"]) for w in got]

    lite = run(f"sqlite:///{tmp_path / 'm.db'}")
    with services.postgres() as url:
        assert run(url) == lite
