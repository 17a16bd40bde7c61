"""`config show` writes a config that reads back; strict validation; secrets; the model directory."""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import config
from monitor.cli.config_cmd import to_toml
from monitor.core.errors import ConfigError, StoreError
from tests.conftest import CliRunner, assert_no_traceback, isolated_env

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "monitor.example.toml"

EVERY_KEY = """
[database]
url = "postgresql://monitor:s3cret@db.example/monitor"

[[sources]]
name = "edge"
path = "/var/log/nginx/access.log"
format = "auto"
timezone = "Europe/Berlin"
trusted_proxies = ["127.0.0.1/32", "::1/128"]
watch = "poll"
start_at = "beginning"
proxy = true
[sources.json_fields]
client_ip = "ip"
method = "m"
path = "p"
request = "r"
status = "s"
bytes_sent = "b"
latency = "l"
user_agent = "ua"
forwarded_for = "xff"
time = "t"

[[sources]]
name = "journal \\"quoted\\" \\u0007"
journal_unit = "ollama.service"
proxy = false

[known]
allow = ["10.0.0.0/8", "2001:db8::/32"]
admins = ["10.0.0.5/32"]
names = { "10.0.0.5" = "admin", "2001:db8::1" = "v6 box", "10.0.1.0/24" = "ci" }

[rules]
disabled = ["recon-sequence"]
cooldown_minutes = 5
cooldowns = { "anomaly" = 180, "unknown-source" = 0 }
auth_failures_threshold = 3

[detector]
model_dir = "/srv/models"
window_minutes = 30
history_days = 3
min_windows = 64
retrain_hours = 6
threshold_quantile = 0.01
guard_factor = 2.5
random_state = 7

[alerts]
urls = []
config_file = "/etc/ollama-monitor/apprise.yml"
min_severity = "info"
routes = { critical = ["email"], info = [] }
digest_threshold = 2
digest_seconds = 30
max_per_hour = 10
retry_max_hours = 1

[retention]
requests_days = 7
windows_days = 30

[daemon]
poll_seconds = 2
batch_lines = 100
metrics_address = "127.0.0.1:9464"
stuck_minutes = 3

[summary]
days = 14
format = "json"
"""


def _settings(text: str, origin: str = "t.toml") -> config.Settings:
    return config.validate(tomllib.loads(text), origin)


@pytest.mark.parametrize("source", ["example", "every-key"])
def test_show_output_reads_back_to_the_same_settings(source: str) -> None:
    """Issue 12.4: IP keys of [known.names] were written bare (nested tables) and an unset `proxy` as
    `proxy = ""`, so the shown text was no valid config."""
    text = EXAMPLE.read_text(encoding="utf-8") if source == "example" else EVERY_KEY
    original = _settings(text)
    shown = to_toml(config.redacted(original))
    again = _settings(shown)
    assert config.redacted(again) == config.redacted(original)
    assert again.known.names == original.known.names
    assert [s.proxy for s in again.sources] == [s.proxy for s in original.sources]


