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
    p.add_argument("--gen-batch", dest="gen_batch", type=int, default=4)
    args = p.parse_args()

    from kbqa.app.env import offline

    offline()
    from transformers import LogitsProcessor, LogitsProcessorList

    from kbqa.eval.scoring import score_answer
    from finetune_report import abstains, clean
    from kbqa.retrieval.llm.transformers import TransformersLLM
    from kbqa.retrieval.protocols import DEFAULT_SAMPLING
    from kbqa.retrieval.prompts import NOT_FOUND

    items = json.loads((Path(args.gen) / "generations.json").read_text())["items"]
    probe = [t for t in items if t.get("answers") and t["found"] and not str(t["id"]).endswith("-nf") and abstains(t.get(args.system) or "")]

    class ForbidFirst(LogitsProcessor):
        """Forbid one token at the first generated position (left padding: the same step for every row)."""

        def __init__(self, token: int):
            self.token, self.first = token, True

        def __call__(self, input_ids, scores):
            if self.first:
                scores[:, self.token] = float("-inf")
                self.first = False
            return scores

    class Forced(TransformersLLM):
        """The service's own batch generation (prompt fitting, stop strings, cut at stop), plus ForbidFirst."""

        forbid: int

        def generation_kwargs(self, max_tokens: int, temperature: float, sampling=DEFAULT_SAMPLING) -> dict:
            return {**super().generation_kwargs(max_tokens, temperature, sampling), "logits_processor": LogitsProcessorList([ForbidFirst(self.forbid)])}

    llm = Forced(args.model, device=args.device, adapter=args.adapter, cache_dir=Path(args.cache_dir))
    llm.forbid = llm.tokenizer(NOT_FOUND["en"], add_special_tokens=False)["input_ids"][0]  # the sentence's first token
    per = []
    for s in range(0, len(probe), args.gen_batch):  # batches as the original generations were made
        chunk = probe[s : s + args.gen_batch]
        for t, text in zip(chunk, llm.batch([t["messages"] for t in chunk], max_tokens=args.max_new_tokens)):
            sc = score_answer(clean(text), t["answers"])
            per.append({"question": t["question"], "answers": t["answers"], "forced": text, "em": sc["em"], "f1": sc["f1"]})
            print(f"{sc['em']:.0f} {sc['f1']:.2f} | {t['question'][:60]} -> {text[:60]!r} (ref {t['answers'][0]!r})", flush=True)
    n = len(per)
    summary = {
        "system": args.system,
        "abstained_answerable": n,
        "forced_em": round(sum(r["em"] for r in per) / max(1, n), 4),
        "forced_f1": round(sum(r["f1"] for r in per) / max(1, n), 4),
    }
    print(json.dumps(summary))
    (Path(args.gen) / "abstain_probe.json").write_text(json.dumps({"summary": summary, "items": per}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
