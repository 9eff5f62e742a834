"""Cross-lingual dense retrieval with e5, studied offline in numpy: which change to the dense scores
lets a question in one language find the right chunk in the other language without costing
same-language questions anything.

    python bench/crosslingual_study.py [--steps squad=5,cmrc=1] [--questions 300]

Vectors come from bench/crosslingual_vectors.py (embedded once, cached). Methods (m_L: the mean
of the knowledge base's chunk vectors of language L, the query's language by
`retrieval.lang.detect_language`, a chunk's likewise):

* ``raw``: the cosine, as shipped;
* ``center``: cos(q - m_Lq, c - m_Lc), language-mean centering on both sides (Libovicky et al. 2020);
* ``center_ip``: (q - m_Lq) . (c - m_Lc) / |q - m_Lq|: the same without renormalising the chunk
  (a per-language offset on an inner product the vector index can search);
* ``center_query``: (q - m_Lq) . c / |q - m_Lq|: the query side alone;
* ``balanced``: raw cosines, the final ranking interleaved between the languages of the KB
  (the language with the better top score first);
* ``center+balanced``: ``center`` scores, interleaved;
* ``center (reference means)``: ``center`` with the means of another corpus (the sample KB's sets
  take the SQuAD + CMRC paragraphs', those take the sample KB's): language or topic?
* ``center+z``: ``center`` scores standardised within each language (merging by z-score);
* ``center+language-aware fusion`` (what `retrieval.language_centering` does): ``center`` scores
  over the candidates a vector index gives (the top 50 for q and for q - m_Lq), and in hybrid
  fusion BM25 counts only for chunks in the question's language (any other keeps its dense score).
  Its relevance floor: the shipped rule on raw scores, or a top chunk in another language whose
  raw cosine reaches a cross-language floor (a table of floors).

Sets: data/crosslingual_qa.jsonl and data/sample_qa.jsonl over the data/sample KB; SQuAD dev and
CMRC trial questions in a bilingual KB of both sets' paragraphs (``mixed``) and in one-language
KBs of each (``mono``). Hybrid = the shipped weighted fusion (e5: w 0.7, no adaptation) over the
top 50 of each retriever. Floors: how well the top dense score separates the sample KB's own
questions from off-topic ones (tests/test_retrieval_kb.py's, SQuAD's and CMRC's questions).
Writes bench/results/crosslingual_study.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.crosslingual_vectors import vectors  # noqa: E402
from bench.run import machine  # noqa: E402
from kbqa.app.settings import Settings  # noqa: E402
from kbqa.retrieval.config import RetrievalSettings  # noqa: E402
from kbqa.retrieval.fusion import dense_weight, weighted_fuse  # noqa: E402
from kbqa.retrieval.lang import detect_language  # noqa: E402

LANG_FUSION = "center+language-aware fusion"
METHODS = ("raw", "center", "center (reference means)", "center_ip", "center_query", "balanced", "center+balanced", "center+z", LANG_FUSION)
CROSS_FLOORS = (0.76, 0.77, 0.78, 0.79, 0.80)
W, POOL, KS, TARGET = 0.7, 50, (1, 5), 0.85
KEYWORD_FLOOR = {"en": RetrievalSettings().min_keyword_score, "zh": RetrievalSettings().min_keyword_score_zh}  # the settings' floors
ONLY = "dense, other-language chunks only"


def centroids(vectors: np.ndarray, langs: np.ndarray) -> dict[str, np.ndarray]:
    return {lang: vectors[langs == lang].mean(axis=0) for lang in np.unique(langs)}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def dense(method: str, chunks: np.ndarray, langs: np.ndarray, q: np.ndarray, qlang: str, means: dict) -> np.ndarray:
    """The method's dense score of every chunk for one query vector."""
    if method in ("raw", "balanced"):
        return chunks @ q
    if method == LANG_FUSION:
        return dense("center", chunks, langs, q, qlang, means)
    if method == "center+z":
        return zscore(dense("center", chunks, langs, q, qlang, means), langs)
    mq = means.get(qlang, np.zeros_like(q))
    shift = np.stack([means[lang] for lang in langs])
    qc = _unit(q - mq)
    if method == "center_query":
        return chunks @ qc
    if method == "center_ip":
        return (chunks - shift) @ qc
    return _unit(chunks - shift) @ qc  # center, center (reference means), center+balanced


