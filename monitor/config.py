"""Configuration: one TOML file -> validated, frozen settings.

Every setting and its default is declared here once, with a description; `config/monitor.example.toml`
documents the same keys and a test keeps the two in step. Problems are reported all at once, each
with its key path (`sources[0].format`) and a hint, as a ConfigError (exit status 78).

Look-up order: an explicit path (`--config`), `$OLLAMA_MONITOR_CONFIG`, `./config/monitor.toml`,
`/etc/ollama-monitor/monitor.toml`; with none, the embedded default (SQLite in the user's state dir).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from monitor.core.errors import ConfigError, ambiguous_userinfo, redact_alert_url, redact_database_url
from monitor.core.timezones import tzinfo_for  # noqa: F401 - re-exported: sources' time zones

FORMATS = ("auto", "ollama", "nginx", "apache", "caddy", "traefik", "haproxy")
RULE_IDS = (
    "unknown-source",
    "management-endpoint",
    "account-endpoint",
    "recon-sequence",
    "scanner-probe",
    "auth-failures",
    "direct-access",
    "forwarded-mismatch",
    "parse-failures",
    "anomaly",
)
ENV_VAR = "OLLAMA_MONITOR_CONFIG"
SEARCH_PATHS = (Path("config/monitor.toml"), Path("/etc/ollama-monitor/monitor.toml"))


def state_dir() -> Path:
    """Return the user's state directory for ollama-monitor (XDG_STATE_HOME, else ~/.local/state)."""
    if os.environ.get("STATE_DIRECTORY"):  # set by systemd's StateDirectory=
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "ollama-monitor"


def default_database_url() -> str:
    return f"sqlite:///{state_dir() / 'monitor.db'}"


def default_model_dir() -> str:
    return str(state_dir() / "models")


class _Section(BaseModel):
    # strict: TOML has real booleans, integers and strings; `poll_seconds = "2"` or
    # `cooldown_minutes = true` is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _check_networks(values: list[str]) -> list[str]:
    bad = []
    host_bits = []
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            bad.append(value)
            continue
        try:
            ipaddress.ip_network(value)
        except ValueError:  # host bits set: 10.0.0.1/8
            meant = ipaddress.ip_network(value, strict=False)
            one = ipaddress.ip_interface(value).ip
            host_bits.append(f"{value!r} has host bits set (did you mean '{meant}', or '{one}' alone?)")
    problems = []
    if bad:
        problems.append(f"not an IP address or CIDR network: {', '.join(map(repr, bad))} (e.g. '10.0.0.0/8')")
    problems.extend(host_bits)
    if problems:
        raise ValueError("; ".join(problems))
    return values


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")


