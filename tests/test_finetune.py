"""Fine-tuning: data formats and their errors, make-data logic, config validation, and a tiny real
training run on the packaged SmolLM2 (CPU): loss falls, the adapter saves, reloads, changes the
output, resumes, and merges to the same logits."""

from __future__ import annotations

import json

import pytest

from kbqa.finetune.config import ConfigError, TrainConfig
from kbqa.finetune.formats import IGNORE, FormatError, encode, load_examples, parse_record
from kbqa.finetune.make_data import QAPair, build_examples, not_found_example, rag_example, split_groups, template_pairs
from kbqa.retrieval.prompts import NOT_FOUND
from kbqa.retrieval.types import Chunk, Hit


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- formats ---------------------------------------------------------------------------------


def test_all_formats_load_to_the_same_messages(tmp_path):
    want = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q0"},
        {"role": "assistant", "content": "A0"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]
    rows = [
        {"messages": want},
        {"system": "S", "history": [["Q0", "A0"]], "query": "Q", "response": "A"},
        {"system": "S", "conversation": [{"human": "Q0", "assistant": "A0"}, {"human": "Q", "assistant": "A"}]},
        {
            "conversations": [
                {"from": "system", "value": "S"},
                {"from": "human", "value": "Q0"},
                {"from": "gpt", "value": "A0"},
                {"from": "human", "value": "Q"},
                {"from": "gpt", "value": "A"},
            ]
        },
        {"system": "S", "history": [["Q0", "A0"]], "instruction": "Q", "input": "", "output": "A"},
    ]
    examples = load_examples(_write(tmp_path / "d.jsonl", rows))
    assert [e.messages for e in examples] == [want] * 5


def test_alpaca_input_is_appended_to_the_instruction():
    ex = parse_record({"instruction": "Translate", "input": "hello", "output": "你好"}, "x:1")
    assert ex.messages == [{"role": "user", "content": "Translate\n\nhello"}, {"role": "assistant", "content": "你好"}]


@pytest.mark.parametrize(
    "row, needle",
    [
        ('{"messages": [{"role": "user", "content": "q"}', "not valid JSON"),
        ({"messages": [{"role": "bot", "content": "q"}]}, "messages[0]'.role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0]'.content"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no assistant turn"),
        ({"query": "q"}, "field 'response' is missing"),
        ({"query": "q", "response": "a", "history": [["only one"]]}, "field 'history'[0]"),
        ({"conversation": [{"human": "q"}]}, "conversation[0]'"),
        ({"instruction": "q"}, "field 'output' is missing"),
        ({"text": "plain"}, "unknown format"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]}, "must alternate"),
    ],
)
def test_malformed_lines_name_the_line_and_field(tmp_path, row, needle):
    path = _write(tmp_path / "bad.jsonl", [{"query": "fine", "response": "ok"}, row])
    with pytest.raises(FormatError) as err:
        load_examples(path)
    assert f"{path}:2" in str(err.value) and needle in str(err.value)


def test_labels_cover_only_the_assistant_replies(tokenizer):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris [1]."},
        {"role": "user", "content": "And Italy?"},
        {"role": "assistant", "content": "Rome."},
    ]
    enc = encode(tokenizer, msgs, 512)
    learned = tokenizer.decode([i for i, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE])
    assert learned == "Paris [1].<|im_end|>Rome.<|im_end|>"
    # truncation that cuts every reply away leaves nothing to learn from
    assert encode(tokenizer, msgs, 8) is None


# ---- make-data -------------------------------------------------------------------------------


def _hit(id_, text, score=1.0):
    return Hit(Chunk(id=id_, text=text, source=f"{id_}.md"), score)


def test_template_pairs_are_grounded_in_their_chunk():
    chunks = [
        Chunk("c1", "Ground was broken on 3 March 1908 by the company. The route was surveyed by the engineer Hollis Wrenfield.", "h.md"),
        Chunk("c2", "全线最长隧道内每隔150米设有一处应急照明灯。本须知自2024年4月1日起施行。", "s.txt"),
    ]
    pairs = template_pairs(chunks)
    assert {p.key for p in pairs} == {"3 March 1908", "Hollis Wrenfield", "150", "2024年4月1日"}
    for p in pairs:
        chunk = next(c for c in chunks if c.id == p.chunk_id)
        assert p.key in chunk.text and p.answer in chunk.text and p.key not in p.question


