"""Run a command under a seccomp allow-list, as systemd's SystemCallFilter= does: a test helper.

    python tests/seccomp_exec.py ALLOWED_FILE [--eperm NAME,...] -- COMMAND [ARGS...]

ALLOWED_FILE holds one system call name a line (a unit's filter, expanded by tests/test_unit_seccomp.py).
Every other system call of the native architecture kills the whole process with SIGSYS (what a unit
without SystemCallErrorNumber= does), except those named by --eperm, which fail with EPERM. The filter
is installed with libseccomp through ctypes on libseccomp.so.2 (so the project's venv needs no
binding); then COMMAND is exec'd and keeps the filter, as systemd execs ExecStart= after loading it.
Names this architecture lacks (`arm_fadvise64_64`) are skipped, as systemd skips them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000


def load_filter(allowed: list[str], eperm: list[str]) -> None:
    """Install the filter in this process (and every process it execs)."""
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.restype = ctypes.c_int
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_load.restype = ctypes.c_int
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(SCMP_ACT_KILL_PROCESS)
    if not ctx:
        raise OSError("seccomp_init failed")
    rules = [(name, SCMP_ACT_ALLOW) for name in allowed]
    rules += [(name, SCMP_ACT_ERRNO | errno.EPERM) for name in eperm]
    for name, action in rules:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # not a system call of this architecture (or a multiplexed pseudo-call)
            continue
        rc = lib.seccomp_rule_add(ctx, action, number, 0)
        if rc != 0:
            raise OSError(-rc, f"seccomp_rule_add({name})")
    rc = lib.seccomp_load(ctx)
    if rc != 0:
        raise OSError(-rc, "seccomp_load")


def main(argv: list[str]) -> None:
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    eperm: list[str] = []
    if len(options) == 3 and options[1] == "--eperm":
        eperm = [n for n in options[2].split(",") if n]
    elif len(options) != 1 or not command:
        raise SystemExit(__doc__)
    with open(options[0], encoding="ascii") as fh:
        allowed = [line.strip() for line in fh if line.strip()]
    load_filter(allowed, eperm)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