def zscore(scores: np.ndarray, langs: np.ndarray) -> np.ndarray:
    """Each language's scores standardised over that language's chunks (merging result lists
    of several languages by normalised score)."""
    out = np.empty_like(scores)
    for lang in np.unique(langs):
        mine = langs == lang
        out[mine] = (scores[mine] - scores[mine].mean()) / (scores[mine].std() + 1e-9)
    return out


def interleave(ranked: list[str], lang_of: dict[str, str]) -> list[str]:
    """One chunk of each language in turn, each language in its own order; the language of the
    best chunk first."""
    queues: dict[str, list[str]] = {}
    for i in ranked:
        queues.setdefault(lang_of[i], []).append(i)
    out, order = [], list(queues)
    while any(queues.values()):
        for lang in order:
            if queues[lang]:
                out.append(queues[lang].pop(0))
    return out


def language_aware_pool(chunks, langs, q, qlang, means) -> np.ndarray:
    """Dense candidates as a vector index would give them: the top POOL for the query and the top
    POOL for the query minus its language's mean (which favours the other languages)."""
    shifted = dense("center_query", chunks, langs, q, qlang, means)
    return np.union1d(np.argsort(-(chunks @ q))[:POOL], np.argsort(-shifted)[:POOL])


def rank(
    method: str, ids, langs, d: np.ndarray, bm25: np.ndarray | None, qlang: str = "", pool: np.ndarray | None = None
) -> tuple[list[str], float, float, float]:
    """(ranking of chunk ids, top dense score, top fused score, dense weight); bm25 None: dense alone.
    `pool`: the dense candidates (default: the top POOL by `d`). ``center+language-aware fusion``:
    BM25 counts only for chunks in the question's language; any other chunk's fused score is its
    dense score (keywords cannot match across languages, so their absence says nothing)."""
    top = np.argsort(-d) if pool is None else pool[np.argsort(-d[pool])]
    dense_list = [(ids[j], float(d[j])) for j in (top[:POOL] if pool is None else top)]
    if bm25 is None:
        fused, w = [(ids[j], float(d[j])) for j in top], 1.0
    else:
        order = np.argsort(-bm25)[:POOL]
        sparse = [(ids[j], float(bm25[j])) for j in order if bm25[j] > 0]
        w = dense_weight(
            W, language_supported=True, weak_language_weight=0.0, dense_scores=[s for _, s in dense_list], sparse_scores=[s for _, s in sparse], adapt=0.0
        )
        fused = weighted_fuse(dense_list, sparse, w)
        if method == LANG_FUSION:
            lang_of, own = dict(zip(ids, langs)), dict(dense_list)
            fused = sorted(((i, own[i] if lang_of[i] != qlang and i in own else s) for i, s in fused), key=lambda r: -r[1])
    ranked = [i for i, _ in fused]
    if method.endswith("balanced"):
        ranked = interleave(ranked, dict(zip(ids, langs)))
    return ranked, float(d[top[0]]), fused[0][1] if fused else 0.0, w