def test_cli_show_then_validate_exits_0(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 12.4 through the real CLI: the example (without its secret-holding alert URLs, which
    `show` redacts) and the every-key config: `config show > f; config validate f` succeeds."""
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    example_text = EXAMPLE.read_text(encoding="utf-8").replace(
        'urls = ["email=mailto://user:password@example.com?to=admin@example.com", '
        '"slack=slack://TokenA/TokenB/TokenC/#alerts"]',
        "urls = []",
    )
    assert example["alerts"]["urls"] and "urls = []" in example_text
    apprise_yml = tmp_path / "apprise.yml"
    apprise_yml.write_text("urls:\n  - json://127.0.0.1:9/hook\n", encoding="utf-8")
    every = EVERY_KEY.replace("/etc/ollama-monitor/apprise.yml", str(apprise_yml))
    for name, text in (("example", example_text), ("every", every)):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(text, encoding="utf-8")
        shown = cli("--config", str(cfg), "config", "show")
        assert shown.returncode == 0, shown.stderr
        out = tmp_path / f"{name}-shown.toml"
        out.write_text(shown.stdout, encoding="utf-8")
        checked = cli("--config", str(out), "config", "validate")
        assert checked.returncode == 0, (name, checked.stderr, shown.stdout)


def test_validate_of_shown_alert_urls_names_each_redacted_one(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        '[alerts]\nurls = ["chat=json://127.0.0.1:9/x", "json://127.0.0.1:9/y"]\n', encoding="utf-8"
    )
    shown = cli("--config", str(cfg), "config", "show")
    assert '"chat=json://***"' in shown.stdout and "127.0.0.1:9" not in shown.stdout
    out = tmp_path / "shown.toml"
    out.write_text(shown.stdout, encoding="utf-8")
    checked = cli("--config", str(out), "config", "validate")
    assert checked.returncode == 78
    assert "alerts.urls[0]: redacted" in checked.stderr and "alerts.urls[1]: redacted" in checked.stderr


PASSWORDS = [
    "alpha@bravo/charlie@delta",
    "alpha/bravo:charlie",
    "alpha%40bravo%2Fcharlie",
    "alpha@bravo/charlie?delta",
]
WORDS = ("alpha", "bravo", "charlie", "delta")


@pytest.mark.parametrize("password", PASSWORDS)
def test_database_password_never_printed(cli: CliRunner, tmp_path: Path, password: str) -> None:
    """Issue 13.4: a password holding `/` or `@` (encoded or not) leaked through `config show` (split at
    the first `@`) and through the store's error messages."""
    url = f"postgresql://monitor:{password}@127.0.0.1:1/monitor"
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    shown = cli("--config", str(cfg), "config", "show")
    shown_json = cli("--config", str(cfg), "config", "show", "--json")
    status = cli("--config", str(cfg), "status")
    # A raw '@' or '/' is refused (SQLAlchemy would take part of the password for the host and look that
    # name up); an encoded one reaches the server, which is not there.
    assert status.returncode == (73 if "%" in password else 78), status.stderr
    for proc in (shown, shown_json, status):
        assert_no_traceback(proc)
        for word in WORDS:
            assert word not in proc.stdout + proc.stderr, (word, proc.stdout, proc.stderr)
    assert "monitor:***@" in shown.stdout + shown.stderr


@pytest.mark.parametrize("password", PASSWORDS)
def test_unparseable_url_error_hides_the_password(password: str) -> None:
    from monitor.store import Store

    url = f"postgresql://monitor:{password}@127.0.0.1:notaport/monitor"
    with pytest.raises(StoreError) as info:
        Store.open(url)
    text = str(info.value) + (info.value.hint or "")
    assert not any(word in text for word in WORDS), text


@pytest.mark.parametrize(
    ("toml", "where"),
    [
        ("[rules]\ncooldown_minutes = true\n", "rules.cooldown_minutes"),
        ('[daemon]\npoll_seconds = "2"\n', "daemon.poll_seconds"),
        ('[[sources]]\nname = "a"\npath = "/x"\ndocker = "yes"\n', "sources[0]"),
        ('[[sources]]\nname = "a"\npath = "/x"\nproxy = "no"\n', "sources[0].proxy"),
        ("[detector]\nwindow_minutes = 30.0\n", "detector.window_minutes"),
        ('[known]\nnames = { "10.0.0.1" = 5 }\n', "known.names.10.0.0.1"),
    ],
)
def test_values_of_the_wrong_type_are_rejected(toml: str, where: str) -> None:
    """Issue 13.16: pydantic's lax mode turned `true` into 1, "2" into 2.0 and "yes" into True."""
    with pytest.raises(ConfigError) as info:
        _settings(toml)
    assert any(p.startswith(where + ":") for p in info.value.problems), info.value.problems


def test_integers_still_do_for_floats() -> None:
    assert _settings("[daemon]\npoll_seconds = 2\n").daemon.poll_seconds == 2.0


@pytest.mark.parametrize(
    ("value", "meant"),
    [
        ("10.0.0.1/8", "10.0.0.0/8"),
        ("192.168.1.77/24", "192.168.1.0/24"),
        ("2001:db8::1/32", "2001:db8::/32"),
    ],
)
def test_network_with_host_bits_is_rejected_naming_the_network_meant(value: str, meant: str) -> None:
    """Issue 13.16: `10.0.0.1/8` was silently taken as 10.0.0.0/8."""
    for section in ("[known]\nallow", "[known]\nadmins"):
        with pytest.raises(ConfigError) as info:
            _settings(f'{section} = ["{value}"]\n')
        problem = " ".join(info.value.problems)
        assert meant in problem and "host bits" in problem, problem
    with pytest.raises(ConfigError) as info:
        _settings(f'[[sources]]\nname = "a"\npath = "/x"\ntrusted_proxies = ["{value}"]\n')
    assert "sources[0].trusted_proxies" in info.value.problems[0] and meant in info.value.problems[0]


def test_every_bad_alert_url_is_listed_beside_the_other_errors(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.16: only the first bad URL was named ("and 5 more"), and none when the file had other
    errors. Now each bad URL by its key path (never its text), with the other problems."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        "[alerts]\nurls = ["
        '"json://127.0.0.1:9/ok", "nosuch://secret-a", "x=nosuch://secret-b", "json://127.0.0.1:9/ok2", '
        '"bogus://secret-c"]\n'
        "[daemon]\npoll_seconds = 0\n",
        encoding="utf-8",
    )
    proc = cli("--config", str(cfg), "config", "validate")
    assert proc.returncode == 78
    assert_no_traceback(proc)
    for key in ("alerts.urls[1]", "alerts.urls[2]", "alerts.urls[4]", "daemon.poll_seconds"):
        assert key in proc.stderr, proc.stderr
    assert "alerts.urls[0]" not in proc.stderr and "alerts.urls[3]" not in proc.stderr
    assert "secret" not in proc.stderr and "more)" not in proc.stderr
    assert "4 problem(s)" in proc.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("sqlite://relative.db", "three slashes"),
        ("foo://bar", "unsupported database"),
        ("mysql://u@h/d", "unsupported database"),
    ],
)
def test_database_urls_the_store_cannot_use_fail_validation(
    cli: CliRunner, tmp_path: Path, url: str, words: str
) -> None:
    """Issue 13.15: `sqlite://relative.db` gave a traceback at open, and `foo://bar` passed validate."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    for args in (("config", "validate"), ("status",)):
        proc = cli("--config", str(cfg), *args)
        assert proc.returncode == 78, proc.stderr
        assert_no_traceback(proc)
        assert "database.url" in proc.stderr and words in proc.stderr, proc.stderr


def test_deeply_nested_toml_is_a_config_error(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.15: 5,000 nested arrays made tomllib raise RecursionError (a traceback, exit 1)."""
    cfg = tmp_path / "m.toml"
    cfg.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    proc = cli("--config", str(cfg), "config", "validate")
    assert proc.returncode == 78, proc.stderr
    assert_no_traceback(proc)
    assert len(proc.stderr.strip().splitlines()) <= 3


