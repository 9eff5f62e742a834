"""`embedder.backend = "auto"`: pick the embedder by the corpus's languages at the first ingest.

A sample of the documents (up to `SAMPLE_FILES` files, the text of their first pages, no OCR)
is read before anything is embedded. A corpus with at least `CHINESE_SHARE` Chinese text gets the
multilingual e5; an English one keeps MiniLM, measured the better of the two on English
(bench/results/retrieval_fusion_sweep_e5.md). The choice is written to kb.json with the rest of
the record, so a knowledge base keeps its embedder; the ingest summary reports it.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

SAMPLE_FILES = 40
SAMPLE_PAGES = 3
SAMPLE_MAX_BYTES = 20 * 2**20
CHINESE_SHARE = 0.1
MULTILINGUAL = ("e5", "multilingual-e5-small")
ENGLISH = ("sentence-transformers", "all-MiniLM-L6-v2")


def chinese_share(paths: Sequence[str | Path]) -> float:
    """The share of Chinese characters among the letters of a sample of the documents under `paths`."""
    from kbqa.ingest.discover import discover
    from kbqa.ingest.errors import LoadError
    from kbqa.ingest.loaders import IMAGE_EXTENSIONS, load_document
    from kbqa.retrieval.lang import is_cjk

    files = discover(list(paths)).files
    step = max(1, len(files) // SAMPLE_FILES)
    letters = chinese = 0
    for path in files[::step][:SAMPLE_FILES]:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block: the ingest reports it
                continue
            if info.st_size > SAMPLE_MAX_BYTES or path.suffix.lower() in IMAGE_EXTENSIONS:  # images need OCR: not sampled
                continue
            pages = load_document(path, path.read_bytes(), ocr="never")[:SAMPLE_PAGES]
        except (LoadError, OSError, ValueError):
            continue  # the ingest itself reports the file
        for page in pages:
            for ch in page.text[:20_000]:
                if ch.isalpha():
                    letters += 1
                    chinese += is_cjk(ch)
    return chinese / letters if letters else 0.0


def choose_embedder(paths: Sequence[str | Path]) -> tuple[str, str, str]:
    """(backend, model, why) for a new knowledge base built from `paths`."""
    share = chinese_share(paths)
    if share >= CHINESE_SHARE:
        return (*MULTILINGUAL, f"{share:.0%} of the sampled text is Chinese")
    return (*ENGLISH, f"{share:.0%} of the sampled text is Chinese (English corpus)")
