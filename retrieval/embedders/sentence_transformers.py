"""sentence-transformers embedder; the packaged all-MiniLM-L6-v2 by default."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.device import resolve_device
from retrieval.packaged import PACKAGED_EMBEDDER, minilm_dir

_MODELS: dict[tuple[str, str], object] = {}  # one copy per process
_LOCK = threading.Lock()


def _load(path: str, device: str):
    key = (path, device)
    with _LOCK:
        if key not in _MODELS:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ImportError("sentence-transformers is missing: pip install sentence-transformers") from exc
            model = SentenceTransformer(path, device=device, local_files_only=True)
            if device.startswith("cuda"):
                model.half()
            _MODELS[key] = model
        return _MODELS[key]


class SentenceTransformerEmbedder:
    def __init__(self, model: str = PACKAGED_EMBEDDER, device: str = "auto", batch_size: int = 64):
        self.name = model
        self._device_setting = device
        self.batch_size = batch_size
        self._model = None

    def _path(self) -> str:
        if self.name == PACKAGED_EMBEDDER:
            return str(minilm_dir())
        path = Path(self.name).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"embedder.model: {self.name!r} is neither the packaged {PACKAGED_EMBEDDER!r} nor a local folder"
            )
        return str(path)

    @property
    def model(self):
        if self._model is None:
            self._model = _load(self._path(), resolve_device(self._device_setting))
        return self._model

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encoded = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return vectors.astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
