"""LoRA (or last-n-layers) fine-tuning of a causal LM on chat data, in one readable loop.

    from kbqa.finetune.config import TrainConfig
    from kbqa.finetune.train import train
    metrics = train(TrainConfig(data="data.jsonl", output_dir="adapter"))

Writes to ``output_dir``: the best adapter (peft files; a full model folder in freeze
mode), ``kbqa_train_config.json``, ``metrics.json``, ``loss_curve.png`` and up to
``save_total_limit`` resumable ``checkpoint-<step>/`` folders.
bf16 autocast on CUDA, fp32 on the CPU. Loss on assistant tokens only.

The parts: the model (loading, what trains, saving, `merge`) in finetune/model_load.py;
examples, batches and the loss in finetune/batches.py; checkpoints in
finetune/checkpoints.py; the loop here. Their public names are importable from here too.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from kbqa.finetune.batches import batch_loss, collate, encode_all, evaluate, micro_batch, split_examples
from kbqa.finetune.checkpoints import State, check_resumable, latest_checkpoint, load_checkpoint, save_checkpoint
from kbqa.finetune.config import ConfigError, TrainConfig
from kbqa.finetune.formats import FormatError
from kbqa.finetune.model_load import load_base, make_trainable, merge, resolve_model, save_model, trainable_state
from kbqa.finetune.packing import pack_shared_prefix

__all__ = [
    "CURVE_NAME",
    "METRICS_NAME",
    "State",
    "batch_loss",
    "collate",
    "encode_all",
    "evaluate",
    "latest_checkpoint",
    "load_base",
    "load_checkpoint",
    "make_trainable",
    "merge",
    "micro_batch",
    "plot_loss_curve",
    "resolve_model",
    "save_checkpoint",
    "save_model",
    "split_examples",
    "train",
    "trainable_state",
]

log = logging.getLogger(__name__)
METRICS_NAME = "metrics.json"
CURVE_NAME = "loss_curve.png"


@dataclass
class _Data:
    train: list[dict]  # training sequences (packs, with cfg.pack_shared_prefix)
    val: list[dict]  # validation examples, never packed
    n_train: int  # training examples before packing
    skipped: int  # examples whose answer lies beyond max_length


@dataclass
class _Run:
    """What the steps of one training run share."""

    cfg: TrainConfig
    out: Path
    device: str
    model: object
    tokenizer: object
    pad_id: int
    data: _Data
    params: list
    optimizer: object
    scheduler: object
    total_steps: int


# ---- the loop ------------------------------------------------------------------------------


def train(cfg: TrainConfig, resume: str | bool | None = None) -> dict:
    """Train; return the metrics (also written to output_dir/metrics.json).

    `resume`: True for the latest checkpoint in output_dir, or a checkpoint folder.
    """
    import torch
    from tqdm.auto import tqdm

    from kbqa.retrieval.device import resolve_device

    out = Path(cfg.output_dir)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    # 1. model, tokenizer, data
    model, tokenizer = load_base(resolve_model(cfg.model, cfg.cache_dir), device)
    data = _prepare_data(cfg, tokenizer)

    # 2. what trains, the optimizer and the schedule
    model = make_trainable(model, cfg)
    model.train()
    params, optimizer, scheduler, total_steps = _optimizer_and_schedule(model, cfg, len(data.train))
    run = _Run(cfg, out, device, model, tokenizer, tokenizer.pad_token_id, data, params, optimizer, scheduler, total_steps)

    # 3. fresh start or resume
    state = _resume(run, resume) if resume else _fresh_start(run)

    # 4. the loop: accumulate, clip, step; validate every eval_every steps
    started = time.perf_counter()
    stopped_early = out_of_time = False
    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", disable=None if cfg.progress else True)
    while state.step < total_steps:
        step_loss = _optimizer_step(run, state)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", best_val=f"{state.best_val:.3f}")
        out_of_time = cfg.max_minutes is not None and time.perf_counter() - started > cfg.max_minutes * 60
        if state.step % cfg.eval_every == 0 or state.step == total_steps or out_of_time:
            stopped_early = _validate(run, state)
            if stopped_early or out_of_time:
                break
    bar.close()

    # 5. metrics and the loss curve beside the adapter
    metrics = _metrics(run, state, stopped_early=stopped_early, out_of_time=out_of_time, started=started)
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_loss_curve(state.history, out / CURVE_NAME)
    return metrics


def _prepare_data(cfg: TrainConfig, tokenizer) -> _Data:
    """Split, encode (examples whose answer does not fit are skipped) and pack the data."""
    train_ex, val_ex = split_examples(cfg)
    train_data, skipped_train = encode_all(tokenizer, train_ex, cfg.max_length)
    val_data, skipped_val = encode_all(tokenizer, val_ex, cfg.max_length)
    if not train_data or not val_data:
        raise FormatError(f"{cfg.data}: no example fits max_length={cfg.max_length} tokens with its answer")
    if skipped_train or skipped_val:
        log.warning("skipped %d examples whose answer lies beyond max_length=%d", skipped_train + skipped_val, cfg.max_length)
    n_train = len(train_data)
    if cfg.pack_shared_prefix:  # validation stays unpacked: the same loss, computed plainly
        train_data = pack_shared_prefix(train_data, cfg.max_length)
        log.info("packed %d training examples into %d sequences", n_train, len(train_data))
    return _Data(train_data, val_data, n_train, skipped_train + skipped_val)


def _optimizer_and_schedule(model, cfg: TrainConfig, n_sequences: int):
    """(trainable parameters, AdamW, cosine schedule with warmup, total optimizer steps)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n_sequences / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    return params, optimizer, scheduler, total_steps


