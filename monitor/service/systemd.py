"""systemd integration without libsystemd: sd_notify datagrams and the watchdog interval.

`Type=notify` services send `READY=1`, `STATUS=...`, `WATCHDOG=1` and `STOPPING=1` as datagrams to the
unix socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends sd_notify messages; a no-op when not started by systemd (no NOTIFY_SOCKET)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address:
            self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        owned = not pid or pid == str(os.getpid())
        self.watchdog_seconds: float | None = (
            int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and owned else None
        )
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; return False when not under systemd or on error."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode("utf-8", "replace"), self.address)
            return True
        except OSError:
            return False

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