def test_rag_example_cites_the_block_that_holds_the_answer_else_not_found():
    pair = QAPair("When was ground broken?", "Ground was broken on 3 March 1908.", "3 March 1908", "c2", "c2")
    hits = [_hit("c1", "Fares and times."), _hit("c2", "Ground was broken on 3 March 1908.")]
    ex = rag_example(pair, hits)
    assert ex.messages[-1] == {"role": "assistant", "content": "Ground was broken on 3 March 1908 [2]."}
    assert ex.messages[1]["content"].startswith("Context:\n[1] (c1.md)")
    missing = rag_example(pair, hits[:1])
    assert missing.messages[-1]["content"] == NOT_FOUND["en"]
    nf = not_found_example(pair, hits)
    assert "3 March 1908" not in nf.messages[1]["content"] and nf.messages[-1]["content"] == NOT_FOUND["en"]
    # as many blocks as the answerable prompt: the answer's block is replaced by a spare one
    spare = [_hit("c2", "Ground was broken on 3 March 1908."), _hit("c3", "Work began on 3 March 1908."), _hit("c4", "The depot.")]
    nf = not_found_example(pair, hits, spare=spare)
    user = nf.messages[1]["content"]
    assert "[2] (c4.md)" in user and "[3]" not in user and "1908" not in user


def test_splits_are_seeded_whole_groups_and_deduplicated():
    groups = [f"g{i}" for i in range(20)]
    a, b = split_groups(groups, seed=1), split_groups(groups, seed=1)
    assert a == b and split_groups(groups, seed=2) != a
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "validation", "test")}
    assert counts == {"train": 14, "validation": 3, "test": 3}
    pairs = [QAPair(f"Question {i % 30}?", f"A{i}", f"A{i}", f"g{i % 20}", f"g{i % 20}") for i in range(60)]
    examples = build_examples(pairs, lambda q: [_hit("x", "nothing")], seed=3, not_found_ratio=0.0)
    assert len(examples) == 30  # duplicates of a question kept once
    split_of = {}
    for ex in examples:
        assert split_of.setdefault(ex.meta["chunk_id"], ex.split) == ex.split  # no chunk in two splits


def test_share_context_asks_a_chunks_questions_over_the_same_blocks():
    chunk = "The line opened on 3 March 1908 and was 42 km long. Its engineer was Hollis Wrenfield."
    pairs = [
        QAPair("When did it open?", "3 March 1908", "3 March 1908", "c1", "c1"),
        QAPair("How long was it?", "42 km", "42 km", "c1", "c1"),
        QAPair("Who built the depot?", "Ada Coyle", "Ada Coyle", "c1", "c1"),
    ]  # not in the blocks
    calls = []

    def search(question):
        calls.append(question)
        return [_hit(f"x{len(calls)}", f"Filler {question}"), _hit("c1", chunk)]

    plain = build_examples(pairs, search, seed=3, not_found_ratio=0.0, ratios=(1.0, 0.0, 0.0))
    assert len(calls) == 3 and len({ex.messages[1]["content"].split("Question")[0] for ex in plain}) == 3
    calls.clear()
    shared = build_examples(pairs, search, seed=3, not_found_ratio=0.0, ratios=(1.0, 0.0, 0.0), share_context=True)
    assert len(calls) == 2  # the third question's answer is not in the shared blocks: it retrieves its own
    by_q = {ex.messages[1]["content"].split("Question: ")[1]: ex for ex in shared}
    contexts = [ex.messages[1]["content"].split("Question")[0] for ex in shared]
    answered = [ex for ex in shared if ex.meta["kind"] == "answer"]
    assert len(answered) == 2 and contexts.count(contexts[0]) == 2
    assert [ex.messages[-1]["content"] for ex in answered] == ["3 March 1908 [2]", "42 km [2]"]
    assert len(by_q) == 3


def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(ConfigError, match="lora_rank"):
        TrainConfig(data="d", output_dir="o", lora_rank=0)
    with pytest.raises(ConfigError, match="mode"):
        TrainConfig(data="d", output_dir="o", mode="full")
    cfg = TrainConfig(data="d", output_dir=str(tmp_path), max_steps=3)
    cfg.save(tmp_path)
    assert TrainConfig.load(tmp_path) == cfg