def _fresh_start(run: _Run) -> State:
    """A new output folder: the config saved, the validation loss before training recorded."""
    state = State()
    run.out.mkdir(parents=True, exist_ok=True)
    run.cfg.save(run.out)
    initial = evaluate(run.model, run.data.val, run.cfg.batch_size, run.pad_id, run.device)
    state.history.append({"step": 0, "val_loss": initial})
    return state


def _resume(run: _Run, resume: str | bool) -> State:
    """The state of the latest checkpoint (`resume` True) or of the folder `resume`, loaded into the run."""
    folder = latest_checkpoint(run.out) if resume is True else Path(resume)
    if folder is None or not (folder / "state.json").is_file():
        raise ConfigError(f"resume: no checkpoint found in {run.out if resume is True else resume}")
    check_resumable(run.out, run.cfg)
    state = load_checkpoint(folder, run.model, run.optimizer, run.scheduler)
    log.info("resuming from %s (step %d)", folder, state.step)
    return state


def _optimizer_step(run: _Run, state: State) -> float:
    """One optimizer step over grad_accum micro-batches, recorded in `state`; returns its loss."""
    import torch

    cfg = run.cfg
    run.optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for micro in range(cfg.grad_accum):
        batch = collate(micro_batch(run.data.train, state.step * cfg.grad_accum + micro, cfg.batch_size, cfg.seed), run.pad_id, run.device)
        loss = batch_loss(run.model, batch, run.device) / cfg.grad_accum
        loss.backward()
        step_loss += float(loss.detach())
    torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    state.step += 1
    state.history.append({"step": state.step, "train_loss": step_loss, "lr": run.scheduler.get_last_lr()[0]})
    return step_loss


def _validate(run: _Run, state: State) -> bool:
    """Validate; save the model when it is the best so far, and a checkpoint. True: stop early."""
    cfg = run.cfg
    val = evaluate(run.model, run.data.val, cfg.batch_size, run.pad_id, run.device)
    state.history.append({"step": state.step, "val_loss": val})
    if val < state.best_val:
        state.best_val, state.best_step, state.bad_evals = val, state.step, 0
        save_model(run.model, run.tokenizer, run.out, cfg)
    else:
        state.bad_evals += 1
    save_checkpoint(run.out, run.model, run.optimizer, run.scheduler, state, cfg.save_total_limit)
    return bool(cfg.early_stopping_patience and state.bad_evals >= cfg.early_stopping_patience)


def _metrics(run: _Run, state: State, *, stopped_early: bool, out_of_time: bool, started: float) -> dict:
    cfg, device = run.cfg, run.device
    train_losses = [h["train_loss"] for h in state.history if "train_loss" in h]
    val_losses = [h for h in state.history if "val_loss" in h]
    return {
        "model": cfg.model,
        "mode": cfg.mode,
        "device": device,
        "dtype": "bf16-autocast" if device.startswith("cuda") else "fp32",
        "train_examples": run.data.n_train,
        "train_sequences": len(run.data.train),
        "val_examples": len(run.data.val),
        "skipped_too_long": run.data.skipped,
        "steps": state.step,
        "total_steps": run.total_steps,
        "stopped_early": stopped_early,
        "out_of_time": out_of_time,
        "initial_val_loss": val_losses[0]["val_loss"] if val_losses else None,
        "best_val_loss": state.best_val,
        "best_val_perplexity": math.exp(state.best_val) if state.best_val < 50 else None,
        "best_step": state.best_step,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "train_seconds": round(time.perf_counter() - started, 1),
        "trainable_params": sum(p.numel() for p in run.params),
        "total_params": sum(p.numel() for p in run.model.parameters()),
        "history": state.history,
    }


def plot_loss_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    tr = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
    va = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
    if tr:
        ax.plot(*zip(*tr), label="train", alpha=0.7)
    if va:
        ax.plot(*zip(*va), marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per assistant token")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