def run_set(method, kb: dict, qvecs, qlangs, bm25, is_hit, reference: dict | None = None) -> dict:
    """hit@k (dense, hybrid, and dense among the chunks of the other language only) and the top
    scores of each query of one set over one KB. `reference`: the chunks whose language means
    ``center (reference means)`` uses (another corpus)."""
    ids, langs, chunks = list(kb["ids"]), kb["langs"], kb["vectors"]
    means = centroids(chunks, langs)
    if method == "center (reference means)" and reference is not None:
        means = centroids(reference["vectors"], reference["langs"])
    rows = {"dense": [], "hybrid": [], ONLY: []}
    tops, fused_tops, weights, cross = [], [], [], []
    for n, (q, qlang) in enumerate(zip(qvecs, qlangs)):
        d = dense(method, chunks, langs, q, qlang, means)
        pool = language_aware_pool(chunks, langs, q, qlang, means) if method == LANG_FUSION else None
        for mode in rows:
            if mode == ONLY:
                ranked = [ids[j] for j in np.argsort(-d) if langs[j] != qlang]
                rows[mode].append(next((r + 1 for r, i in enumerate(ranked[: max(KS)]) if is_hit(n, i)), None))
                continue
            ranked, top, fused_top, w = rank(method, ids, langs, d, bm25[n] if mode == "hybrid" else None, qlang, pool)
            rows[mode].append(next((r + 1 for r, i in enumerate(ranked[: max(KS)]) if is_hit(n, i)), None))
            if mode == "hybrid":
                tops.append(top)
                fused_tops.append(fused_top)
                weights.append(w)
                j = ids.index(ranked[0])  # the raw cosine of the top chunk, when it is in another language
                cross.append(float(chunks[j] @ q) if langs[j] != qlang else None)
    out = {mode: {f"hit@{k}": round(sum(r is not None and r <= k for r in ranks) / len(ranks), 3) for k in KS} for mode, ranks in rows.items()}
    keyword_floor = [KEYWORD_FLOOR[lang] for lang in qlangs]
    return out | {"questions": len(qlangs), "top": tops, "fused_top": fused_tops, "w": weights, "keyword_floor": keyword_floor, "cross_top": cross}


def sample_sets(sample: dict) -> dict:
    """{set: (query vectors, query languages, bm25 rows, hit test)} over the sample KB."""
    sources, texts = list(sample["sources"]), list(sample["texts"])
    out = {}
    for name, path in (("crosslingual", "crosslingual_qa.jsonl"), ("sample_qa", "sample_qa.jsonl")):
        cases = [json.loads(line) for line in (ROOT / "data" / path).read_text(encoding="utf-8").splitlines() if line.strip()]
        langs = np.array([detect_language(c["query"]) for c in cases])
        index = {i: n for n, i in enumerate(sample["ids"])}
        for lang in ("zh", "en"):
            keep = np.flatnonzero(langs == lang)
            mine = [cases[j] for j in keep]
            label = f"{name} {'zh->en' if lang == 'zh' else 'en->zh'}" if name == "crosslingual" else f"{name} {lang}"
            out[label] = (
                sample[f"q_{name}"][keep],
                langs[keep],
                sample[f"bm25_{name}"][keep],
                lambda n, i, mine=mine: sources[index[i]] == mine[n]["source"] and mine[n]["key"] in texts[index[i]],
            )
    return out


def subset(kb: dict, lang: str) -> dict:
    keep = kb["langs"] == lang
    return {"ids": kb["ids"][keep], "langs": kb["langs"][keep], "vectors": kb["vectors"][keep]}


def bm25_subset(bm25: np.ndarray, kb: dict, lang: str) -> np.ndarray:
    return bm25[:, kb["langs"] == lang]


def measure_all(sample: dict, mixed: dict) -> dict:
    results: dict = {}
    for method in METHODS:
        res = results[method] = {}
        for label, (qv, ql, bm, is_hit) in sample_sets(sample).items():
            res[label] = run_set(method, sample, qv, ql, bm, is_hit, reference=mixed)
        for name, lang in (("squad", "en"), ("cmrc", "zh")):
            gold = list(mixed[f"gold_{name}"])
            qv, ql = mixed[f"q_{name}"], np.array([lang] * len(gold))
            res[f"{name} mixed"] = run_set(method, mixed, qv, ql, mixed[f"bm25_{name}"], lambda n, i, g=gold: i == g[n], reference=sample)
            mono = subset(mixed, lang)
            res[f"{name} mono"] = run_set(
                method, mono, qv, ql, bm25_subset(mixed[f"bm25_{name}"], mixed, lang), lambda n, i, g=gold: i == g[n], reference=sample
            )
        for name in ("off_topic", "squad", "cmrc"):
            qv = sample[f"q_{name}"] if name == "off_topic" else sample[f"q_{name}"]
            ql = np.array([detect_language(t) for t in sample[f"text_{name}"]])
            res[f"{name} on sample (off-topic)"] = run_set(method, sample, qv, ql, sample[f"bm25_{name}"], lambda n, i: False, reference=mixed)
        print(method, {k: v["hybrid"] for k, v in res.items() if "off-topic" not in k}, file=sys.stderr, flush=True)
    return results


