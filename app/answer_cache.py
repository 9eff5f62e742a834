"""An in-memory cache of answers to repeated identical questions.

An answer is reused only when everything it depends on is unchanged: the question (as
typed, surrounding whitespace aside), k, the retrieval settings, the LLM settings, the
model and adapter that answer, and the knowledge base's content. The content's state
is read from the manifest on every lookup (document count, latest ingestion time, total
size): any ingest, replacement or removal, by this process or another, changes it and
so misses the cache. Only deterministic answers (temperature 0) and questions without
conversation history are cached.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from kbqa.retrieval.config import LLMSettings

_DEFAULT_ENTRIES = LLMSettings().answer_cache  # the setting llm.answer_cache (retrieval/config.py) owns the default


def cache_key(question: str, k: int | None, parts: Mapping[str, Any], kb_state: tuple) -> str:
    """A stable digest of everything an answer depends on."""
    payload = {"question": question.strip(), "k": k, "parts": parts, "kb_state": list(kb_state)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def manifest_state(conn) -> tuple:
    """(documents, latest ingestion time, total bytes) of a manifest's SQLite connection."""
    row = conn.execute("SELECT COUNT(*), COALESCE(MAX(ingested_at), 0), COALESCE(SUM(size), 0) FROM documents").fetchone()
    return tuple(row)


class AnswerCache:
    """A thread-safe LRU map of key -> answer; `max_entries=0` turns it off."""

    def __init__(self, max_entries: int = _DEFAULT_ENTRIES):
        self.max_entries = max_entries
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str):
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return copy.deepcopy(self._items[key])

    def put(self, key: str, value: Any) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._items[key] = copy.deepcopy(value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
