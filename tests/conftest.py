"""Shared fixtures: real packaged models, loaded once per test session; Chroma under tmp paths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SAMPLE_QA = ROOT / "data" / "sample_qa.jsonl"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def settings():
    from kbqa.app.settings import Settings

    return Settings()


@pytest.fixture(scope="session")
def embedder(settings):
    """The packaged English embedder (MiniLM): what embedder.backend = auto gives an English corpus."""
    from kbqa.app.embedder_choice import ENGLISH
    from kbqa.retrieval.embedders import make_embedder

    return make_embedder(*ENGLISH, device="cpu", batch_size=settings.embedder.batch_size)


@pytest.fixture(scope="session")
def sample_kb_dir(tmp_path_factory, settings):
    """The bundled sample knowledge base, ingested once per session (read-only for tests)."""
    from kbqa.app.kb import KnowledgeBase

    path = tmp_path_factory.mktemp("sample-kb") / "kb"
    summary = KnowledgeBase(path, settings).ingest([SAMPLE])
    assert summary.ok, summary.render()
    return path


@pytest.fixture(scope="session")
def sample_kb(sample_kb_dir, settings):
    from kbqa.app.kb import KnowledgeBase

    return KnowledgeBase(sample_kb_dir, settings)


@pytest.fixture()
def docs_dir(tmp_path):
    """A writable copy of the sample documents."""
    target = tmp_path / "docs"
    shutil.copytree(SAMPLE, target)
    return target


def ingest_written(root: Path, settings, write) -> tuple:
    """A knowledge base in `root`/kb made from the files `write(docs)` puts in `root`/docs; the
    ingest must succeed. Returns (knowledge base, ingest summary)."""
    from kbqa.app.kb import KnowledgeBase

    docs = root / "docs"
    docs.mkdir()
    write(docs)
    kb = KnowledgeBase(root / "kb", settings)
    summary = kb.ingest([docs])
    assert summary.ok, summary.render()
    return kb, summary


def load_qa():
    import json

    return [json.loads(line) for line in SAMPLE_QA.read_text(encoding="utf-8").splitlines() if line.strip()]