def check_database_url(value: str) -> str:
    """Reject what SQLAlchemy would misread or the store cannot use, with the URL it probably meant."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise ValueError("needs a scheme, e.g. 'sqlite:////var/lib/ollama-monitor/monitor.db'")
    dialect = scheme.split("+", 1)[0].lower()
    if dialect not in DATABASE_SCHEMES:
        raise ValueError(
            f"unsupported database {scheme!r}: use sqlite:////absolute/path.db or postgresql://user@host/db"
        )
    ambiguous = ambiguous_userinfo(value)
    if ambiguous:
        raise ValueError(f"{redact_database_url(value)!r}: {ambiguous}")
    if dialect == "sqlite" and rest and not rest.startswith("/"):
        raise ValueError(
            f"{redact_database_url(value)!r} names a host, which SQLite has none of: "
            f"a file takes three slashes (sqlite:///{rest} is relative to the working directory, "
            f"sqlite:////var/lib/ollama-monitor/{rest} is absolute)"
        )
    return value


class DatabaseSettings(_Section):
    url: str = Field(
        default_factory=default_database_url,
        description="Any SQLAlchemy URL: sqlite:////var/lib/ollama-monitor/monitor.db or postgresql://user@host/db.",
    )

    @field_validator("url")
    @classmethod
    def _usable_url(cls, value: str) -> str:
        return check_database_url(value)


class JsonFields(_Section):
    """Field names for JSON access logs (nginx `escape=json` and similar). Defaults are nginx variable names."""

    client_ip: str = "remote_addr"
    method: str = "request_method"
    path: str = "request_uri"
    request: str = "request"
    status: str = "status"
    bytes_sent: str = "body_bytes_sent"
    latency: str = "request_time"
    user_agent: str = "http_user_agent"
    forwarded_for: str = "http_x_forwarded_for"
    time: str = ""  # empty: try time_iso8601, time_local, msec, time, timestamp, @timestamp


class SourceSettings(_Section):
    name: str = Field(min_length=1, description="Stored with each request; names the source in alerts.")
    path: str | None = Field(default=None, description="Log file to follow.")
    journal_unit: str | None = Field(default=None, description="systemd unit to follow through journalctl.")
    format: Literal["auto", "ollama", "nginx", "apache", "caddy", "traefik", "haproxy"] = "auto"
    timezone: str = Field(
        default="UTC", description="For lines without an offset; 'local' for the host's zone."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list, description="Peers whose forwarded-for is believed."
    )
    watch: Literal["auto", "inotify", "poll"] = "auto"
    start_at: Literal["end", "beginning"] = "end"
    json_fields: JsonFields = Field(default_factory=JsonFields)
    proxy: bool | None = Field(
        default=None,
        description="This source is a reverse proxy in front of Ollama (default: true for the proxy formats, false for ollama and auto).",
    )

    @model_validator(mode="before")
    @classmethod
    def _deprecated_docker(cls, data: Any) -> Any:
        # `docker` never did anything: Docker json-file records are recognised on every line. The key
        # is still accepted (as a boolean) so that existing files keep loading; it has no effect.
        if isinstance(data, dict) and "docker" in data:
            data = dict(data)
            if not isinstance(data.pop("docker"), bool):
                raise ValueError(
                    "docker: must be true or false (and it can go: Docker records are detected on every line)"
                )
        return data

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return _check_networks(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value == "local":
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like 'Europe/Berlin', 'UTC' or 'local')"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> SourceSettings:
        if (self.path is None) == (self.journal_unit is None):
            raise ValueError("give exactly one of 'path' or 'journal_unit'")
        return self

    @property
    def is_proxy(self) -> bool:
        return self.proxy if self.proxy is not None else self.format not in ("ollama", "auto")


class KnownSettings(_Section):
    allow: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"],
        description="CIDR networks whose requests are expected (known sources).",
    )
    admins: list[str] = Field(
        default_factory=list, description="CIDR networks allowed to call management endpoints."
    )
    names: dict[str, str] = Field(
        default_factory=dict, description="Friendly names: address or CIDR -> name."
    )

    @field_validator("allow", "admins")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return _check_networks(value)

    @field_validator("names")
    @classmethod
    def _named(cls, value: dict[str, str]) -> dict[str, str]:
        _check_networks(list(value))
        return value


class RuleSettings(_Section):
    disabled: list[str] = Field(default_factory=list, description="Rule ids to switch off.")
    cooldown_minutes: int = Field(default=60, ge=0, description="One alert per rule and source per cooldown.")
    cooldowns: dict[str, int] = Field(
        default_factory=dict, description="Per-rule cooldown overrides (minutes)."
    )
    auth_failures_threshold: int = Field(
        default=20, ge=1, description="401/403 responses from one source in 10 minutes."
    )
    parse_failures_threshold: int = Field(
        default=20, ge=1, description="Rejected (unreadable) lines from one log source in 10 minutes."
    )

    @field_validator("disabled")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in RULE_IDS]
        if unknown:
            raise ValueError(f"unknown rule id(s) {unknown}; rules are: {', '.join(RULE_IDS)}")
        return value

    @field_validator("cooldowns")
    @classmethod
    def _known_cooldowns(cls, value: dict[str, int]) -> dict[str, int]:
        _known_rules = [k for k in value if k not in RULE_IDS]
        if _known_rules:
            raise ValueError(f"unknown rule id(s) {_known_rules}; rules are: {', '.join(RULE_IDS)}")
        return value

    def cooldown_for(self, rule: str) -> int:
        return self.cooldowns.get(rule, self.cooldown_minutes)


class DetectorSettings(_Section):
    model_dir: str = Field(
        default_factory=default_model_dir,
        min_length=1,
        description="Where trained models are saved (default: the state directory's models/; a relative "
        "path is relative to the config file).",
    )
    window_minutes: int = Field(default=60, ge=5, le=1440, description="Feature window length.")
    history_days: int = Field(default=14, ge=1, description="Trailing history used for training.")
    min_windows: int = Field(default=256, ge=32, description="Windows needed before the forest is trained.")
    retrain_hours: int = Field(default=24, ge=1, description="How often the daemon retrains.")
    threshold_quantile: float = Field(
        default=0.002,
        gt=0,
        lt=0.5,
        description="Share of training windows scored anomalous (calibrates the threshold).",
    )
    guard_factor: float = Field(
        default=3.0, ge=1.0, description="A feature this many times its training p99 is flagged."
    )
    random_state: int = 42


class AlertSettings(_Section):
    urls: list[str] = Field(
        default_factory=list, description="apprise URLs; they hold secrets and are never logged."
    )
    config_file: str | None = Field(default=None, description="An apprise config file (YAML/text) with tags.")
    min_severity: Literal["info", "warning", "critical"] = "warning"
    routes: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Severity -> apprise tags to notify, e.g. critical = ['email', 'slack'].",
    )
    digest_threshold: int = Field(
        default=5, ge=1, description="More alerts than this in digest_seconds become one digest."
    )
    digest_seconds: int = Field(default=60, ge=1)
    max_per_hour: int = Field(default=30, ge=1, description="Global cap on messages per hour.")
    retry_max_hours: int = Field(default=48, ge=1, description="Give up on a notification after this long.")

    @field_validator("routes")
    @classmethod
    def _severities(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = [k for k in value if k not in ("info", "warning", "critical")]
        if bad:
            raise ValueError(f"route keys must be severities (info, warning, critical), not {bad}")
        return value


class RetentionSettings(_Section):
    requests_days: int = Field(default=90, ge=1, description="Raw requests kept this long.")
    windows_days: int = Field(
        default=400, ge=1, description="Per-window aggregates and alerts kept this long."
    )
    rollup_days: int = Field(
        default=400, ge=1, description="Per-client daily totals (sources list, summaries) kept this long."
    )


class DaemonSettings(_Section):
    poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Safety-net poll interval of file sources."
    )
    batch_lines: int = Field(default=5000, ge=1, description="Most lines read from one source per wake-up.")
    metrics_address: str = Field(
        default="", description="host:port for Prometheus metrics (loopback), empty: off."
    )
    stuck_minutes: int = Field(
        default=10, ge=1, description="`status` fails when the daemon has not checked in for this long."
    )

    @field_validator("metrics_address")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if not value:
            return value
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port, e.g. '127.0.0.1:9464' (got {value!r})")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"metrics are served on loopback only (127.0.0.1 or ::1), not {host!r}; "
                "let a local scraper or an authenticating TLS proxy reach them"
            )
        return value


class SummarySettings(_Section):
    days: int = Field(default=7, ge=1)
    format: Literal["text", "markdown", "html", "json"] = "html"


class Settings(_Section):
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    known: KnownSettings = Field(default_factory=KnownSettings)
    rules: RuleSettings = Field(default_factory=RuleSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {dupes}")
        return self


# Where the settings came from, for `config show` and messages.
Origin = Annotated[str, "path or '<embedded default>'"]


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


_HINTS = {
    "extra_forbidden": "unknown key; see config/monitor.example.toml for every key",
    "missing": "required",
}


def validate(data: Mapping[str, Any], origin: str = "<config>", base: Path | None = None) -> Settings:
    """Given parsed TOML, return Settings; raise ConfigError listing every problem with its key path.

    `base` is the directory a relative `[detector] model_dir` is taken from (the config file's)."""
    try:
        settings = Settings.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = _loc(tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            hint = _HINTS.get(err["type"])
            if err["type"] == "literal_error":
                msg = f"{msg} (got {err.get('input')!r})"
            if err["type"] in _STRICT_TYPES:
                msg = f"{msg} (got {err.get('input')!r}; TOML values are not converted)"
            problems.append(f"{path}: {msg}" + (f" ({hint})" if hint and hint not in msg else ""))
        raise ConfigError(f"{origin}: invalid configuration ({len(problems)} problem(s))", problems) from None
    return with_model_dir(settings, base)


_STRICT_TYPES = ("int_type", "float_type", "bool_type", "string_type", "list_type", "dict_type")


def with_model_dir(settings: Settings, base: Path | None) -> Settings:
    """Resolve `[detector] model_dir` once: a relative path is relative to `base` (the config file's
    directory), so `train` and `status` run from different directories use the same models."""
    folder = Path(settings.detector.model_dir).expanduser()
    if folder.is_absolute() or base is None:
        if str(folder) == settings.detector.model_dir:
            return settings
    else:
        folder = Path(os.path.abspath(base / folder))
    detector = settings.detector.model_copy(update={"model_dir": str(folder)})
    return settings.model_copy(update={"detector": detector})


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid TOML", [f"(syntax): {exc}"], hint="check quoting and brackets"
        ) from None
    except RecursionError:
        raise ConfigError(
            f"{origin}: not a usable config",
            ["(syntax): tables or arrays nested too deeply to read"],
            hint="a monitor config nests three levels at most",
        ) from None


def find_config(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the config file to use, or None for the embedded default. An explicit path must exist."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found", [f"--config: no file at {path}"])
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found", [f"${ENV_VAR}: no file at {path}"])
        return path
    for candidate in SEARCH_PATHS:
        if candidate.is_file():
            return candidate
    return None


def read(explicit: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any] | None, Path | None]:
    """Find and parse the configuration file: (its TOML data, its path), or (None, None) for none."""
    path = find_config(explicit)
    if path is None:
        return None, None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config", [f"(file): {exc}"]) from None
    return parse_toml(text, str(path)), path


def load(explicit: str | os.PathLike[str] | None = None) -> tuple[Settings, str]:
    """Find, read and validate the configuration. Return (settings, origin)."""
    data, path = read(explicit)
    if data is None or path is None:
        return Settings(), "<embedded default>"
    return validate(data, str(path), Path(os.path.abspath(path)).parent), str(path)


def redacted(settings: Settings) -> dict[str, Any]:
    """Return the effective settings as plain data with secrets (alert URLs, DB passwords) masked."""
    data = settings.model_dump(mode="json")
    data["alerts"]["urls"] = [redact_alert_url(u) for u in data["alerts"]["urls"]]
    data["database"]["url"] = redact_database_url(data["database"]["url"])
    return data
