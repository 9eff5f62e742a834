"""sentence-transformers embedder; the packaged all-MiniLM-L6-v2 by default.

Speed: texts are tokenized once per call (fast tokenizer, truncated to the model's
limit), sorted by their token length and cut into batches of similar length, so that
padding costs little; each batch goes through the model's modules directly (no second
tokenization inside ``SentenceTransformer.encode``).

``precision`` picks the arithmetic:

- ``fp32``: the reference.
- ``bf16``: the weights in bfloat16 (fast on CPUs with AVX-512 BF16/AMX only; slower
  than fp32 on plain AVX2 machines).
- ``int8``: dynamic int8 quantization of the Linear layers (``torch.ao``), CPU only;
  on CUDA it falls back to fp16.
- ``auto`` (default): fp16 on CUDA, fp32 on CPU.

Reduced precision changes the vectors slightly: ``bench/embed_quality.py`` checks that
SciFact nDCG@10 stays within 0.005 of fp32 before a precision is recommended.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kbqa.retrieval.config import EmbedderSettings
from kbqa.retrieval.device import resolve_device
from kbqa.retrieval.packaged import PACKAGED_EMBEDDER, minilm_dir

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
ENCODER_VERSION = 1  # part of `identity`: bump when a change in this file changes the vectors
_MODELS: dict[tuple[str, str, str], object] = {}  # one copy per process and precision
_LOCK = threading.Lock()


def _effective_precision(precision: str, device: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"embedder.precision: unknown precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
    cuda = device.startswith("cuda")
    if precision == "auto":
        return "fp16" if cuda else "fp32"
    if cuda and precision == "int8":
        return "fp16"
    if not cuda and precision == "fp16":
        return "fp32"  # fp16 matrix products are slow on CPUs
    return precision


def _load(path: str, device: str, precision: str):
    key = (path, device, precision)
    with _LOCK:
        if key not in _MODELS:
            try:
                import torch
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a core dependency
                raise ImportError("sentence-transformers is missing: pip install sentence-transformers") from exc
            model = SentenceTransformer(path, device=device, local_files_only=True)
            model.eval()
            if precision in {"fp32", "int8"}:
                model.float()  # a checkpoint saved in half precision loads as such
            if precision == "fp16":
                model.half()
            elif precision == "bf16":
                model.to(torch.bfloat16)
            elif precision == "int8":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.ao's deprecation notice
                    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                    # per output channel: per-tensor scales cost SciFact nDCG@10 0.02 (bench/results/gpu_*)
                    model = quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
            _MODELS[key] = model
        return _MODELS[key]


def folder_fingerprint(folder: Path) -> str:
    """A cheap digest of a model folder: every file's relative path, size and mtime."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def length_batches(lengths: Sequence[int], batch_size: int, token_budget: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    A batch holds at most `batch_size` texts and, when `token_budget` is given, at most
    that many padded tokens (so that batches of short texts can be larger).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        full = len(current) >= batch_size or (token_budget is not None and current and (len(current) + 1) * longest > token_budget)
        if full:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


_DEFAULTS = EmbedderSettings()  # the settings' defaults (retrieval/config.py), declared there only


