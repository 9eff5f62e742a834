"""What an adapter would have answered where it said "not found" on an answerable question.

Reads a `finetune_squad.py gpu` output (generations.json), takes the answerable test prompts on
which SYSTEM replied with the NOT_FOUND sentence, and generates again with the first token of
that sentence forbidden at the first step only (greedy otherwise, as before). If most forced
answers are right, the model can read the blocks and abstains from doubt, and the lever is
abstention (its loss weight, the checkpoint choice); if they are mostly wrong, it is reading.

    python bench/finetune_abstain_probe.py --gen /tmp/ft7/run --adapter /tmp/ft7/run/adapter
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gen", required=True, help="folder with generations.json")
    p.add_argument("--adapter", required=True)
    p.add_argument("--system", default="adapter", help="the generations.json field to probe")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", dest="cache_dir", default=os.environ.get("KBQA_CACHE_DIR", "/tmp/kbqa-cache"))
    p.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=48)
    args = p.parse_args()

    from app.env import offline

    offline()
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    from eval.scoring import score_answer
    from finetune_report import abstains, clean
    from retrieval.llm.transformers import TransformersLLM

    items = json.loads((Path(args.gen) / "generations.json").read_text())["items"]
    probe = [t for t in items if t.get("answers") and t["found"] and not str(t["id"]).endswith("-nf")
             and abstains(t.get(args.system) or "")]
    llm = TransformersLLM(args.model, device=args.device, adapter=args.adapter, cache_dir=Path(args.cache_dir))
    engine = llm._loaded()
    tok = engine.tokenizer
    first = tok(probe[0][args.system], add_special_tokens=False)["input_ids"][0]  # the NOT_FOUND sentence's first token

    class NoFirst(LogitsProcessor):
        def __init__(self, start: int):
            self.start = start

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] == self.start:
                scores[:, first] = float("-inf")
            return scores

    per = []
    for t in probe:
        prompt = llm._prompt(t["messages"], args.max_new_tokens)
        with engine.using(llm.adapter_spec) as model:
            inputs = tok([prompt], return_tensors="pt", add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(**inputs, logits_processor=LogitsProcessorList([NoFirst(inputs["input_ids"].shape[1])]),
                                     **llm._gen_kwargs(args.max_new_tokens, 0.0))
        text = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        s = score_answer(clean(text), t["answers"])
        per.append({"question": t["question"], "answers": t["answers"], "forced": text, "em": s["em"], "f1": s["f1"]})
        print(f"{s['em']:.0f} {s['f1']:.2f} | {t['question'][:60]} -> {text[:60]!r} (ref {t['answers'][0]!r})", flush=True)
    n = len(per)
    summary = {"system": args.system, "abstained_answerable": n,
               "forced_em": round(sum(r["em"] for r in per) / max(1, n), 4),
               "forced_f1": round(sum(r["f1"] for r in per) / max(1, n), 4)}
    print(json.dumps(summary))
    (Path(args.gen) / "abstain_probe.json").write_text(json.dumps({"summary": summary, "items": per}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