def floors(res: dict, fixed: float | None = None) -> dict:
    """Per method: the top-dense-score floor that best separates the sample KB's own questions
    (both question files) from the off-topic ones (balanced accuracy), and what it keeps."""
    on_sets = [k for k in res if k.startswith(("crosslingual", "sample_qa"))]
    off_sets = [k for k in res if k.endswith("(off-topic)")]
    on = np.concatenate([res[k]["top"] for k in on_sets])
    off = np.concatenate([res[k]["top"] for k in off_sets])
    grid = np.unique(np.concatenate([on, off]))
    score = [((on >= t).mean() + (off < t).mean()) / 2 for t in grid]
    best = fixed if fixed is not None else float(grid[int(np.argmax(score))])
    accuracy = ((on >= best).mean() + (off < best).mean()) / 2
    return {
        "floor": round(best, 4),
        "balanced_accuracy": round(float(accuracy), 3),
        "dense passes": {k: round(float((np.array(res[k]["top"]) >= best).mean()), 3) for k in on_sets + off_sets},
        "hybrid found": {k: hybrid_found(res[k], best) for k in on_sets + off_sets},
    }


def found_flags(r: dict, floor: float) -> list[bool]:
    """Per query: the top fused score reaches w * floor + (1 - w) * keyword floor (retrieval.retriever)."""
    return [f >= w * floor + (1 - w) * kf for f, w, kf in zip(r["fused_top"], r["w"], r["keyword_floor"])]


def hybrid_found(r: dict, floor: float) -> float:
    ok = found_flags(r, floor)
    return round(sum(ok) / len(ok), 3)


def cross_floors(raw: dict, fused: dict) -> dict:
    """``center+language-aware fusion`` with a floor for cross-language matches: found when the
    shipped rule finds it on raw scores, or when the top chunk is in another language than the
    question and its raw cosine reaches the cross-language floor. {floor: {set: found share}}."""
    checks = [k for k in raw if k.startswith(("crosslingual", "sample_qa")) or k.endswith("(off-topic)")]
    out = {}
    for floor in (None, *CROSS_FLOORS):
        row = {}
        for k in checks:
            ok = [f or (floor is not None and c is not None and c >= floor) for f, c in zip(found_flags(raw[k], SHIPPED_FLOOR), fused[k]["cross_top"])]
            row[k] = round(sum(ok) / len(ok), 3)
        out["none" if floor is None else str(floor)] = row
    return out


SHIPPED_FLOOR = 0.84  # retrieval/calibration.py, e5


def verdict(results: dict, sets: list[str], cross: list[str]) -> str:
    """Which methods reach the target (hybrid hit@5 >= TARGET in both directions), and each
    method's worst same-language change against raw (hybrid hit@1, hit@5)."""
    same = [k for k in sets if k not in cross]
    met = [m for m, r in results.items() if all(r[k]["hybrid"]["hit@5"] >= TARGET for k in cross)]
    worst = {
        m: [round(min(r[k]["hybrid"][f"hit@{n}"] - results["raw"][k]["hybrid"][f"hit@{n}"] for k in same), 3) for n in KS]
        for m, r in results.items()
        if m != "raw"
    }
    return (
        f"Target (hybrid hit@5 >= {TARGET} in both directions): met by {', '.join(met) or 'no method'}. "
        "Worst same-language change against raw, hybrid hit@1 / hit@5: " + "; ".join(f"{m} {a:+} / {b:+}" for m, (a, b) in worst.items()) + "."
    )


