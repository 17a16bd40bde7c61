"""`replay --send` with the receiver down (issue 12, item 5): it exits non-zero, says how many deliveries
were not made, and keeps them queued in --db (then `alerts retry` delivers them) or says plainly that
they are dropped with the temporary database. Real CLI in a subprocess, real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from monitor.service import simulate
from tests.conftest import CliRunner, assert_no_traceback
from tests.receivers import HttpReceiver

START = simulate.DEFAULT_START


def _setup(tmp_path: Path, hook: str) -> tuple[Path, Path]:
    events = simulate.simulate(
        START, days=1, seed=3, scenarios={"recon": timedelta(hours=14), "ipv6-probe": timedelta(hours=15)}
    )
    log = simulate.write_log(events, tmp_path / "server.log", "ollama")
    known = simulate.known_settings()
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/kept.db"\n[known]\nallow = {json.dumps(known.allow)}\n'
        f'admins = {json.dumps(known.admins)}\n[alerts]\nurls = ["{hook}"]\n',
        encoding="utf-8",
    )
    return log, config


def test_replay_send_with_the_receiver_down(tmp_path: Path, cli: CliRunner) -> None:
    receiver = HttpReceiver()
    receiver.start()
    receiver.stop()  # the port now refuses connections
    log, config = _setup(tmp_path, receiver.apprise_url())

    dropped = cli("--config", str(config), "replay", str(log), "--send")
    assert_no_traceback(dropped)
    assert dropped.returncode != 0, dropped.stdout
    n = int(re.search(r"(\d+) notification\(s\)", dropped.stdout).group(1))  # type: ignore[union-attr]
    assert n >= 3
    assert f"{n} of {n} deliveries failed" in dropped.stderr and "DROPPED" in dropped.stderr

    kept = cli("--config", str(config), "replay", str(log), "--send", "--db", f"sqlite:///{tmp_path}/kept.db")
    assert_no_traceback(kept)
    assert kept.returncode != 0 and f"{n} of {n} deliveries failed" in kept.stderr
    assert "stay queued" in kept.stderr

    with receiver:  # back on the same port: the kept notifications go out
        retry = cli("--config", str(config), "alerts", "retry", "--json")
        assert retry.returncode == 0, retry.stderr
        assert json.loads(retry.stdout)["pending"] == 0
        assert len(receiver.wait_for(n)) == n
