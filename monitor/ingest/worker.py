"""Parse-ahead for big backfills: a worker process reads and parses while this process writes.

One SQLite writer binds and inserts about as fast as one Python process parses, so `ingest` of a big
file on SQLite splits the work across two cores: the worker reads the file, parses each batch and
builds its columns and rollups (monitor.store.rows); this process inserts a batch and its checkpoint
in one transaction while the worker parses the next. The pipe holds one batch, so the worker is never more than a batch ahead and
memory stays flat.

Nothing about exactly-once changes: only this process writes, each batch commits with the checkpoint
that covers it, and if either process dies the next run resumes from the last committed checkpoint.
The worker is a fresh interpreter (`python -m monitor.ingest.worker`), never forked from this one, so
threads here (a progress bar's) cannot leave it holding a lock, and unlike multiprocessing's spawn it
does not re-run the caller's main script. It gets its job pickled on stdin and sends pickled batches
through a pipe of its own (stdout stays free for anything a library might print).
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import monitor
from monitor.core.errors import SourceError
from monitor.ingest.job import (
    Batch,
    ParseJob,
    Progress,
    ReadOutcome,
    has_partial_tail,
    open_log,
    read_batches,
    read_error,
    run_inline,
)
from monitor.parsers.decoder import LineDecoder
from monitor.store.rows import sqlite_rows

if TYPE_CHECKING:
    from monitor.ingest.job import _Committer


def run_piped(job: ParseJob, committer: _Committer, progress: Progress | None) -> ReadOutcome:
    """Store a file parsed by a worker process; raise SourceError when it cannot be read.

    A worker that cannot start, or dies before its first batch, changes nothing: the file is then
    read in this process.
    """
    try:
        worker, messages, errors = _start(job)
    except OSError:
        return run_inline(job, committer, progress)
    position = job.position
    received = False
    collecting = gc.isenabled()
    gc.disable()  # as in the worker: each batch's rows would be walked for cycles they cannot have
    try:
        while True:
            try:
                kind, payload = pickle.load(messages)
            except (EOFError, pickle.UnpicklingError):
                if not received:
                    _stop(worker, messages)
                    return run_inline(job, committer, progress)
                raise SourceError(
                    f"{job.path}: the parse worker stopped unexpectedly ({_why(worker, errors)}); "
                    "what was stored so far is kept and the next run resumes from it"
                ) from None
            received = committer.report.parse_worker = True
            if kind == "batch":
                batch: Batch = payload
                committer.submit(batch)
                if progress:
                    progress(batch.position - position)
                position = batch.position
            elif kind == "done":
                outcome: ReadOutcome = payload
                return outcome
            else:
                raise SourceError(str(payload))
    finally:
        if collecting:
            gc.enable()
        _stop(worker, messages)
        errors.close()


def _start(job: ParseJob) -> tuple[subprocess.Popen[bytes], IO[bytes], IO[bytes]]:
    """Start a worker on `job`; return it, the stream of its messages and the file of its stderr."""
    env = dict(os.environ)
    # The worker imports this package from where this process did, installed or not.
    root = str(Path(monitor.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed by run_piped, after the worker is gone)
    read_fd, write_fd = os.pipe()
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "monitor.ingest.worker", str(write_fd)],
            stdin=subprocess.PIPE,
            stderr=errors,
            pass_fds=(write_fd,),
            env=env,
        )
    except OSError:
        os.close(read_fd)
        errors.close()
        raise
    finally:
        os.close(write_fd)  # the worker holds its own copy: EOF on read_fd means it has gone
    assert worker.stdin is not None
    try:
        with worker.stdin as job_pipe:
            pickle.dump(job, job_pipe, protocol=pickle.HIGHEST_PROTOCOL)
    except BrokenPipeError:
        pass  # gone already: reading its messages will say so
    return worker, os.fdopen(read_fd, "rb", buffering=1 << 20), errors


def _stop(worker: subprocess.Popen[bytes], messages: IO[bytes]) -> None:
    messages.close()  # a worker still sending gets a broken pipe and stops
    try:
        worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _why(worker: subprocess.Popen[bytes], errors: IO[bytes]) -> str:
    try:
        code = worker.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return "no reply"
    errors.seek(0)
    lines = errors.read().decode("utf-8", "replace").strip().splitlines()
    said = f": {lines[-1][:300]}" if lines else ""
    return (f"killed by signal {-code}" if code < 0 else f"exit status {code}") + said


def _parse_worker(out: IO[bytes], job: ParseJob) -> None:
    try:
        decoder = LineDecoder(job.fmt, job.ctx)
        position = job.position
        with open_log(job.path) as reader:
            for batch in read_batches(reader, decoder, job):
                assert isinstance(batch.parsed, list)
                batch.parsed = sqlite_rows(job.source, job.file_id, batch.parsed)
                _send(out, "batch", batch)
                position = batch.position
            partial = False if job.final else has_partial_tail(reader, position)
        _send(out, "done", ReadOutcome(decoder.detected, position, partial))
    except (BrokenPipeError, ConnectionResetError):
        return  # the parent stopped listening: it is shutting down or failed to write
    except SourceError as exc:
        _send_error(out, str(exc))
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        _send_error(out, read_error(job.path, exc))
    except Exception as exc:  # a bug: say what, rather than leave the parent with a bare EOF
        _send_error(out, f"{job.path}: the parse worker failed: {type(exc).__name__}: {exc}")


def _send(out: IO[bytes], kind: str, payload: Any) -> None:
    pickle.dump((kind, payload), out, protocol=pickle.HIGHEST_PROTOCOL)


def _send_error(out: IO[bytes], text: str) -> None:
    with contextlib.suppress(OSError):
        _send(out, "error", text)


def main() -> None:
    # Ctrl-C goes to the whole process group: the parent decides, and stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Batches are freed by reference counting; the cycle collector would only re-walk every live row.
    gc.disable()
    job = pickle.load(sys.stdin.buffer)
    # Unbuffered: pickle writes in 64 KiB frames anyway, and a buffer left to flush at exit would
    # complain about a parent that stopped reading.
    with os.fdopen(int(sys.argv[1]), "wb", buffering=0) as out:
        _parse_worker(out, job)


if __name__ == "__main__":
    main()
