"""One error hierarchy, translated once at the CLI edge into a message and an exit status.

Nothing here imports anything of ours.
"""

from __future__ import annotations


class MonitorError(Exception):
    """A failure a user can act on. `str(err)` is the one-line message; `exit_code` the status."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(MonitorError):
    """The configuration is invalid. Carries every problem, each with its key path."""

    exit_code = 78  # EX_CONFIG from sysexits.h

    def __init__(self, message: str, problems: list[str] | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class SourceError(MonitorError):
    """A log source cannot be read (missing, unreadable, not a log)."""

    exit_code = 66  # EX_NOINPUT


class StoreError(MonitorError):
    """The database cannot be opened or written."""

    exit_code = 73  # EX_CANTCREAT


class DatabaseReplaced(StoreError):
    """The SQLite file was deleted or replaced under the running daemon: it must stop, not go on
    committing into an unlinked file."""


class ModelError(MonitorError):
    """A saved detector model is missing, corrupt or does not match the current features."""

    exit_code = 65  # EX_DATAERR


class AlertError(MonitorError):
    """Alert delivery is misconfigured."""

    exit_code = 78


DATABASE_MODULES = ("sqlalchemy", "sqlite3", "psycopg", "psycopg2")


def database_error(exc: BaseException) -> StoreError | None:
    """A database driver's error that no store method translated (a damaged or read-only file, a full
    disk, another program's table, a unique key two writers raced on) as one StoreError line (exit 73);
    None for anything else. By module name: only the store imports SQLAlchemy."""
    if isinstance(exc, StoreError):
        return exc
    if type(exc).__module__.split(".")[0] not in DATABASE_MODULES:
        return None
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0][:300]
    return StoreError(
        f"database error: {first}",
        hint="check the database file (or server): `ollama-monitor status` names it",
    )


# --- secrets never reach a message -----------------------------------------------------------------


def redact_database_url(url: str) -> str:
    """Return a database URL with its password (and any `password=` query value) masked.

    Done by hand, not with SQLAlchemy's parser: that one ends the password at the first `@`, so for a
    password holding a raw `@` or `/` its own redaction would print the rest of it as the host. Here
    everything up to the LAST `@` is the user information (over-masking a query that holds an `@`)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url or ":" in url else url
    head, tail = "", rest
    at = -1 if scheme.lower().startswith("sqlite") else rest.rfind("@")  # SQLite: a file path
    if at >= 0:
        userinfo, tail = rest[:at], rest[at + 1 :]
        user, colon, _password = userinfo.partition(":")
        if any(c in user for c in "/?#"):  # the user's end is not where it seems: trust none of it
            user = "***"
        head = f"{user}:***@" if colon else f"{user}@"
    path, qsep, query = tail.partition("?")
    if qsep:
        params = []
        for part in query.split("&"):
            key, eq, _value = part.partition("=")
            secret = key.lower() in ("password", "passwd", "pass", "sslpassword")
            params.append(f"{key}=***" if eq and secret else part)
        query = "&".join(params)
    return f"{scheme}://{head}{path}" + (f"?{query}" if qsep else "")


def ambiguous_userinfo(url: str) -> str | None:
    """A message when a server URL's user or password holds a raw `@`, `/`, `?` or `#`: SQLAlchemy
    would take part of the password for the host (and look that name up). None when it is clean."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().startswith("sqlite") or "@" not in rest:
        return None
    userinfo = rest[: rest.rfind("@")]
    if not any(c in userinfo for c in "@/?#"):
        return None
    return (
        "the user name or password holds a raw '@', '/', '?' or '#': percent-encode it "
        "('@' is %40, '/' is %2F, '?' is %3F, '#' is %23)"
    )


REDACTED = "***"


def redact_alert_url(url: str) -> str:
    """An alert URL: keep its tags and scheme (what `config show` readers need), hide the rest."""
    tags, eq, rest = url.partition("=")
    if not eq or "://" in tags or "/" in tags:
        tags, rest = "", url
    scheme, sep, _ = rest.strip().partition("://")
    shown = f"{scheme}://{REDACTED}" if sep else REDACTED
    return f"{tags.strip()}={shown}" if tags else shown


def is_redacted_alert_url(url: str) -> bool:
    """True for what `redact_alert_url` prints (never a real service URL)."""
    return url.strip().endswith("://" + REDACTED) or url.strip() == REDACTED
