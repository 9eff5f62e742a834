"""Rendering a run: the evalscope-style table, report.md with error analysis, a PNG chart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from kbqa.eval.error_analysis import OUTCOMES, worst_items

TABLE_HEADER = ("Model", "Dataset", "Metric", "Subset", "Num", "Score")
CHART_KEYS = ("em", "f1", "contains", "bleu-1", "bleu-4", "rouge-1-f", "rouge-2-f", "rouge-l-f", "rouge-l-r", "lf-bleu-4", "lf-rouge-l")


def table_rows(model: str, dataset: str, subset: str, num: int | Mapping[str, int], metrics: Mapping[str, float]) -> list[tuple]:
    """One row per metric; `num` is the item count, or a count per metric (retrieval metrics only
    count the items whose gold source is known)."""
    count = (lambda name: num.get(name, 0)) if isinstance(num, Mapping) else (lambda name: num)
    return [(model, dataset, name, subset, count(name), f"{value:.4f}") for name, value in metrics.items()]


def render_table(rows: Sequence[Sequence], header: Sequence[str] = TABLE_HEADER) -> str:
    """A pipe table laid out like evalscope's report (``Model | Dataset | Metric | Subset | Num | Score``)."""
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    return "\n".join([sep, line(cells[0]), sep.replace("-", "="), *(line(r) for r in cells[1:]), sep])


def markdown_table(rows: Sequence[Sequence], header: Sequence[str]) -> str:
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(out)


def _short(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def render_report(meta: Mapping, metrics: Mapping[str, float], records: Sequence[Mapping], primary: str, worst: int = 10) -> str:
    """report.md: run facts, the metrics, outcome counts, and the worst items explained."""
    lines = [f"# Evaluation: {meta.get('dataset')} / {meta.get('subset')}", ""]
    for key in ("model", "kb", "data", "mode", "num", "date", "command", "machine"):
        if meta.get(key) not in (None, ""):
            lines.append(f"- {key}: `{meta[key]}`" if key == "command" else f"- {key}: {meta[key]}")
    lines += ["", "## Metrics", "", markdown_table([(k, f"{v:.4f}") for k, v in metrics.items()], ("Metric", "Score")), ""]
    counts = {o: sum(1 for r in records if r.get("outcome") == o) for o in OUTCOMES}
    lines += [
        "## Error analysis",
        "",
        "An answer is correct when it contains the short answer (or reference) or its token F1 is at least 0.5. "
        "A wrong answer is a *retrieval miss* when the gold source was not among the retrieved chunks, "
        "a *generation miss* when it was retrieved and the answer is still wrong.",
        "",
        markdown_table([(o, counts[o]) for o in OUTCOMES], ("Outcome", "Count")),
        "",
        f"### Worst {min(worst, len(records))} items by {primary}",
        "",
    ]
    for n, r in enumerate(worst_items(records, primary, worst), start=1):
        sources = ", ".join(f"{s.get('source')}" + (f" p.{s['page']}" if s.get("page") else "") for s in r.get("sources", [])[:5]) or "(none)"
        gold = r.get("gold_source")
        rank = r.get("gold_rank")
        gold_txt = "unknown" if gold is None else (f"{gold} (rank {rank})" if rank else f"{gold} (not retrieved)")
        lines += [
            f"{n}. **{_short(r['question'], 200)}**",
            f"   - reference: {_short(r['reference'], 200)}",
            f"   - answer: {_short(r['answer'])}",
            f"   - {primary}: {r['scores'].get(primary, 0.0):.3f}; f1 {r['scores'].get('f1', 0.0):.3f}; outcome: **{r.get('outcome')}**",
            f"   - gold source: {gold_txt}; retrieved: {sources}",
        ]
    return "\n".join(lines) + "\n"


def write_chart(metrics: Mapping[str, float], path: str | Path, title: str) -> Path:
    """A bar chart of the headline metrics (matplotlib, Agg backend: no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("the metrics chart needs matplotlib: pip install 'kbqa[eval]'") from exc
    keys = [k for k in CHART_KEYS if k in metrics] + [k for k in metrics if k.startswith(("hit@", "mrr@", "accuracy"))]
    values = [metrics[k] for k in keys]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(keys) + 2), 4))
    bars = ax.bar(keys, values, color="#4C72B0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
