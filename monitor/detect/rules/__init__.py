"""Immediate rules: evaluated on every stored batch of requests, they alert within seconds of log time.

`RulesEngine.evaluate(requests, now, source=..., is_proxy=..., rejects=...)` returns `Alert`s. The
engine is a plain object: the caller passes the clock (log time in replay, wall time live), cooldown
state lives in memory (`base.Cooldowns`), and `seed()` restores it from the `alerts` table so a
restart does not re-alert inside a cooldown. No threads, no I/O. The alerts' titles, messages and
"Next:" hints are written by `monitor.detect.rules.text`.

One module per rule (ids from config.RULE_IDS; each can be disabled in `[rules] disabled`), each a
class with `check(view)` for one client's requests of a batch and, where it keeps state, `prune(now)`:
- `unknown`: unknown-source, a source that is not known, and waves of them;
- `privileged`: management-endpoint (critical) and account-endpoint, by anyone not in admins;
- `recon`: recon-sequence, an unknown source walking the enumeration endpoints;
- `probe`: scanner-probe, paths only scanners ask for, from any source;
- `auth`: auth-failures, a burst of 401/403 behind an authenticating proxy;
- `direct`: direct-access, Ollama's own log shows a client no proxy source saw;
- `forwarded`: forwarded-mismatch, a forwarded-for value from a peer that is not a trusted proxy;
- `parse_failures`: parse-failures, a log source whose lines cannot be read, in bulk.
To add a rule: a module with such a class, its id in config.RULE_IDS, one line in `engine`.
"""

from __future__ import annotations

from monitor.detect.rules.base import MAX_TRACKED, REMINDER, Cooldowns
from monitor.detect.rules.engine import RulesEngine
from monitor.detect.rules.unknown import WAVE_LISTED, WAVE_THRESHOLD, WAVE_WINDOW

__all__ = [
    "MAX_TRACKED",
    "REMINDER",
    "WAVE_LISTED",
    "WAVE_THRESHOLD",
    "WAVE_WINDOW",
    "Cooldowns",
    "RulesEngine",
]
