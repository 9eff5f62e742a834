"""Parsing in worker processes, running ahead of embedding, with a per-file time limit.

The main process embeds and stores; meanwhile a driver thread keeps ``workers``
processes busy parsing the next files (read, check, extract text, clean, redact)
and queues their results, at most ``ahead`` of them. A file that takes longer than
``timeout_s`` has its worker killed and replaced and is reported as failed; a
worker that dies (a parser crash, memory) fails only the file it was on. With
``workers=0`` files are parsed in the calling thread, with no time limit.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from kbqa.ingest.config import IngestSettings
from kbqa.ingest.crash_hooks import HANG_ENV, hang_if_asked  # noqa: F401  (HANG_ENV: its old home)
from kbqa.ingest.errors import LoadError

_DEFAULTS = IngestSettings()  # the settings' defaults (ingest/config.py), declared there only


@dataclass(frozen=True)
class ParseTask:
    path: str
    password: str | None = None
    redact: bool = False
    max_bytes: int | None = None
    strip_injections: bool = False
    ocr: str = _DEFAULTS.ocr  # auto | always | never (ingest.page_ocr)
    ocr_dpi: int = _DEFAULTS.ocr_dpi


@dataclass
class Parsed:
    task: ParseTask
    pages: list = field(default_factory=list)  # list[ingest.loaders.Page], text cleaned
    doc_hash: str = ""
    size: int = 0
    error: str | None = None  # reason the file failed, with its hint
    redactions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def read_stable(path: Path, max_bytes: int | None = None) -> bytes:
    """Read a file, refusing one that is too large or that changes while being read."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):  # a FIFO or device would block or never end
        raise LoadError(path, "not a regular file (a pipe, socket or device)")
    if max_bytes is not None and before.st_size > max_bytes:
        raise LoadError(path, f"file too large ({before.st_size / 2**20:.1f} MiB > {max_bytes / 2**20:.1f} MiB limit, setting ingest.max_file_mb)")
    data = path.read_bytes()
    after = os.stat(path)
    if _stat_key(before) != _stat_key(after) or len(data) != after.st_size:
        raise LoadError(path, "file changed while being read", "run ingest again once it is complete")
    return data


def parse_file(task: ParseTask) -> Parsed:
    """Read, extract and clean one file. Never raises: failures come back as ``error``."""
    from kbqa.ingest.clean import clean_text
    from kbqa.ingest.loaders import load_document

    started = time.perf_counter()
    path = Path(task.path)
    out = Parsed(task)
    hang_if_asked(path)  # test-only (ingest/crash_hooks.py)
    try:
        data = read_stable(path, task.max_bytes)
        out.size = len(data)
        out.doc_hash = hashlib.sha256(data).hexdigest()
        pages = load_document(path, data, password=task.password, ocr=task.ocr, ocr_dpi=task.ocr_dpi)
        cleaned = [replace(p, text=clean_text(p.text)) for p in pages]
        if task.redact:
            from kbqa.ingest.redact import redact

            redacted = []
            for page in cleaned:
                text, counts = redact(page.text)
                for kind, n in counts.items():
                    out.redactions[kind] = out.redactions.get(kind, 0) + n
                redacted.append(replace(page, text=text))
            cleaned = redacted
        if task.strip_injections:
            from kbqa.ingest.redact import strip_injections

            stripped = []
            for page in cleaned:
                text, n = strip_injections(page.text)
                if n:
                    out.redactions["instruction-like text"] = out.redactions.get("instruction-like text", 0) + n
                stripped.append(replace(page, text=text))
            cleaned = stripped
        out.pages = cleaned
    except LoadError as exc:
        out.error = exc.reason + (f" ({exc.hint})" if exc.hint else "")
    except FileNotFoundError:
        out.error = "file vanished during ingestion (no such file)"
    except PermissionError as exc:
        out.error = f"cannot read: {exc.strerror or 'permission denied'}"
    except IsADirectoryError:
        out.error = "is a directory, not a file"
    except OSError as exc:
        out.error = f"cannot read: {exc.strerror or exc}"
    except RecursionError:
        out.error = "document structure nested too deeply to parse"
    except MemoryError:
        out.error = "ran out of memory while parsing"
    except Exception as exc:  # never let one file stop the batch, never hide it
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - started
    return out