# ---- real training on the packaged model (CPU) ------------------------------------------------

FACTS = [("Lanshan Railway opened", "14 June 1911"), ("track gauge", "800 mm"), ("tunnel count", "17 tunnels"), ("Cloudgate Tunnel length", "1,146 m")]


@pytest.fixture(scope="module")
def tokenizer(settings):
    from transformers import AutoTokenizer

    from kbqa.finetune.train import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("smollm2", str(settings.cache_dir)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, settings):
    import torch

    from kbqa.finetune.train import train

    torch.set_num_threads(1)  # on a busy shared CPU, more threads spin and stall
    root = tmp_path_factory.mktemp("ft")
    rows = [{"query": f"What is the {k}?", "response": f"The {k} is {v}."} for k, v in FACTS] * 3
    data = _write(root / "data.jsonl", rows)
    cfg = TrainConfig(
        data=str(data),
        output_dir=str(root / "adapter"),
        max_length=48,
        batch_size=4,
        grad_accum=1,
        max_steps=4,
        eval_every=1,
        learning_rate=2e-3,
        val_fraction=0.2,
        save_total_limit=2,
        early_stopping_patience=0,
        cache_dir=str(settings.cache_dir),
        progress=False,
        device="cpu",
    )
    return cfg, train(cfg)


@pytest.mark.slow  # a few real training steps on the CPU: minutes on a busy 2-core machine
def test_training_lowers_loss_and_writes_the_adapter_files(trained):
    cfg, metrics = trained
    from pathlib import Path

    out = Path(cfg.output_dir)
    assert metrics["best_val_loss"] < metrics["initial_val_loss"]
    assert metrics["last_train_loss"] < metrics["first_train_loss"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "kbqa_train_config.json", "metrics.json", "loss_curve.png"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]  # save_total_limit=2
    assert metrics["trainable_params"] < metrics["total_params"] / 20


@pytest.mark.slow  # a few real training steps on the CPU: minutes on a busy 2-core machine
def test_adapter_reloads_and_changes_the_answer(trained, settings):
    from kbqa.retrieval.llm.transformers import TransformersLLM

    cfg, _ = trained
    question = [{"role": "user", "content": "What is the track gauge?"}]
    base = TransformersLLM("smollm2", device="cpu", cache_dir=settings.cache_dir)
    tuned = TransformersLLM("smollm2", device="cpu", adapter=cfg.output_dir, cache_dir=settings.cache_dir)
    a, b = base.generate(question, max_tokens=12), tuned.generate(question, max_tokens=12)
    assert a != b


@pytest.mark.slow  # a few real training steps on the CPU: minutes on a busy 2-core machine
def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    import shutil
    from dataclasses import replace
    from pathlib import Path

    from kbqa.finetune.train import train

    cfg, first = trained
    copy = tmp_path / "adapter"
    shutil.copytree(cfg.output_dir, copy)
    longer = replace(cfg, output_dir=str(copy), max_steps=6)
    with pytest.raises(ConfigError, match="max_steps"):
        train(longer, resume=True)  # other settings than the checkpoint's run
    resumed = train(replace(cfg, output_dir=str(copy)), resume=str(Path(copy) / "checkpoint-3"))
    assert resumed["steps"] == 4

    def losses(m):
        return [(h["step"], round(h.get("train_loss", h.get("val_loss")), 4)) for h in m["history"]]

    assert losses(resumed) == losses(first)  # step 4 redone from step 3's state gives the same losses


@pytest.mark.slow  # a few real training steps on the CPU: minutes on a busy 2-core machine
def test_merge_reproduces_the_adapter_logits(trained, tmp_path, settings):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kbqa.finetune.train import merge, resolve_model

    cfg, _ = trained
    merged_dir = merge(cfg.output_dir, tmp_path / "merged", cache_dir=str(settings.cache_dir))
    base_path = resolve_model("smollm2", str(settings.cache_dir))
    tok = AutoTokenizer.from_pretrained(merged_dir)
    ids = tok("The track gauge is", return_tensors="pt")
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), cfg.output_dir).eval()
        merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
        a, b = peft_model(**ids).logits, merged(**ids).logits
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-3)


