"""LineDecoder: turns raw lines of one file (or stream) into ParseResults.

Peels wrappers (Docker json-file records, `journalctl -o json` records, syslog/journald text
prefixes, docker compose and kubectl prefixes), picks the format (given, or `auto`: detected from the
first request-looking lines of the file, re-detected per line when a line does not fit), and calls the
format's pure parser.
"""