# ---- worker processes -------------------------------------------------------------------
def _die_with_parent() -> None:
    """Linux: have the kernel kill this worker when the ingesting process dies (even by SIGKILL)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _worker_main(conn) -> None:
    _die_with_parent()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        result = parse_file(task)
        try:
            conn.send(result)
        except (BrokenPipeError, EOFError, OSError):
            return


class _Worker:
    """A parser process: ``python -m ingest.workers FD_IN FD_OUT`` (a plain subprocess, so that
    the caller's ``__main__`` is never re-imported, as multiprocessing's spawn would)."""

    def __init__(self):
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kbqa.ingest.workers", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)
        self.task: ParseTask | None = None
        self.deadline = 0.0

    def send(self, task) -> None:
        self._send.send(task)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _close(self) -> None:
        for c in (self._send, self.conn):
            try:
                c.close()
            except OSError:
                pass

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(5)
        except Exception:
            pass
        self._close()

    def stop(self) -> None:
        try:
            self._send.send(None)
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(2)
        except Exception:
            self.proc.kill()
            self.proc.wait(2)
        self._close()


_DONE = object()


class ParsePool:
    """``map(tasks)`` yields a ``Parsed`` per task, in completion order."""

    def __init__(self, workers: int = 1, timeout_s: float = 300.0, ahead: int = 8):
        self.workers = max(0, int(workers))
        self.timeout_s = timeout_s
        self.ahead = max(1, ahead)
        self._stop = threading.Event()

    def map(self, tasks: Iterable[ParseTask]) -> Iterator[Parsed]:
        tasks = list(tasks)
        if not tasks:
            return
        if self.workers == 0:
            for task in tasks:
                yield parse_file(task)
            return
        out: queue.Queue = queue.Queue()
        self._stop.clear()
        driver = threading.Thread(target=self._drive, args=(tasks, out), name="kbqa-parse-driver", daemon=True)
        driver.start()
        try:
            while True:
                item = out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
            driver.join()

    def _drive(self, tasks: list[ParseTask], out: queue.Queue) -> None:
        from multiprocessing.connection import wait

        todo = list(reversed(tasks))
        pool: list[_Worker] = []
        try:
            pool = [_Worker() for _ in range(min(self.workers, len(tasks)))]
            while (todo or any(w.task for w in pool)) and not self._stop.is_set():
                for w in pool:
                    if w.task is None and todo and out.qsize() < self.ahead:
                        w.task = todo.pop()
                        w.deadline = time.monotonic() + self.timeout_s
                        try:
                            w.send(w.task)
                        except (BrokenPipeError, OSError):
                            pass  # found dead below
                busy = [w for w in pool if w.task is not None]
                if not busy:
                    time.sleep(0.05)  # the consumer is behind; let it catch up
                    continue
                now = time.monotonic()
                wait_s = max(0.0, min(0.5, min(w.deadline for w in busy) - now))
                ready = wait([w.conn for w in busy], timeout=wait_s)
                for i, w in enumerate(pool):
                    if w.task is None:
                        continue
                    if w.conn in ready:
                        try:
                            result = w.conn.recv()
                        except (EOFError, OSError):
                            result = None
                        if result is not None:
                            out.put(result)
                            w.task = None
                            continue
                    if w.conn in ready or not w.alive():
                        try:
                            code = w.proc.wait(1)
                        except Exception:
                            code = None
                        out.put(Parsed(w.task, error=f"parser process died (exit code {code}) while reading this file"))
                        w.kill()
                        pool[i] = _Worker()
                    elif time.monotonic() >= w.deadline:
                        out.put(Parsed(w.task, error=f"timed out: parsing took longer than {self.timeout_s:g} s (setting ingest.file_timeout_s)"))
                        w.kill()
                        pool[i] = _Worker()
        except BaseException as exc:  # surface to the consumer
            out.put(exc)
        finally:
            for w in pool:
                if w.task is not None:
                    w.kill()
                else:
                    w.stop()
            out.put(_DONE)


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    from kbqa.ingest.workers import _worker_main as _run  # the importable module's classes, for pickling

    _in = Connection(int(sys.argv[1]), writable=False)
    _out = Connection(int(sys.argv[2]), readable=False)

    class _Duplex:
        recv = _in.recv
        send = _out.send

    _run(_Duplex())
