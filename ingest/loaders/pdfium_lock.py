"""One lock for every use of pdfium in a process.

PDFium keeps global state and is not thread-safe: two threads rendering or reading
different documents at once can crash the interpreter (a segmentation fault). The
viewer renders pages in the server's worker threads, and ``ingest.workers = 0`` parses
in the calling thread, so each whole use of pypdfium2 holds `PDFIUM`. Parser worker
processes each have their own pdfium and their own copy of the lock, which is made
fresh in a forked child (a lock held by another thread at the fork would never be freed).
"""

from __future__ import annotations

import os
import threading

PDFIUM = threading.RLock()


def _fresh_in_child() -> None:
    global PDFIUM
    PDFIUM = threading.RLock()


os.register_at_fork(after_in_child=_fresh_in_child)


def pdfium_lock() -> threading.RLock:
    """The current process's pdfium lock (read at call time: a forked child has its own)."""
    return PDFIUM
