"""One writer at a time per knowledge base: an exclusive ``flock`` on ``DIR/.lock``.

A second `ingest` (or `kbqa doctor --repair`) on the same knowledge base waits,
saying who holds the lock, and gives up with a clear error after ``timeout_s``.
The kernel drops the lock when its holder dies (even by SIGKILL), so a crashed run
never leaves the knowledge base locked.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

from kbqa.retrieval.kbdir import LOCK_FILE

log = logging.getLogger(__name__)


class KBLockedError(ValueError):
    """Another process holds the knowledge base's lock and did not release it in time."""


class KBLock:
    def __init__(self, kb_path: str | Path, timeout_s: float = 600.0, poll_s: float = 0.2):
        self.kb_path = Path(kb_path)
        self.path = self.kb_path / LOCK_FILE
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._fd: int | None = None
        self._depth = 0

    def holder(self) -> str:
        """The pid written by the current holder, or '?' when unknown."""
        try:
            return self.path.read_text(encoding="ascii").strip() or "?"
        except OSError:
            return "?"

    def _try(self, fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise

    def acquire(self) -> None:
        if self._depth:  # re-entrant within one holder
            self._depth += 1
            return
        self.kb_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not self._try(fd):
                deadline = time.monotonic() + self.timeout_s
                log.warning(
                    "knowledge base %s is locked by another process (pid %s); waiting up to %.0f s",
                    self.kb_path,
                    self.holder(),
                    self.timeout_s,
                )
                while True:
                    if time.monotonic() >= deadline:
                        raise KBLockedError(
                            f"knowledge base {self.kb_path} is being modified by another process (pid {self.holder()}); "
                            f"gave up after {self.timeout_s:g} s (setting ingest.lock_timeout_s). "
                            "Wait for it to finish and run again."
                        )
                    time.sleep(self.poll_s)
                    if self._try(fd):
                        break
            try:  # the holder's pid is only shown to others: a full disk must not stop the writer here
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except OSError as exc:
                log.warning("%s: cannot record the lock holder's pid (%s)", self.path, exc.strerror or exc)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if not self._depth:
            return
        self._depth -= 1
        if self._depth:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._depth > 0

    def __enter__(self) -> "KBLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