def test_docker_key_is_accepted_and_docker_records_are_read_without_it(tmp_path: Path) -> None:
    """Issue 12.8: `docker` never reached the decoder (a signature check that was never true). Docker
    json-file records are recognised on every line, so the key is kept only for old files."""
    from monitor.core.records import Request
    from monitor.sources.base import default_decoder

    line = json.dumps(
        {
            "log": '[GIN] 2025/03/21 - 08:52:32 | 200 |    1.35s |  203.0.113.9 | POST     "/api/pull"\n',
            "stream": "stdout",
            "time": "2025-03-21T08:52:32.123Z",
        }
    )
    for extra in ("", "docker = true\n", "docker = false\n"):
        settings = _settings(f'[[sources]]\nname = "a"\npath = "/x"\nformat = "ollama"\n{extra}')
        assert "docker" not in settings.sources[0].model_dump()
        result = default_decoder(settings.sources[0]).decode(line)
        assert isinstance(result, Request) and result.client_ip == "203.0.113.9"


def test_unit_sets_no_environment_nobody_reads() -> None:
    """Issue 12.8: OLLAMA_MONITOR_LOG_FORMAT was set by the unit and read by nothing (journald is
    detected from $JOURNAL_STREAM)."""
    root = Path(__file__).resolve().parent.parent
    unit = (root / "config" / "ollama-monitor.service").read_text(encoding="utf-8")
    code = "".join(p.read_text(encoding="utf-8") for p in (root / "monitor").rglob("*.py"))
    for line in unit.splitlines():
        if line.startswith("Environment="):
            for assignment in line.removeprefix("Environment=").split():
                name = assignment.strip('"').split("=", 1)[0]
                assert name.startswith("PYTHON") or name in code, f"the unit sets {name}, read by nothing"