class SentenceTransformerEmbedder:
    def __init__(
        self, model: str = PACKAGED_EMBEDDER, device: str = _DEFAULTS.device, batch_size: int = _DEFAULTS.batch_size, precision: str = _DEFAULTS.precision
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"embedder.precision: unknown precision {precision!r} (choose one of {', '.join(PRECISIONS)})")
        self.name = model
        self._device_setting = device
        self.batch_size = batch_size
        self.precision = precision
        self._model = None
        self._device: str | None = None
        self.slice_texts = 4096  # texts tokenized ahead while the model encodes the previous slice

    def _path(self) -> str:
        if self.name == PACKAGED_EMBEDDER:
            return str(minilm_dir())
        path = Path(self.name).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"embedder.model: {self.name!r} is neither the packaged {PACKAGED_EMBEDDER!r} nor a local folder")
        return str(path)

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = resolve_device(self._device_setting)
        return self._device

    @property
    def effective_precision(self) -> str:
        return _effective_precision(self.precision, self.device)

    @property
    def identity(self) -> str:
        """Everything that decides the vectors: this encoder's version, the model's files
        (paths, sizes, modification times), the effective precision and the device kind.
        Cached vectors are reused only under the same identity (ingest/embed_cache.py)."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = folder_fingerprint(Path(self._path()))
        kind = self.device.split(":")[0]
        return f"sentence-transformers/{ENCODER_VERSION}|{self.name}|{self._fingerprint}|{self.effective_precision}|{kind}"

    @property
    def model(self):
        if self._model is None:
            self._model = _load(self._path(), self.device, self.effective_precision)
        return self._model

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, no special tokens, no truncation: one call into the Rust
        tokenizer (ids only, no offsets); the splitter counts many small pieces with it."""
        if not texts:
            return []
        counter = self._counting_tokenizer()
        if counter is not None:
            encode = getattr(counter, "encode_batch_fast", counter.encode_batch)  # tokenizers >= 0.20: no offsets
            return [len(e) for e in encode(list(texts), add_special_tokens=False)]
        encoded = self.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def _counting_tokenizer(self):
        """A copy of the Rust tokenizer without truncation or padding (None for a slow tokenizer)."""
        if not hasattr(self, "_counter"):
            import copy

            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            counter = None
            if backend is not None:
                counter = copy.deepcopy(backend)
                counter.no_truncation()
                counter.no_padding()
            self._counter = counter
        return self._counter

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The token ids the model reads for each text: special tokens included, truncated to
        the model's window (`max_tokens`), no padding; one call into the Rust tokenizer."""
        fast = self._fast_tokenizer()
        if fast is not None:
            return [e.ids for e in fast.encode_batch(list(texts))]
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens, padding=False)["input_ids"]

    def _fast_tokenizer(self):
        if not hasattr(self, "_fast"):
            import copy

            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            self._fast = None
            if backend is not None:
                fast = copy.deepcopy(backend)
                fast.enable_truncation(self.max_tokens)
                fast.no_padding()
                self._fast = fast
        return self._fast

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for `texts`. Long inputs go in slices: the next slice is tokenized in a
        thread (the Rust tokenizer releases the GIL) while the model encodes this one."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        model = self.model
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        slice_size = max(1, self.slice_texts)
        starts = list(range(0, len(texts), slice_size))
        if len(starts) == 1:
            self._encode_ids(model, self.token_ids(texts), out, 0)
            return out
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self.token_ids, texts[:slice_size])
            for n, start in enumerate(starts):
                ids = pending.result()
                if n + 1 < len(starts):
                    nxt = starts[n + 1]
                    pending = pool.submit(self.token_ids, texts[nxt : nxt + slice_size])
                self._encode_ids(model, ids, out, start)
        return out

    def _encode_ids(self, model, ids: list[list[int]], out: np.ndarray, offset: int) -> None:
        import torch

        # about batch_size texts of a full window per batch; more when texts are short
        budget = self.batch_size * max(self.max_tokens // 2, 1)
        pad = self.tokenizer.pad_token_id or 0
        wants_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())
        done: list[tuple[list[int], object]] = []  # copied back once at the end: no sync per batch
        with torch.inference_mode():
            for batch in length_batches([len(i) for i in ids], self.batch_size * 4, budget):
                width = len(ids[batch[0]])
                input_ids = np.full((len(batch), width), pad, dtype=np.int64)
                mask = np.zeros((len(batch), width), dtype=np.int64)
                for row, i in enumerate(batch):
                    n = len(ids[i])
                    input_ids[row, :n] = ids[i]
                    mask[row, :n] = 1
                features = {
                    "input_ids": torch.from_numpy(input_ids).to(self.device, non_blocking=True),
                    "attention_mask": torch.from_numpy(mask).to(self.device, non_blocking=True),
                }
                if wants_types:
                    features["token_type_ids"] = torch.zeros_like(features["input_ids"])
                vectors = model(features)["sentence_embedding"].float()
                done.append((batch, torch.nn.functional.normalize(vectors, p=2, dim=1)))
            for batch, vectors in done:
                out[[offset + i for i in batch]] = vectors.cpu().numpy()

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]
