"""Test-only hooks: kill the ingesting process at a named point, or make a parser hang.

They do nothing unless their environment variable is set; only the tests set them:

- ``KBQATEST_CRASH_AT=POINT[:N]`` kills the process (SIGKILL) the N-th time (default: the
  first) the pipeline reaches ``POINT`` (``parsed``, ``after_upsert``, ``after_manifest``,
  ``after_manifest_delete``, ``keyword_save``; ``ingest/pipeline.py``). Used by
  ``tests/test_crash.py``, ``tests/test_embed_cache.py`` and ``bench/crash_test.py``.
  At ``keyword_save`` it first leaves what a BM25 write killed before its rename leaves.
- ``KBQATEST_FAIL_AT=POINT[:N]`` raises ``OSError(ENOSPC)`` there instead: a full disk at a
  chosen point (``tests/test_faults.py``, beside the real full disk of a small tmpfs).
- ``KBQATEST_PARSE_HANG=NAME``: parsing a file of this name never returns
  (``ingest/workers.py``; the per-file time limit test in ``tests/test_bad_input.py``).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

CRASH_ENV = "KBQATEST_CRASH_AT"  # test-only: "POINT[:N]" kills the process (SIGKILL) the N-th time POINT is reached
FAIL_ENV = "KBQATEST_FAIL_AT"  # test-only: "POINT[:N]" raises OSError(ENOSPC) the N-th time POINT is reached
HANG_ENV = "KBQATEST_PARSE_HANG"  # test-only: a file of this name makes its parser hang (per-file time limit test)
_crash_counts: dict[str, int] = {}


def crash_point(name: str, before: Callable[[], None] | None = None) -> None:
    """Test hook for the crash tests; does nothing unless $KBQATEST_CRASH_AT (or $KBQATEST_FAIL_AT) names this point."""
    _fail_if_asked(name)
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] >= int(nth or 1):
        if before is not None:
            before()
        os.kill(os.getpid(), signal.SIGKILL)


def _fail_if_asked(name: str) -> None:
    point, _, nth = os.environ.get(FAIL_ENV, "").partition(":")
    if point != name:
        return
    key = f"fail:{name}"
    _crash_counts[key] = _crash_counts.get(key, 0) + 1
    if _crash_counts[key] >= int(nth or 1):
        raise OSError(errno.ENOSPC, f"No space left on device (test hook {FAIL_ENV}={point})")


def crash_before_keyword_save(keyword_index) -> None:
    """The ``keyword_save`` point: a kill there first leaves a partial temp file in the
    keyword index's folder, as a write killed before its rename would."""
    crash_point("keyword_save", before=lambda: _torn_keyword_write(keyword_index))


def _torn_keyword_write(keyword_index) -> None:
    directory = getattr(keyword_index, "directory", None)
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / ".tokens.json.torn").write_text('{"partial": [', encoding="utf-8")


def hang_if_asked(path: Path) -> None:
    """Test hook for the per-file time limit; never returns when $KBQATEST_PARSE_HANG is this file's name."""
    hang = os.environ.get(HANG_ENV)
    if hang and path.name == hang:  # test-only: a parser that never returns
        while True:
            time.sleep(3600)