def _history(db: Path) -> None:
    from monitor.core.records import Request
    from monitor.service import simulate
    from monitor.store import Store

    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    events = [e for e in simulate.simulate(t0, days=3, seed=2) if e.ts < t0 + timedelta(days=3)]
    with Store.open(f"sqlite:///{db}") as store:
        store.add_batch(
            "ollama",
            store.file_id("ollama", "fp", "x"),
            [
                (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent))
                for i, e in enumerate(events)
            ],
        )


@pytest.mark.parametrize("model_dir", ['model_dir = "models"\n', ""])
def test_train_and_status_from_different_directories_agree(
    cli: CliRunner, tmp_path: Path, model_dir: str
) -> None:
    """Issue 12.9: `model_dir = "models"` (the old default) was relative to the working directory, so
    `train` in one directory and `status` in another disagreed. A relative path is now relative to
    the config file; the default is the state directory."""
    etc, here, there = tmp_path / "etc", tmp_path / "a", tmp_path / "b"
    for d in (etc, here, there):
        d.mkdir()
    db = tmp_path / "m.db"
    cfg = etc / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[detector]\n{model_dir}[known]\nallow = ["10.0.0.0/8"]\n',
        encoding="utf-8",
    )
    _history(db)
    env = isolated_env(tmp_path)
    trained = cli("--config", str(cfg), "train", cwd=here, env=env)
    assert trained.returncode == 0 and "trained on" in trained.stdout, trained.stdout + trained.stderr
    expected = etc / "models" if model_dir else tmp_path / "state" / "ollama-monitor" / "models"
    assert (expected / "detector.json").is_file()
    status = cli("--config", str(cfg), "status", "--json", cwd=there, env=env)
    model = json.loads(status.stdout)["model"]
    assert model["trained"] is True, model
    assert model["file"] == str(expected / "detector.json")


def test_show_secrets_prints_a_complete_config(cli: CliRunner, tmp_path: Path) -> None:
    """`config show --show-secrets` of the example (alert URLs and all) validates as it is and reads
    back to the same settings; plain `show` keeps the URLs redacted."""
    shown = cli("--config", str(EXAMPLE), "config", "show", "--show-secrets")
    assert shown.returncode == 0, shown.stderr
    out = tmp_path / "shown.toml"
    out.write_text(shown.stdout, encoding="utf-8")
    checked = cli("--config", str(out), "config", "validate")
    assert checked.returncode == 0, checked.stderr
    assert "slack://TokenA/TokenB/TokenC" in shown.stdout
    again = cli("--config", str(out), "config", "show", "--show-secrets", "--json")
    first = cli("--config", str(EXAMPLE), "config", "show", "--show-secrets", "--json")
    assert json.loads(again.stdout)["settings"] == json.loads(first.stdout)["settings"]
    redacted = cli("--config", str(EXAMPLE), "config", "show")
    assert "TokenA" not in redacted.stdout and "password@" not in redacted.stdout
