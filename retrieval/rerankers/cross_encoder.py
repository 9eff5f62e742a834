"""Cross-encoder reranker: any local sentence-transformers `CrossEncoder` folder (a
`*ForSequenceClassification` model with its tokenizer, e.g. a bge-reranker or an ms-marco MiniLM
cross-encoder copied onto the machine). Nothing is downloaded (`local_files_only`).

Scores are the model's output for (question, chunk text) after its activation (sigmoid for a
one-label model: in [0, 1]); for a model with several labels, the last label's. The constructor
only checks the folder; the model loads on the first `rerank`, once per process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from kbqa.retrieval.device import resolve_device
from kbqa.retrieval.types import Hit

INSTALL = "pip install 'sentence-transformers>=5.0'"
_MODELS: dict[tuple[str, str, int], object] = {}
_LOCK = threading.Lock()


class RerankerError(ValueError):
    pass


def check_folder(path: Path) -> None:
    """A readable cross-encoder folder, or an error naming the path and what is wrong with it."""
    if not path.is_dir():
        raise RerankerError(f'retrieval.rerank: no cross-encoder folder at {path} (set a local sentence-transformers CrossEncoder folder, or "none")')
    config = path / "config.json"
    if not config.is_file():
        raise RerankerError(f"retrieval.rerank: {path} has no config.json; it is not a transformers model folder")
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError) as exc:
        raise RerankerError(f"retrieval.rerank: cannot read {config}: {exc}") from exc
    if architectures and not any("SequenceClassification" in a for a in architectures):
        # e.g. a bi-encoder (BertModel): CrossEncoder would bolt on an untrained head and rank at random
        raise RerankerError(f"retrieval.rerank: {path} is not a cross-encoder (architectures {architectures}, want a *ForSequenceClassification model)")


def _load(path: str, device: str, max_length: int):
    key = (path, device, max_length)
    with _LOCK:
        if key not in _MODELS:
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as exc:
                raise ImportError(f"the cross-encoder reranker needs sentence-transformers: {INSTALL}") from exc
            _MODELS[key] = CrossEncoder(path, device=device, max_length=max_length, local_files_only=True)
        return _MODELS[key]


class CrossEncoderReranker:
    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 32, max_length: int = 512):
        self.path = Path(path).expanduser().resolve()
        check_folder(self.path)
        self.name = f"cross-encoder:{self.path.name}"
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length

    def _model(self):
        return _load(str(self.path), resolve_device(self.device), self.max_length)

    def scores(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        out = self._model().predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True)
        if out.ndim == 2:
            out = out[:, -1]
        return [float(s) for s in out]

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        hits = list(hits)
        if k <= 0 or not hits:
            return []
        scores = self.scores(query, [h.chunk.text for h in hits])
        order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))  # ties keep the first stage's order
        return [Hit(hits[i].chunk, scores[i]) for i in order[:k]]
