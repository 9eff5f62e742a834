"""Resumable checkpoints of a training run: ``checkpoint-<step>/`` folders in the output
folder with the trainable weights, the optimizer, schedule and RNG state, and `State`
(step, best validation loss, history); at most ``save_total_limit`` of them are kept."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from kbqa.finetune.config import ConfigError, TrainConfig
from kbqa.finetune.model_load import trainable_state


@dataclass
class State:
    step: int = 0
    best_val: float = math.inf
    best_step: int = 0
    bad_evals: int = 0
    history: list | None = None

    def __post_init__(self) -> None:
        self.history = self.history or []


def save_checkpoint(out: Path, model, optimizer, scheduler, state: State, limit: int) -> Path:
    import torch

    folder = out / f"checkpoint-{state.step}"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(trainable_state(model), folder / "trainable.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()}, folder / "optim.pt")
    (folder / "state.json").write_text(json.dumps(state.__dict__), encoding="utf-8")
    for old in sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-limit]:
        shutil.rmtree(old)
    return folder


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted(out.glob("checkpoint-*/state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    return found[-1].parent if found else None


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> State:
    import torch

    params = torch.load(folder / "trainable.pt", map_location="cpu")
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in params.items():
            if name not in named:
                raise ConfigError(f"{folder}: parameter {name} does not match this model/configuration")
            named[name].copy_(value)
    extra = torch.load(folder / "optim.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    return State(**json.loads((folder / "state.json").read_text(encoding="utf-8")))


def check_resumable(out: Path, cfg: TrainConfig) -> None:
    saved = TrainConfig.load(out).to_dict()
    mine = cfg.to_dict()
    differ = [k for k in mine if k not in ("progress", "device", "cache_dir", "output_dir") and saved.get(k) != mine[k]]
    if differ:
        raise ConfigError(f"resume: {out} was trained with other settings ({', '.join(differ)})")
