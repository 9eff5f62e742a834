"""Score base vs adapter generations (from bench/finetune_squad.py gpu) and write bench/results.

    python bench/finetune_report.py --gen GEN_DIR --name squad --command "..."

Answerable questions: EM/F1 (SQuAD rules, best over references), ROUGE-L and BLEU-4 (first
reference), key-in-answer, and how often the model wrongly says 'not found'. Prompts whose blocks
lack the answer: how often the model says the NOT_FOUND sentence. Citation markers [n] are removed
before scoring, for every system alike. Questions the retriever finds nothing for get the
NOT_FOUND sentence without the model, as `kbqa ask` does; they count in every system.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kbqa.eval.scoring import score_answer  # noqa: E402
from kbqa.retrieval.lang import detect_language  # noqa: E402
from kbqa.retrieval.prompts import NOT_FOUND  # noqa: E402

_CITE = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")


def clean(answer: str) -> str:
    return _CITE.sub("", answer).strip()


def abstains(answer: str) -> bool:
    low = answer.lower()
    return any(s.lower().rstrip(".。") in low for s in NOT_FOUND.values()) or "could not find" in low or "没有找到" in answer


def score_system(items: list[dict], name: str) -> dict:
    answerable = [t for t in items if t.get("answers") and not str(t["id"]).endswith("-nf")]
    nf = [t for t in items if str(t["id"]).endswith("-nf") or (t["kind"] == "not_found" and not t.get("answers"))]
    per = []
    for t in answerable:
        raw = t.get(name) if t["found"] else NOT_FOUND[detect_language(t["question"])]
        raw = raw or ""
        s = score_answer(clean(raw), t["answers"], [t["key"]] if t.get("key") else None)
        s["abstained"] = float(abstains(raw))
        s["cited"] = float(bool(_CITE.search(raw)))
        s["words"] = len(clean(raw).split())
        per.append(s)
    out = {"n_answerable": len(per)}
    for key in ("em", "f1", "lf-rouge-l", "lf-bleu-4", "contains", "abstained", "cited", "words"):
        if per:
            out[key] = round(sum(p[key] for p in per) / len(per), 4)
    if nf:
        said = [abstains(t.get(name) or "") if t["found"] else True for t in nf]
        out["n_not_found_prompts"] = len(nf)
        out["not_found_rate"] = round(sum(said) / len(nf), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gen", required=True, help="folder with generations.json (and adapter/metrics.json)")
    p.add_argument("--name", required=True, help="results name: bench/results/finetune_<name>.{json,md}")
    p.add_argument("--command", default="", help="the command lines that produced the generations")
    p.add_argument("--title", default="")
    args = p.parse_args()
    gen_dir = Path(args.gen)
    gen = json.loads((gen_dir / "generations.json").read_text(encoding="utf-8"))
    metrics_path = gen_dir / "adapter" / "metrics.json"
    train = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    train.pop("history", None)
    info = gen["info"]
    items = gen["items"]
    systems = [k for k in ("base", "adapter") if k in items[0]] + sorted(k for k in items[0] if k.startswith("adapter_"))
    sets = sorted({t.get("set", "test") for t in items})
    results = {}
    for s in sets:
        subset = [t for t in items if t.get("set", "test") == s]
        results[s] = {name: score_system(subset, name) for name in systems}
        for name in systems:
            loss = info.get(f"{name}_target_loss")
            if loss is not None and s != "sample_qa":
                results[s][name]["target_perplexity"] = round(math.exp(loss), 3)
    report = {
        "title": args.title,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": args.command,
        "device": info,
        "training": train,
        "results": results,
        "scoring_machine": platform.node(),
        "loadavg_here": os.getloadavg(),
        "examples": {
            s: [
                {"question": t["question"][-200:], "answers": t.get("answers"), **{n: t.get(n) for n in systems}}
                for t in [x for x in items if x.get("set", "test") == s][:5]
            ]
            for s in sets
        },
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"finetune_{args.name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"# {args.title or 'Fine-tuning: base vs adapter'}",
        "",
        f"Date: {report['date']}. Trained and generated on: {info.get('device_name')} (torch {info.get('torch')}).",
    ]
    if train:  # generation-only runs (gpu --no-train) have no training metrics
        lines.append(
            f"Training: {train.get('train_examples')} examples, {train.get('steps')} steps, {train.get('train_seconds')} s,"
            f" best validation loss {train.get('best_val_loss')} (from {train.get('initial_val_loss')}),"
            f" device {train.get('device')}, {train.get('dtype')}."
        )
    lines.append("")
    cols = ["em", "f1", "lf-rouge-l", "lf-bleu-4", "contains", "abstained", "not_found_rate", "target_perplexity", "words"]
    for s in sets:
        lines += [f"## {s}", "", "| system | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        for name in systems:
            r = results[s][name]
            lines.append(f"| {name} | {r['n_answerable']} | " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
        lines.append("")
    lines += [
        "em/f1: SQuAD rules, citations [n] removed; lf-rouge-l / lf-bleu-4: LLaMA-Factory style; contains: key in answer;",
        "abstained: share of answerable questions answered 'not found'; not_found_rate: share of prompts whose blocks",
        "lack the answer that got the NOT_FOUND sentence; target_perplexity: of the reference reply, assistant tokens only.",
        "",
        "Command:",
        "",
        "```",
        args.command,
        "```",
        "",
    ]
    (out / f"finetune_{args.name}.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
