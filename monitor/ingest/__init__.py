"""Backfill: read whole files (plain or gzip) into the store, optionally parsed by a worker process."""
