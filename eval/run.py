"""One evaluation run: score answers against references, summarise, write the run folder.

A run folder holds ``metrics.json`` (meta + means), ``predictions.jsonl`` (one record per
question: question, reference, answer, sources, gold source and rank, per-item scores,
outcome, latency), ``report.md`` and ``metrics.png``. `compare_runs` reads two of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kbqa.eval.datasets import DatasetError, QAItem
from kbqa.eval.error_analysis import answer_outcome_scores, gold_rank, is_not_found, outcome, outcome_counts, retrieval_scores
from kbqa.eval.report import render_report, write_chart
from kbqa.eval.scoring import ALL_KEYS, aggregate, score_answer
from kbqa.retrieval.config import RetrievalSettings
from kbqa.retrieval.jsonl import iter_jsonl


def score_records(items: Sequence[QAItem], answers: Sequence[Mapping[str, Any]], k: int | None = None) -> list[dict[str, Any]]:
    """`k`: the passages retrieved per question (None: the settings' default retrieval.k).
    `answers[i]` is ``{"answer": str, "sources": [{"source", "page", "chunk", "score"}], "latency_ms": float}``."""
    if len(items) != len(answers):
        raise ValueError(f"{len(items)} questions but {len(answers)} answers")
    k = RetrievalSettings().k if k is None else k
    records = []
    for item, ans in zip(items, answers):
        text = str(ans.get("answer") or "")
        sources = list(ans.get("sources") or [])
        names = [str(s.get("source", "")) if isinstance(s, Mapping) else str(s) for s in sources]
        scores = score_answer(text, item.references, item.keys)
        scores.update(answer_outcome_scores(scores, is_not_found(text, ans.get("found"))))
        retrieved = "sources" in ans  # the RAG path ran (an empty list: nothing found)
        if retrieved:
            scores.update(retrieval_scores(names, item.source, k))
        rank = gold_rank(names, item.source) if retrieved else None
        records.append(
            {
                "id": item.id,
                "question": item.question,
                "reference": item.references[0],
                "references": item.references,
                "answer": text,
                "sources": [s if isinstance(s, Mapping) else {"source": s} for s in sources],
                "gold_source": item.source,
                "gold_rank": rank,
                "scores": scores,
                "outcome": outcome(scores, rank),
                "latency_ms": ans.get("latency_ms"),
                **({"answer_mode": ans["answer_mode"]} if ans.get("answer_mode") else {}),
            }
        )
    return records


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of every per-item score (retrieval scores over the items with a known gold source)."""
    means = aggregate(r["scores"] for r in records)
    ordered = {k: means[k] for k in ALL_KEYS if k in means}
    ordered.update({k: v for k, v in means.items() if k not in ordered})
    latencies = [r["latency_ms"] for r in records if isinstance(r.get("latency_ms"), (int, float))]
    if latencies:
        ordered["latency_ms_mean"] = sum(latencies) / len(latencies)
    return ordered


def write_run(out: str | Path, meta: Mapping[str, Any], metrics: Mapping[str, float], records: Sequence[Mapping[str, Any]], primary: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    score_metrics = {k: v for k, v in metrics.items() if not k.startswith("latency")}
    payload = {"meta": dict(meta), "metrics": dict(metrics), "outcomes": outcome_counts([r["outcome"] for r in records]), "primary": primary}
    (out / "metrics.json").write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(render_report(meta, metrics, records, primary), encoding="utf-8")
    write_chart(score_metrics, out / "metrics.png", f"{meta.get('dataset')} / {meta.get('subset')} ({len(records)} questions)")
    return out


def read_predictions(path: str | Path, items: Sequence[QAItem], *, by_id: bool = False) -> list[dict[str, Any]]:
    """Answers for `items` from a jsonl of ``{"question"|"query"|"id", "answer"|"prediction", "sources"?}``
    (e.g. an earlier run's predictions.jsonl), matched by question text, else by id, else by line order
    (`by_id`: by id first, for data sets whose ids are unique and whose questions may repeat)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    rows = []
    for _, where, row in iter_jsonl(path, DatasetError):
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        answer = row.get("answer", row.get("prediction"))
        if not isinstance(answer, str):
            raise DatasetError(f"{where}: missing field 'answer' (or 'prediction') as a string")
        rows.append(row)
    by_question = {str(r.get("question", r.get("query", ""))).strip(): r for r in rows}
    by_id = {str(r["id"]): r for r in rows if "id" in r}
    out = []
    for n, item in enumerate(items):
        if by_id:
            row = by_id.get(item.id) or by_question.get(item.question.strip())
        else:
            row = by_question.get(item.question.strip()) or by_id.get(item.id)
        if row is None:
            if len(rows) != len(items):
                raise DatasetError(f"{path}: no prediction for question {item.question!r} (matched by question, then id)")
            row = rows[n]
        ans = {"answer": row.get("answer", row.get("prediction")), "latency_ms": row.get("latency_ms")}
        if isinstance(row.get("sources"), list):
            ans["sources"] = row["sources"]
        out.append(ans)
    return out


def load_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = Path(path)
    metrics_file, preds_file = path / "metrics.json", path / "predictions.jsonl"
    for f in (metrics_file, preds_file):
        if not f.is_file():
            raise DatasetError(f"{path}: not a run folder (no {f.name}); make one with `kbqa eval qa ... --out {path}`")
    payload = json.loads(metrics_file.read_text(encoding="utf-8"))
    records = [json.loads(line) for line in preds_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return payload, records


def compare_runs(a: str | Path, b: str | Path, top: int = 10) -> dict[str, Any]:
    """Metric deltas (B - A) and the items whose primary score changed most."""
    pa, ra = load_run(a)
    pb, rb = load_run(b)
    ma, mb = pa["metrics"], pb["metrics"]
    deltas = {k: {"a": ma[k], "b": mb[k], "delta": mb[k] - ma[k]} for k in ma if k in mb}
    primary = pa.get("primary") or "f1"
    index_b = {(r.get("id"), r["question"]): r for r in rb}
    changed = []
    for r in ra:
        other = index_b.get((r.get("id"), r["question"]))
        if other is None:
            continue
        sa, sb = r["scores"].get(primary, 0.0), other["scores"].get(primary, 0.0)
        changed.append(
            {
                "id": r.get("id"),
                "question": r["question"],
                "reference": r["reference"],
                "a": sa,
                "b": sb,
                "delta": sb - sa,
                "answer_a": r["answer"],
                "answer_b": other["answer"],
                "outcome_a": r.get("outcome"),
                "outcome_b": other.get("outcome"),
            }
        )
    changed.sort(key=lambda c: -abs(c["delta"]))
    return {
        "a": str(a),
        "b": str(b),
        "primary": primary,
        "matched": len(changed),
        "metrics": deltas,
        "outcomes": {"a": pa.get("outcomes", {}), "b": pb.get("outcomes", {})},
        "changed": [c for c in changed if c["delta"]][:top],
    }
