"""The training run's configuration: a validated dataclass, saved beside the adapter as JSON.

Defaults follow common community practice for LoRA on small instruct models:
rank 8, alpha 32, every linear layer, learning rate 1e-4, 5% warm-up then cosine decay,
AdamW, gradient clipping at 1.0.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CONFIG_NAME = "kbqa_train_config.json"  # beside adapter_config.json (peft's own)
MODES = ("lora", "freeze")


class ConfigError(ValueError):
    """A bad training setting; the message names the field."""


@dataclass
class TrainConfig:
    data: str  # JSONL in any format of finetune.formats
    output_dir: str
    model: str = "smollm2"  # the packaged SmolLM2-135M-Instruct, or a local model folder
    val_data: str | None = None  # else records with split == "validation", else val_fraction of data
    val_fraction: float = 0.1
    mode: str = "lora"  # lora | freeze (train only the last `freeze_last_layers` layers)
    lora_rank: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str = "all-linear"  # or a comma-separated list of module names
    lora_last_layers: int = 0  # LoRA only in the last n decoder layers (0 = all): backward stops there
    freeze_last_layers: int = 2
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    max_minutes: float | None = None  # wall-clock budget: stop (validated, best kept) once spent
    batch_size: int = 4
    grad_accum: int = 4
    max_grad_norm: float = 1.0
    max_length: int = 2048
    pack_shared_prefix: bool = False  # questions over the same blocks train as one sequence (finetune.packing)
    eval_every: int = 50  # optimizer steps between validation losses
    early_stopping_patience: int = 3  # validations without improvement before stopping; 0 = never
    save_total_limit: int = 2  # checkpoint-* folders kept (the best adapter is kept apart)
    seed: int = 42
    device: str = "auto"
    cache_dir: str | None = None  # where the packaged model is dequantized (default ~/.cache/kbqa)
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: {why} (got {getattr(self, name)!r})")

        need(bool(self.data), "data", "a training file is required")
        need(bool(self.output_dir), "output_dir", "an output folder is required")
        need(self.mode in MODES, "mode", f"must be one of {', '.join(MODES)}")
        need(self.lora_rank >= 1, "lora_rank", "must be at least 1")
        need(self.lora_alpha > 0, "lora_alpha", "must be positive")
        need(0.0 <= self.lora_dropout < 1.0, "lora_dropout", "must be in [0, 1)")
        need(bool(self.target_modules.strip()), "target_modules", "name 'all-linear' or some modules")
        need(self.lora_last_layers >= 0, "lora_last_layers", "must be 0 (all layers) or more")
        need(self.freeze_last_layers >= 1, "freeze_last_layers", "must be at least 1")
        need(0.0 < self.learning_rate < 1.0, "learning_rate", "must be in (0, 1)")
        need(self.weight_decay >= 0.0, "weight_decay", "must not be negative")
        need(0.0 <= self.warmup_ratio < 1.0, "warmup_ratio", "must be in [0, 1)")
        need(self.epochs > 0, "epochs", "must be positive")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1")
        need(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be positive")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.grad_accum >= 1, "grad_accum", "must be at least 1")
        need(self.max_grad_norm > 0, "max_grad_norm", "must be positive")
        need(self.max_length >= 16, "max_length", "must be at least 16 tokens")
        need(self.eval_every >= 1, "eval_every", "must be at least 1")
        need(self.early_stopping_patience >= 0, "early_stopping_patience", "must not be negative")
        need(self.save_total_limit >= 1, "save_total_limit", "must be at least 1")
        need(0.0 < self.val_fraction < 0.5, "val_fraction", "must be in (0, 0.5)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONFIG_NAME
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, folder: str | Path) -> "TrainConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise ConfigError(f"{path}: not found (was this folder written by kbqa finetune train?)")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: invalid JSON ({exc})") from exc
