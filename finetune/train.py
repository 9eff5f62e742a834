"""LoRA (or last-n-layers) fine-tuning of a causal LM on chat data, in one readable loop.

    from finetune.config import TrainConfig
    from finetune.train import train
    metrics = train(TrainConfig(data="data.jsonl", output_dir="adapter"))

Writes to ``output_dir``: the best adapter (peft files; a full model folder in freeze
mode), ``kbqa_train_config.json``, ``metrics.json``, ``loss_curve.png`` and up to
``save_total_limit`` resumable ``checkpoint-<step>/`` folders.
bf16 autocast on CUDA, fp32 on the CPU. Loss on assistant tokens only.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from finetune.config import CONFIG_NAME, ConfigError, TrainConfig
from finetune.formats import IGNORE, Example, FormatError, encode, load_examples
from finetune.packing import pack_attention_mask, pack_shared_prefix

log = logging.getLogger(__name__)
METRICS_NAME = "metrics.json"
CURVE_NAME = "loss_curve.png"


# ---- model ---------------------------------------------------------------------------------

def resolve_model(model: str, cache_dir: str | None = None) -> str:
    """'smollm2' -> the packaged model's cached folder; otherwise a local folder."""
    from retrieval.packaged import PACKAGED_LLM

    if model == PACKAGED_LLM:
        from retrieval.llm.model_cache import packaged_model_dir

        return str(packaged_model_dir(Path(cache_dir) if cache_dir else Path.home() / ".cache" / "kbqa"))
    if not Path(model).is_dir():
        raise ConfigError(f"model: {model!r} is neither the packaged 'smollm2' nor a local model folder")
    return model


def load_base(path: str, device: str):
    """The base model in fp32 (bf16 comes from autocast on CUDA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).to(device)
    return model, tokenizer


def _decoder_layers(model):
    for attr in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ConfigError("mode: freeze and lora_last_layers need a model whose decoder layers are found (model.layers, transformer.h, ...)")


def make_trainable(model, cfg: TrainConfig):
    """LoRA adapters on the chosen linear layers, or only the last n decoder layers unfrozen."""
    if cfg.mode == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise ImportError("LoRA training needs peft: pip install 'kbqa[finetune]'") from exc
        targets = cfg.target_modules if cfg.target_modules == "all-linear" else [t.strip() for t in cfg.target_modules.split(",")]
        layers = None
        if cfg.lora_last_layers:
            decoder = _decoder_layers(model)
            n = len(decoder)
            if cfg.lora_last_layers > n:
                raise ConfigError(f"lora_last_layers: the model has only {n} layers (got {cfg.lora_last_layers})")
            layers = list(range(n - cfg.lora_last_layers, n))
            if targets == "all-linear":  # peft takes layers_to_transform only with named modules
                import torch

                targets = sorted({name.rsplit(".", 1)[-1] for name, mod in decoder.named_modules()
                                  if isinstance(mod, torch.nn.Linear)})
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM")
        return get_peft_model(model, lora)
    layers = _decoder_layers(model)
    if cfg.freeze_last_layers > len(layers):
        raise ConfigError(f"freeze_last_layers: the model has only {len(layers)} layers (got {cfg.freeze_last_layers})")
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers[-cfg.freeze_last_layers:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return model


def trainable_state(model) -> dict:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def _plain(model):
    """Forget a GGUF origin: the packaged model's cached folder holds plain weights, but its config
    still names the GGUF quantization, and transformers refuses to save such a model."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def save_model(model, tokenizer, folder: Path, cfg: TrainConfig) -> None:
    """The adapter (LoRA) or the whole model (freeze), loadable by --adapter / --llm-model."""
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.mode == "freeze":
        _plain(model)
    model.save_pretrained(folder)
    if cfg.mode == "freeze":
        tokenizer.save_pretrained(folder)


# ---- data ----------------------------------------------------------------------------------