def write(results: dict, floor_table: dict, cross_table: dict, meta: dict) -> None:
    out = ROOT / "bench" / "results"
    slim = {
        m: {k: {x: y for x, y in v.items() if x not in ("top", "fused_top", "w", "keyword_floor", "cross_top")} for k, v in r.items()}
        for m, r in results.items()
    }
    (out / "crosslingual_study.json").write_text(
        json.dumps({"meta": meta, "results": slim, "floors": floor_table, "cross_language_floors": cross_table}, indent=2) + "\n"
    )
    sets = [k for k in next(iter(results.values())) if not k.endswith("(off-topic)")]
    lines = [
        "# Cross-lingual study: e5 dense scores (offline, numpy)\n",
        f"`{meta['command']}` ({meta['date']}; {meta['machine']['cores']} cores, load average {meta['loadavg']}). "
        f"Methods: see the script's docstring. Mixed: {meta['mixed']}. hit@1 / hit@5 per set; hybrid = weighted fusion, w {W}.\n",
        "| method | mode | " + " | ".join(sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for method, res in results.items():
        for mode in ("dense", "hybrid"):
            lines.append(f"| {method} | {mode} | " + " | ".join(f"{res[k][mode]['hit@1']} / {res[k][mode]['hit@5']}" for k in sets) + " |")
    cross = [k for k in sets if k.startswith("crosslingual")]
    lines.append("\n" + verdict(results, sets, cross))
    lines += [
        f"\n{ONLY} (the ranking within the other language: what any merge of the languages can reach at most):\n",
        "| method | " + " | ".join(cross) + " |",
        "|---|" + "---|" * len(cross),
    ]
    for method, res in results.items():
        lines.append(f"| {method} | " + " | ".join(f"{res[k][ONLY]['hit@1']} / {res[k][ONLY]['hit@5']}" for k in cross) + " |")
    checks = list(next(iter(floor_table.values()))["hybrid found"])
    lines += [
        "\nFloors: the top dense score that best separates the sample KB's questions from off-topic ones "
        "(balanced accuracy); then the share of each set that hybrid search calls found at that floor "
        f"(raw at the shipped {SHIPPED_FLOOR} in the first row).\n",
        "| method | floor | bal. acc. | " + " | ".join(checks) + " |",
        "|---|---|---|" + "---|" * len(checks),
    ]
    for method, f in floor_table.items():
        lines.append(f"| {method} | {f['floor']} | {f['balanced_accuracy']} | " + " | ".join(str(f["hybrid found"][k]) for k in checks) + " |")
    lines += [
        f"\n{LANG_FUSION}, found: the shipped rule on raw scores (e5 floor {SHIPPED_FLOOR}), or the top chunk in another "
        "language with a raw cosine at or above the cross-language floor:\n",
        "| cross-language floor | " + " | ".join(checks) + " |",
        "|---|" + "---|" * len(checks),
    ]
    for floor, row in cross_table.items():
        lines.append(f"| {floor} | " + " | ".join(str(row[k]) for k in checks) + " |")
    (out / "crosslingual_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="squad=5,cmrc=1", help="every n-th paragraph of each set in the mixed KB")
    ap.add_argument("--questions", type=int, default=300, help="questions sampled per set")
    args = ap.parse_args(argv)
    steps = {k: int(v) for k, v in (p.split("=") for p in args.steps.split(","))}
    load_before = os.getloadavg()
    sample, mixed = vectors(Path(Settings.load(env={}).cache_dir) / "crosslingual-study", steps, args.questions)
    results = measure_all(sample, mixed)
    floor_table = {"raw (shipped floor)": floors(results["raw"], SHIPPED_FLOOR)}
    floor_table |= {m: floors(r) for m, r in results.items()}
    meta = {
        "command": "python bench/crosslingual_study.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg": f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after",
        "mixed": f"{int((mixed['langs'] == 'en').sum())} SQuAD + {int((mixed['langs'] == 'zh').sum())} CMRC paragraphs, "
        f"{len(mixed['q_squad'])} + {len(mixed['q_cmrc'])} questions",
    }
    write(results, floor_table, cross_floors(results["raw"], results[LANG_FUSION]), meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
