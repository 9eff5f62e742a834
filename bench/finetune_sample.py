"""The sample knowledge base (data/sample): make-data -> train -> base vs adapter, same RAG path.

prep  (here)  from `kbqa finetune make-data` output, write the train/validation data and the test
              prompts: the make-data test split (chunks never trained on) and data/sample_qa.jsonl's
              40 questions, each retrieved and assembled as `kbqa ask` does
gpu           bench/finetune_squad.py gpu --data <out> ... (the same trainer and generator)
score         bench/finetune_report.py

  kbqa finetune make-data --kb KB --out /tmp/ft-sample/data.jsonl
  python bench/finetune_sample.py prep --kb KB --data /tmp/ft-sample/data.jsonl --out .gpu/ft-sample
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.finetune_squad import _write_jsonl_gz  # noqa: E402


def prep(args) -> None:
    from kbqa.app.env import offline

    offline()
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.finetune.formats import load_examples
    from kbqa.retrieval.prompts import build_messages

    examples = load_examples(args.data)
    train_rows = [{"messages": e.messages, "split": e.split, "meta": e.meta} for e in examples if e.split in ("train", "validation")]
    tests = []
    for n, e in enumerate(ex for ex in examples if ex.split == "test"):
        key = e.meta.get("key", "")
        nf = e.meta.get("kind") == "not_found"
        tests.append(
            {
                "id": f"split-{n}" + ("-nf" if nf else ""),
                "set": "make_data_test",
                "question": e.messages[1]["content"].rsplit("\n", 2)[-2],
                "answers": [] if nf else [key],
                "key": key,
                "found": True,
                "messages": e.messages[:-1],
                "target": e.messages[-1]["content"],
                "kind": e.meta.get("kind", "answer"),
            }
        )
    kb = KnowledgeBase(args.kb, Settings.load())
    qa = [json.loads(line) for line in (ROOT / "data" / "sample_qa.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    for n, row in enumerate(qa):
        result = kb.search(row["query"])
        hits = kb.assemble(result.hits) if result.found else []
        tests.append(
            {
                "id": f"qa-{n}",
                "set": "sample_qa",
                "question": row["query"],
                "answers": [row["key"]],
                "key": row["key"],
                "response": row["response"],
                "found": result.found,
                "messages": build_messages(row["query"], hits),
                "target": None,
                "kind": "answer",
            }
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl_gz(out / "data.jsonl.gz", train_rows)
    _write_jsonl_gz(out / "test.jsonl.gz", tests)
    print(json.dumps({"train+validation": len(train_rows), "tests": len(tests), "sample_qa_found": sum(t["found"] for t in tests if t["set"] == "sample_qa")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["prep"])
    p.add_argument("--kb", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=".gpu/ft-sample")
    args = p.parse_args()
    prep(args)


if __name__ == "__main__":
    main()