def split_examples(cfg: TrainConfig) -> tuple[list[Example], list[Example]]:
    """Train and validation examples: an explicit file, else the 'split' field, else a seeded fraction."""
    examples = load_examples(cfg.data)
    if cfg.val_data:
        return [e for e in examples if e.split in (None, "train")], load_examples(cfg.val_data)
    if any(e.split for e in examples):
        train_ex = [e for e in examples if e.split == "train"]
        val_ex = [e for e in examples if e.split == "validation"]
        if not train_ex or not val_ex:
            raise FormatError(f"{cfg.data}: records carry 'split' but lack a 'train' or 'validation' split")
        return train_ex, val_ex
    if len(examples) < 2:
        raise FormatError(f"{cfg.data}: at least 2 examples are needed (one to train, one to validate)")
    order = list(range(len(examples)))
    random.Random(cfg.seed).shuffle(order)
    n_val = max(1, round(len(examples) * cfg.val_fraction))
    val_idx = set(order[:n_val])
    return [e for i, e in enumerate(examples) if i not in val_idx], [examples[i] for i in sorted(val_idx)]


def encode_all(tokenizer, examples: list[Example], max_length: int) -> tuple[list[dict], int]:
    out, skipped = [], 0
    for ex in examples:
        enc = encode(tokenizer, ex.messages, max_length)
        if enc is None:
            skipped += 1
        else:
            out.append(enc)
    return out, skipped


