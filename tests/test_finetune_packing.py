"""Shared-prefix packing: the grouping rules, and the same loss as unpacked on the real SmolLM2."""

from __future__ import annotations

import pytest

from kbqa.finetune.formats import IGNORE
from kbqa.finetune.packing import pack_attention_mask, pack_shared_prefix


def _ex(prompt: list[int], answer: list[int]) -> dict:
    return {"input_ids": prompt + answer, "labels": [IGNORE] * len(prompt) + answer}


def test_examples_over_the_same_prefix_share_it_once():
    context = list(range(100, 140))
    a, b = _ex(context + [1, 2], [7, 8]), _ex(context + [3], [9])
    alone = _ex(list(range(500, 540)), [5])
    packs = pack_shared_prefix([a, alone, b], max_length=256, min_shared=32)
    assert sorted(p["examples"] for p in packs) == [1, 2]
    pack = next(p for p in packs if p["examples"] == 2)
    assert pack["input_ids"] == context + [1, 2, 7, 8] + [3, 9]
    assert pack["segments"] == [0] * 40 + [1] * 4 + [2] * 2
    assert pack["position_ids"] == list(range(44)) + [40, 41]
    # every answer token keeps its label, and the first token after the prefix is never a target
    assert [t for t in pack["labels"] if t != IGNORE] == [7, 8, 9]
    assert pack["labels"][40] == IGNORE and pack["labels"][44] == IGNORE


def test_short_overlaps_and_long_packs_stay_apart():
    context = list(range(100, 120))
    short = [_ex(context + [1], [7]), _ex(context + [2], [8])]
    assert [p["examples"] for p in pack_shared_prefix(short, max_length=256, min_shared=32)] == [1, 1]
    long_ctx = list(range(100, 160))
    many = [_ex(long_ctx + [i], [i]) for i in range(5)]
    packs = pack_shared_prefix(many, max_length=66, min_shared=32)  # 60 shared + 2 per member: 3 fit
    assert sorted(p["examples"] for p in packs) == [2, 3]
    assert all(len(p["input_ids"]) <= 66 for p in packs)


def test_prefix_never_swallows_an_answer_token():
    # b's answer starts where a's prompt goes on: the shared part must stop before it
    context = list(range(100, 140))
    a, b = _ex(context + [1, 2, 3], [7]), _ex(context + [1], [2, 9])
    pack = pack_shared_prefix([a, b], max_length=256, min_shared=32)[0]
    assert pack["examples"] == 2
    assert sorted(t for t in pack["labels"] if t != IGNORE) == [2, 7, 9]


def test_mask_lets_members_see_the_prefix_and_themselves_only():
    import torch

    seg = torch.tensor([[0, 0, 1, 1, 2, -1]])
    m = pack_attention_mask(seg)[0, 0]
    assert m.shape == (6, 6)
    assert m[4, :2].all() and not m[4, 2:4].any() and m[4, 4]  # member 2 sees the prefix, not member 1
    assert m[3, 2] and not m[2, 3]  # causal inside a member
    assert m[5].tolist() == [False] * 5 + [True]  # padding sees only itself


@pytest.mark.slow  # the real model on the CPU
def test_packed_loss_equals_the_unpacked_loss(settings):
    import torch

    from kbqa.finetune.formats import encode
    from kbqa.finetune.train import batch_loss, collate, load_base, resolve_model

    torch.set_num_threads(1)
    model, tok = load_base(resolve_model("smollm2", str(settings.cache_dir)), "cpu")
    model.eval()
    context = "Context:\n[1] (rail.txt)\n<<<\nThe line opened in 1901 with a track gauge of 1,435 mm and ran 42 km.\n>>>\n\n"
    convs = [
        [{"role": "system", "content": "Answer from the blocks."}, {"role": "user", "content": context + "Question: " + q}, {"role": "assistant", "content": a}]
        for q, a in [("When did the line open?", "In 1901 [1]."), ("How long was it?", "42 km [1]."), ("What was the gauge?", "1,435 mm [1].")]
    ]
    data = [encode(tok, c, 512) for c in convs]
    packs = pack_shared_prefix(data, max_length=512, min_shared=16)
    assert [p["examples"] for p in packs] == [3]
    with torch.no_grad():
        packed = float(batch_loss(model, collate(packs, tok.pad_token_id, "cpu"), "cpu"))
        n = [sum(t != IGNORE for t in d["labels"][1:]) for d in data]
        plain = sum(float(batch_loss(model, collate([d], tok.pad_token_id, "cpu"), "cpu")) * k for d, k in zip(data, n)) / sum(n)
        # and a padded batch of a pack with a plain sequence agrees too
        mixed = collate([packs[0], pack_shared_prefix(data[:1], 512)[0]], tok.pad_token_id, "cpu")
        both = float(batch_loss(model, mixed, "cpu"))
        n_all = sum(n) + n[0]
        expect = (plain * sum(n) + float(batch_loss(model, collate([data[0]], tok.pad_token_id, "cpu"), "cpu")) * n[0]) / n_all
    assert packed == pytest.approx(plain, rel=1e-4)
    assert both == pytest.approx(expect, rel=1e-4)


@pytest.mark.slow
def test_lora_last_layers_puts_adapters_only_there(tmp_path, settings):
    from kbqa.finetune.config import TrainConfig
    from kbqa.finetune.train import load_base, make_trainable, resolve_model

    model, _ = load_base(resolve_model("smollm2", str(settings.cache_dir)), "cpu")
    cfg = TrainConfig(data="x.jsonl", output_dir=str(tmp_path), lora_last_layers=2)
    peft_model = make_trainable(model, cfg)
    n = len(model.model.layers)
    layers = {int(name.split(".layers.")[1].split(".")[0]) for name, p in peft_model.named_parameters() if p.requires_grad}
    assert layers == {n - 2, n - 1}
