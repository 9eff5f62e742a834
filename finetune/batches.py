"""Fine-tuning's data side: train and validation examples, their token ids, the micro-batches
of the endless shuffled stream, the padded tensors, and the loss over assistant tokens."""

from __future__ import annotations

import math
import random

from kbqa.finetune.config import TrainConfig
from kbqa.finetune.formats import IGNORE, Example, FormatError, encode, load_examples
from kbqa.finetune.packing import pack_attention_mask


# ---- examples and batches ------------------------------------------------------------------


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
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch.get("position_ids"), logits_to_keep=keep).logits
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