@pytest.mark.slow
def test_freeze_mode_trains_only_the_last_layers(tmp_path, settings):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from kbqa.finetune.train import resolve_model, train

    torch.set_num_threads(1)
    rows = [{"query": f"What is the {k}?", "response": f"The {k} is {v}."} for k, v in FACTS] * 2
    cfg = TrainConfig(
        data=str(_write(tmp_path / "d.jsonl", rows)),
        output_dir=str(tmp_path / "model"),
        mode="freeze",
        freeze_last_layers=1,
        max_length=48,
        batch_size=4,
        grad_accum=1,
        max_steps=1,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        cache_dir=str(settings.cache_dir),
        progress=False,
        device="cpu",
    )
    metrics = train(cfg)
    base = load_file(str(__import__("pathlib").Path(resolve_model("smollm2", str(settings.cache_dir))) / "model.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(cfg.output_dir)  # a plain model folder, usable with --llm-model
    state = model.state_dict()
    last = len(model.model.layers) - 1
    changed = {k for k in base if not torch.equal(base[k], state[k])}
    assert changed and all(k.startswith(f"model.layers.{last}.") for k in changed)
    assert metrics["trainable_params"] < metrics["total_params"] / 10


# ---- the CLI -----------------------------------------------------------------------------------


def test_cli_train_reports_the_bad_line(tmp_path, capsys):
    from kbqa.app.cli.kbqa_main import main

    data = _write(tmp_path / "bad.jsonl", [{"query": "q", "response": "a"}, {"instruction": "only"}])
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "train", str(data), "--out", str(tmp_path / "out"), "--max-steps", "1"])
    assert exc.value.code == 2
    assert f"{data}:2: field 'output' is missing" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_make_data_on_the_sample_kb(sample_kb_dir, tmp_path, capsys):
    from kbqa.app.cli.kbqa_main import main

    out = tmp_path / "data.jsonl"
    assert main(["finetune", "make-data", "--kb", str(sample_kb_dir), "--out", str(out)]) == 0
    examples = load_examples(out)
    assert {e.split for e in examples} == {"train", "validation", "test"}
    chunk_split = {}
    for e in examples:
        assert chunk_split.setdefault(e.meta["chunk_id"], e.split) == e.split
        reply = e.messages[-1]["content"]
        assert reply in NOT_FOUND.values() or "[" in reply
    assert any(e.messages[-1]["content"] in NOT_FOUND.values() for e in examples)


def test_batch_loss_projects_only_labelled_positions_and_matches_the_full_loss(settings, tokenizer):
    import torch

    from kbqa.finetune.formats import encode
    from kbqa.finetune.train import batch_loss, collate, load_base, resolve_model

    model, _ = load_base(resolve_model("smollm2", str(settings.cache_dir)), "cpu")
    items = [
        encode(tokenizer, [{"role": "user", "content": f"What is the {k}?"}, {"role": "assistant", "content": f"The {k} is {v}."}], 64) for k, v in FACTS[:3]
    ]
    batch = collate(items, tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        full = model(**batch).loss
        ours = batch_loss(model, batch, "cpu")
    assert abs(float(full) - float(ours)) < 1e-4


def test_cli_train_packs_shared_prompts_and_adapts_only_the_last_layers(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from kbqa.app.cli.kbqa_main import main

    torch.set_num_threads(1)
    context = "Context:\n[1] (line.md)\n<<<\n" + " ".join(f"The {k} is {v}." for k, v in FACTS) + "\n>>>\n\n"
    rows = [
        {"messages": [{"role": "user", "content": context + f"Question: What is the {k}?"}, {"role": "assistant", "content": f"{v} [1]"}]} for k, v in FACTS
    ] * 2
    data = _write(tmp_path / "rag.jsonl", rows)
    out = tmp_path / "adapter"
    assert (
        main(
            [
                "finetune",
                "train",
                str(data),
                "--out",
                str(out),
                "--pack",
                "--lora-last-layers",
                "2",
                "--max-steps",
                "2",
                "--batch-size",
                "1",
                "--grad-accum",
                "1",
                "--max-length",
                "512",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_sequences"] < metrics["train_examples"]  # questions over one context share it
    saved = json.loads((out / "kbqa_train_config.json").read_text())
    assert saved["pack_shared_prefix"] is True and saved["lora_last_layers"] == 2
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in load_file(str(out / "adapter_model.safetensors"))}
    assert layers == {28, 29}  # SmolLM2-135M has 30 decoder layers