def collate(items: list[dict], pad_id: int, device: str) -> dict:
    """Right-padded tensors; packs (finetune.packing) also get their position ids and 4-D mask."""
    import torch

    width = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        ids[row, :n] = torch.tensor(it["input_ids"])
        labels[row, :n] = torch.tensor(it["labels"])
        mask[row, :n] = 1
    batch = {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
    if "segments" in items[0]:  # packs: their own positions, and who may see whom
        positions = torch.zeros((len(items), width), dtype=torch.long)
        segments = torch.full((len(items), width), -1, dtype=torch.long)
        for row, it in enumerate(items):
            positions[row, : len(it["input_ids"])] = torch.tensor(it["position_ids"])
            segments[row, : len(it["input_ids"])] = torch.tensor(it["segments"])
        batch["attention_mask"] = pack_attention_mask(segments).to(device)
        batch["position_ids"] = positions.to(device)
    return batch


def micro_batch(data: list[dict], index: int, batch_size: int, seed: int) -> list[dict]:
    """The index-th micro-batch of an endless, per-epoch reshuffled stream (so resume needs only the step)."""
    per_epoch = math.ceil(len(data) / batch_size)
    epoch, pos = divmod(index, per_epoch)
    order = list(range(len(data)))
    random.Random(seed + epoch).shuffle(order)
    return [data[i] for i in order[pos * batch_size : (pos + 1) * batch_size]]


# ---- losses --------------------------------------------------------------------------------

def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_loss(model, batch: dict, device: str):
    """Mean cross-entropy over the assistant tokens (the labels that are not IGNORE).

    The vocabulary projection runs only where a label follows (``logits_to_keep`` as a
    boolean mask): the same loss as ``model(**batch).loss``, without the logits of every
    prompt token (49k x prompt length per example), which cost a fifth of the compute and
    most of the memory on long RAG prompts."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    targets = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets != IGNORE
    with _autocast(device):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch.get("position_ids"), logits_to_keep=keep).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets[targets != IGNORE])


def evaluate(model, data: list[dict], batch_size: int, pad_id: int, device: str) -> float:
    """Mean loss per assistant token over `data`."""
    import torch

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(data), batch_size):
            batch = collate(data[i : i + batch_size], pad_id, device)
            n = int((batch["labels"][:, 1:] != IGNORE).sum())
            total += float(batch_loss(model, batch, device)) * n
            tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


# ---- checkpoints ---------------------------------------------------------------------------

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
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state()}, folder / "optim.pt")
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


def _check_resumable(out: Path, cfg: TrainConfig) -> None:
    saved = TrainConfig.load(out).to_dict()
    mine = cfg.to_dict()
    differ = [k for k in mine if k not in ("progress", "device", "cache_dir", "output_dir") and saved.get(k) != mine[k]]
    if differ:
        raise ConfigError(f"resume: {out} was trained with other settings ({', '.join(differ)})")


# ---- the loop ------------------------------------------------------------------------------

def train(cfg: TrainConfig, resume: str | bool | None = None) -> dict:
    """Train; return the metrics (also written to output_dir/metrics.json).

    `resume`: True for the latest checkpoint in output_dir, or a checkpoint folder.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

    from retrieval.device import resolve_device

    out = Path(cfg.output_dir)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)

    # 1. model, tokenizer, data
    model_path = resolve_model(cfg.model, cfg.cache_dir)
    model, tokenizer = load_base(model_path, device)
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

    # 2. what trains, the optimizer and the schedule
    model = make_trainable(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / (cfg.batch_size * cfg.grad_accum))
    total_steps = cfg.max_steps or max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * total_steps), total_steps)
    pad_id = tokenizer.pad_token_id

    # 3. fresh start or resume
    state = State()
    if resume:
        folder = latest_checkpoint(out) if resume is True else Path(resume)
        if folder is None or not (folder / "state.json").is_file():
            raise ConfigError(f"resume: no checkpoint found in {out if resume is True else resume}")
        _check_resumable(out, cfg)
        state = load_checkpoint(folder, model, optimizer, scheduler)
        log.info("resuming from %s (step %d)", folder, state.step)
    else:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out)
        initial = evaluate(model, val_data, cfg.batch_size, pad_id, device)
        state.history.append({"step": 0, "val_loss": initial})

    # 4. the loop: accumulate, clip, step; validate every eval_every steps
    started = time.perf_counter()
    stopped_early = out_of_time = False
    bar = tqdm(total=total_steps, initial=state.step, desc="train", unit="step", disable=None if cfg.progress else True)
    while state.step < total_steps:
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(cfg.grad_accum):
            batch = collate(micro_batch(train_data, state.step * cfg.grad_accum + micro, cfg.batch_size, cfg.seed), pad_id, device)
            loss = batch_loss(model, batch, device) / cfg.grad_accum
            loss.backward()
            step_loss += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        state.step += 1
        state.history.append({"step": state.step, "train_loss": step_loss, "lr": scheduler.get_last_lr()[0]})
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", best_val=f"{state.best_val:.3f}")

        out_of_time = cfg.max_minutes is not None and time.perf_counter() - started > cfg.max_minutes * 60
        if state.step % cfg.eval_every == 0 or state.step == total_steps or out_of_time:
            val = evaluate(model, val_data, cfg.batch_size, pad_id, device)
            state.history.append({"step": state.step, "val_loss": val})
            if val < state.best_val:
                state.best_val, state.best_step, state.bad_evals = val, state.step, 0
                save_model(model, tokenizer, out, cfg)
            else:
                state.bad_evals += 1
            save_checkpoint(out, model, optimizer, scheduler, state, cfg.save_total_limit)
            if cfg.early_stopping_patience and state.bad_evals >= cfg.early_stopping_patience:
                stopped_early = True
            if stopped_early or out_of_time:
                break
    bar.close()

    # 5. metrics and the loss curve beside the adapter
    train_losses = [h["train_loss"] for h in state.history if "train_loss" in h]
    val_losses = [h for h in state.history if "val_loss" in h]
    metrics = {
        "model": cfg.model,
        "mode": cfg.mode,
        "device": device,
        "dtype": "bf16-autocast" if device.startswith("cuda") else "fp32",
        "train_examples": n_train,
        "train_sequences": len(train_data),
        "val_examples": len(val_data),
        "skipped_too_long": skipped_train + skipped_val,
        "steps": state.step,
        "total_steps": total_steps,
        "stopped_early": stopped_early,
        "out_of_time": out_of_time,
        "initial_val_loss": val_losses[0]["val_loss"] if val_losses else None,
        "best_val_loss": state.best_val,
        "best_val_perplexity": math.exp(state.best_val) if state.best_val < 50 else None,
        "best_step": state.best_step,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "train_seconds": round(time.perf_counter() - started, 1),
        "trainable_params": sum(p.numel() for p in params),
        "total_params": sum(p.numel() for p in model.parameters()),
        "history": state.history,
    }
    (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_loss_curve(state.history, out / CURVE_NAME)
    return metrics


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


# ---- merge ---------------------------------------------------------------------------------

def merge(adapter: str | Path, out: str | Path, base: str | None = None, cache_dir: str | None = None) -> Path:
    """Fold a LoRA adapter into its base model and write a plain transformers model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter {adapter}: no adapter_config.json (not a LoRA adapter folder)")
    if base is None:
        base = TrainConfig.load(adapter).model if (adapter / CONFIG_NAME).is_file() else None
    if base is None:
        raise ConfigError(f"{adapter}: the base model is unknown; pass it (--base)")
    path = resolve_model(base, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    merged = _plain(PeftModel.from_pretrained(model, str(adapter)).merge_and_unload())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(path, local_files_only=True).save_pretrained(out)
    return out
