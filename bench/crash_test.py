"""Crash-safety invariants, recorded: `ingest` killed with SIGKILL at each crash point, then
run again, then `kbqa doctor --json`; writes bench/results/crash_invariants.{json,md}.

    python bench/crash_test.py

Every step is a separate process, as in real use. The kill comes from the test-only hook
``KBQATEST_CRASH_AT=POINT:N`` (ingest/crash_hooks.py). Invariants checked after the second
run: manifest ids == vector-store ids == BM25 ids == the ids of a clean ingest of the same
files, no id twice, and the doctor reports no problem.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
POINTS = ["parsed:2", "after_upsert:2", "after_upsert:4", "after_manifest:3", "keyword_save:1"]


def _ingest(docs: Path, kb: Path, crash: str | None = None) -> int:
    env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_INGEST__BATCH_CHUNKS="8")
    env.pop("KBQATEST_CRASH_AT", None)
    if crash:
        env["KBQATEST_CRASH_AT"] = crash
    cmd = [sys.executable, "-m", "kbqa.app.cli.ingest_main", str(docs), "--kb", str(kb), "--json", "--no-progress"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True).returncode


def _ids(kb: Path) -> dict:
    from kbqa.app.kb import KnowledgeBase
    from kbqa.app.settings import Settings
    from kbqa.ingest.manifest import Manifest
    from kbqa.retrieval.bm25 import BM25Index

    manifest = Manifest(kb / "manifest.sqlite")
    m = [i for r in manifest.all() for i in r.chunk_ids]
    manifest.close()
    store = KnowledgeBase(kb, Settings.load(env={})).store
    s = store.all_ids()
    return {"manifest": m, "store": s, "bm25": sorted(BM25Index(kb / "bm25").ids())}


def _doctor(kb: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "kbqa.app.cli.kbqa_main", "doctor", "--kb", str(kb), "--json"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="kbqa-crash-"))
    docs = tmp / "docs"
    shutil.copytree(ROOT / "data" / "sample", docs)
    reference = tmp / "reference"
    assert _ingest(docs, reference) == 0
    ref = set(_ids(reference)["store"])
    rows = []
    for point in POINTS:
        kb = tmp / point.replace(":", "_")
        killed = _ingest(docs, kb, point)
        before = _doctor(kb)
        second = _ingest(docs, kb)
        ids = _ids(kb)
        after = _doctor(kb)
        checks = {
            "killed_by_sigkill": killed == -9,
            "second_run_ok": second == 0,
            "no_id_twice": all(len(v) == len(set(v)) for v in ids.values()),
            "manifest==store==bm25": set(ids["manifest"]) == set(ids["store"]) == set(ids["bm25"]),
            "store==clean_ingest": set(ids["store"]) == ref,
            "doctor_clean": after["problems"] == [],
        }
        rows.append(
            {
                "point": point,
                "chunks": len(ids["store"]),
                "reference_chunks": len(ref),
                "problems_before_rerun": before["problems"],
                "checks": checks,
                "ok": all(checks.values()),
            }
        )
        print(point, "OK" if rows[-1]["ok"] else "FAILED", checks, flush=True)
    meta = {
        "command": "python bench/crash_test.py",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "docs": "data/sample (7 documents)",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crash_invariants.json").write_text(json.dumps({"meta": meta, "rows": rows}, ensure_ascii=False, indent=2), encoding="utf-8")
    lines = [
        "# Crash safety: invariants after SIGKILL and a second run",
        "",
        f"`{meta['command']}` on {meta['machine']}, {meta['date']}; documents: {meta['docs']}, batches of 8 chunks. "
        "Each row: `ingest` killed (SIGKILL) at the crash point, `kbqa doctor` run (problems it saw), `ingest` run again, invariants checked.",
        "",
        "| crash point | killed | doctor before re-run | chunks (clean ingest) | manifest = store = BM25 | = clean ingest | no id twice | doctor after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["checks"]
        seen = "; ".join(r["problems_before_rerun"])[:160] or "none"
        lines.append(
            f"| {r['point']} | {c['killed_by_sigkill']} | {seen} | {r['chunks']} ({r['reference_chunks']}) | {c['manifest==store==bm25']} | "
            f"{c['store==clean_ingest']} | {c['no_id_twice']} | {'no problems' if c['doctor_clean'] else 'PROBLEMS'} |"
        )
    (RESULTS / "crash_invariants.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
