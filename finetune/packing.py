"""Shared-prefix packing: RAG examples that share their prompt's opening train as one sequence.

Several questions asked over the same retrieved blocks have prompts that agree token for token
up to the question (system prompt plus context, most of a RAG prompt). A pack holds that shared
prefix once, followed by each example's own remainder (question and answer). Each remainder sees
the prefix and itself, never another remainder, and its positions continue from the prefix's
end, so every example is computed exactly as if it stood alone (the same loss), while the
prefix is computed once instead of once per question.

    packs = pack_shared_prefix(encoded, max_length=2048)
    mask = pack_attention_mask(segments)      # (batch, 1, L, L), True = may attend

An encoded example is ``{"input_ids": [...], "labels": [...]}`` (finetune.formats.encode).
A pack adds ``position_ids`` and ``segments`` (0 = the shared prefix, n = the n-th member).
"""

from __future__ import annotations

from kbqa.finetune.formats import IGNORE


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _first_label(labels: list[int]) -> int:
    return next(i for i, lab in enumerate(labels) if lab != IGNORE)


def _build(members: list[dict], shared: int) -> dict:
    if len(members) == 1:
        only = members[0]
        n = len(only["input_ids"])
        return {"input_ids": list(only["input_ids"]), "labels": list(only["labels"]), "position_ids": list(range(n)), "segments": [1] * n, "examples": 1}
    ids, labels = list(members[0]["input_ids"][:shared]), [IGNORE] * shared
    positions, segments = list(range(shared)), [0] * shared
    for n, m in enumerate(members, start=1):
        rest = len(m["input_ids"]) - shared
        ids += m["input_ids"][shared:]
        labels += m["labels"][shared:]
        positions += range(shared, shared + rest)
        segments += [n] * rest
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "segments": segments, "examples": len(members)}


def pack_shared_prefix(data: list[dict], max_length: int, min_shared: int = 32) -> list[dict]:
    """Group examples whose prompts share at least `min_shared` leading tokens, up to `max_length` per pack.

    The shared prefix stops before every member's first labelled token and before the token that
    precedes it, so no loss term ever depends on another member. Examples that share nothing
    long enough become packs of one (plain sequences)."""
    order = sorted(range(len(data)), key=lambda i: data[i]["input_ids"])
    packs: list[dict] = []
    group: list[dict] = []
    shared = 0

    def close() -> None:
        if group:
            packs.append(_build(group, shared if len(group) > 1 else 0))

    for i in order:
        ex = data[i]
        if group:
            # sorted order: the group's common prefix is the one of its first and newest member
            cand = min(
                shared if len(group) > 1 else len(group[0]["input_ids"]),
                _common_prefix(group[0]["input_ids"], ex["input_ids"]),
                _first_label(ex["labels"]) - 1,
                _first_label(group[0]["labels"]) - 1,
            )
            length = cand + sum(len(m["input_ids"]) - cand for m in group) + len(ex["input_ids"]) - cand
            if cand >= min_shared and length <= max_length:
                group.append(ex)
                shared = cand
                continue
            close()
        group, shared = [ex], 0
    close()
    return packs


def pack_attention_mask(segments):
    """(batch, 1, L, L) boolean mask for right-padded packs: causal, and a member sees only the
    prefix (segment 0) and itself. Padding attends to itself only, so no row is empty."""
    import torch

    seg = segments  # (batch, L), -1 on padding
    width = seg.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool, device=seg.device).tril()
    same = (seg[:, :, None] == seg[:, None, :]) | (seg[:, None, :] == 0)
    valid = (seg[:, None, :] >= 0) & (seg[:, :, None] >= 0)
    eye = torch.eye(width, dtype=torch.bool, device=seg.device)
    return ((causal & same & valid) | eye)[:, None, :, :]
