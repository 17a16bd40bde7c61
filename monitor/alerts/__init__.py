"""Alerts: deduplication and digests (dispatch), the durable outbox and delivery through apprise."""
