"""Each part owns its typed settings (issue 24): `retrieval/config.py` and `ingest/config.py` hold
the section models with their defaults, `app/settings.py` composes them, and no default is
declared twice: the retriever, the stores, the ingestor and the embedder factory take theirs
from the settings models. The last test runs the real `kbqa serve` entry point with
``KBQA_RETRIEVAL__K`` in its environment and asks /v1/retrieve without a k."""

from __future__ import annotations

import ast
import inspect
import shutil
from pathlib import Path

import httpx

from kbqa.app import settings as app_settings
from kbqa.ingest.config import ChunkingSettings, IngestSettings
from kbqa.retrieval.config import AnswerSettings, EmbedderSettings, LLMSettings, RetrievalSettings, StoreSettings

ROOT = Path(__file__).resolve().parent.parent


def test_the_tree_is_composed_of_the_parts_models():
    s = app_settings.Settings()
    owned = {
        "embedder": EmbedderSettings,
        "store": StoreSettings,
        "retrieval": RetrievalSettings,
        "llm": LLMSettings,
        "answer": AnswerSettings,
        "chunking": ChunkingSettings,
        "ingest": IngestSettings,
    }
    for section, model in owned.items():
        assert type(getattr(s, section)) is model, section
        assert getattr(app_settings, model.__name__) is model  # the old import path still works
        assert (model.__doc__ or "").strip(), f"{model.__name__} has no docstring"
    assert set(app_settings.Settings.model_fields) == set(owned) | {"cache_dir"}


def test_section_models_are_not_declared_in_app():
    tree = ast.parse((ROOT / "app" / "settings.py").read_text(encoding="utf-8"))
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    assert classes <= {"Settings", "SettingsError"}, classes


def test_the_retriever_config_is_the_retrieval_settings():
    from kbqa.retrieval.retriever import RetrieverConfig

    assert issubclass(RetrieverConfig, RetrievalSettings)
    # it declares none of the retrieval settings' fields again (so none of their defaults)
    redeclared = set(RetrieverConfig.__annotations__) & set(RetrievalSettings.model_fields)
    assert not redeclared, redeclared
    defaults, config = RetrievalSettings(), RetrieverConfig()
    assert {f: getattr(config, f) for f in RetrievalSettings.model_fields} == defaults.model_dump()
    tuned = RetrievalSettings(k=9, mode="bm25", min_keyword_score=0.4, candidates=70, dense_languages=["en", "zh"])
    assert RetrieverConfig.from_mapping(tuned).model_dump(exclude={"rrf_k"}) == tuned.model_dump()
    assert RetrieverConfig.from_mapping(tuned.model_dump()) == RetrieverConfig.from_mapping(tuned)


def test_the_retriever_config_is_frozen_and_validated():
    import pydantic
    import pytest

    from kbqa.retrieval.retriever import RetrieverConfig

    config = RetrieverConfig(mode="dense")
    with pytest.raises(pydantic.ValidationError):
        config.mode = "bm25"
    with pytest.raises(ValueError, match="mode"):
        RetrieverConfig(mode="magic")
    assert config.replace(min_score=0.5).min_score == 0.5 and config.min_score is None


def _literal_defaults(path: Path, name: str) -> dict[str, object]:
    """Parameters of function `name`, or fields of class `name`, whose default is a literal in the source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            args = node.args
            pairs = list(zip(args.args[len(args.args) - len(args.defaults) :], args.defaults))
            pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            found.update({a.arg: d.value for a, d in pairs if isinstance(d, ast.Constant)})
        elif isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and isinstance(item.value, ast.Constant):
                    found[item.target.id] = item.value.value
    return found


def test_store_defaults_come_from_the_store_settings():
    from kbqa.retrieval.stores.chroma import ChromaStore
    from kbqa.retrieval.stores.faiss import FaissStore
    from kbqa.retrieval.stores.faiss_index import IndexSettings

    s = StoreSettings()
    signature = inspect.signature(FaissStore).parameters
    assert {name: signature[name].default for name in s.faiss_options()} == s.faiss_options()
    index = IndexSettings()
    assert (index.kind, index.flat_max, index.nlist, index.nprobe, index.probe_vectors, index.ef_search) == tuple(s.faiss_options().values())
    assert inspect.signature(ChromaStore).parameters["ef_search"].default == s.chroma_ef_search
    stores = ROOT / "retrieval" / "stores"
    options = set(s.faiss_options()) | {"kind"}
    assert not options & set(_literal_defaults(stores / "faiss.py", "__init__")), "FaissStore declares a setting's default again"
    assert not options & set(_literal_defaults(stores / "faiss_index.py", "IndexSettings"))
    assert "ef_search" not in _literal_defaults(stores / "chroma.py", "__init__")


def test_ingest_and_embedder_defaults_come_from_the_settings():
    from kbqa.ingest.pipeline import Ingestor
    from kbqa.retrieval.embedders.factory import make_embedder

    signature = inspect.signature(Ingestor).parameters
    ingest = IngestSettings()
    for name in ("batch_chunks", "workers", "file_timeout_s", "redact_pii", "strip_injections", "ocr", "ocr_dpi"):
        assert signature[name].default == getattr(ingest, name), name
    assert not set(IngestSettings.model_fields) & set(_literal_defaults(ROOT / "ingest" / "pipeline.py", "__init__"))
    embedder = inspect.signature(make_embedder).parameters
    assert [embedder[n].default for n in ("device", "batch_size", "precision")] == [
        EmbedderSettings().device,
        EmbedderSettings().batch_size,
        EmbedderSettings().precision,
    ]
    assert not _literal_defaults(ROOT / "retrieval" / "embedders" / "factory.py", "make_embedder")


def test_parsers_embedder_backends_and_the_answer_cache_declare_no_settings_default():
    """The parse task, the loaders, the embedder backends and the answer cache take the defaults
    they share with a setting from the settings models, not from a literal of their own."""
    from kbqa.app.answer_cache import AnswerCache
    from kbqa.ingest.loaders.base import load_document
    from kbqa.ingest.loaders.image import load_image
    from kbqa.ingest.loaders.pdf import load_pdf
    from kbqa.ingest.workers import ParseTask
    from kbqa.retrieval.embedders.sentence_transformers import SentenceTransformerEmbedder
    from kbqa.retrieval.embedders.use import UniversalSentenceEncoder

    loaders, embedders = ROOT / "ingest" / "loaders", ROOT / "retrieval" / "embedders"
    owned = [  # (file, function or class, parameters whose default a setting owns)
        (ROOT / "ingest" / "workers.py", "ParseTask", {"ocr", "ocr_dpi"}),
        (loaders / "base.py", "load_document", {"ocr", "ocr_dpi"}),
        (loaders / "pdf.py", "load_pdf", {"ocr", "dpi"}),
        (loaders / "image.py", "load_image", {"ocr"}),
        (embedders / "sentence_transformers.py", "__init__", {"device", "batch_size", "precision"}),
        (embedders / "use.py", "__init__", {"batch_size"}),
        (ROOT / "app" / "answer_cache.py", "__init__", {"max_entries"}),
    ]
    for path, name, params in owned:
        again = params & set(_literal_defaults(path, name))
        assert not again, f"{path.relative_to(ROOT)}: {name} declares the default of {sorted(again)} again"
    ingest, embedder = IngestSettings(), EmbedderSettings()
    task = ParseTask("a.pdf")
    assert (task.ocr, task.ocr_dpi) == (ingest.ocr, ingest.ocr_dpi)
    for function, dpi in ((load_document, "ocr_dpi"), (load_pdf, "dpi")):
        signature = inspect.signature(function).parameters
        assert (signature["ocr"].default, signature[dpi].default) == (ingest.ocr, ingest.ocr_dpi), function.__name__
    assert inspect.signature(load_image).parameters["ocr"].default == ingest.ocr
    backend = inspect.signature(SentenceTransformerEmbedder).parameters
    assert [backend[n].default for n in ("device", "batch_size", "precision")] == [embedder.device, embedder.batch_size, embedder.precision]
    assert UniversalSentenceEncoder().batch_size == embedder.batch_size
    assert AnswerCache().max_entries == LLMSettings().answer_cache


def test_retrieval_k_from_the_environment_reaches_kbqa_serve(sample_kb_dir, tmp_path):
    """The real entry point (`kbqa serve`, its settings built from os.environ): /v1/retrieve
    without a k returns KBQA_RETRIEVAL__K passages; with one, that many."""
    from tests.serve_process import kbqa_serve

    kb = tmp_path / "kb"
    shutil.copytree(sample_kb_dir, kb)
    assert RetrievalSettings().k != 3  # so that the default cannot pass for the environment's value
    with kbqa_serve([f"sample={kb}"], tmp_path / "serve.log", env={"KBQA_RETRIEVAL__K": "3"}) as served:
        question = {"kb": "sample", "query": "Cloudgate Tunnel"}
        default = httpx.post(f"{served.url}/v1/retrieve", json=question, timeout=300)
        asked = httpx.post(f"{served.url}/v1/retrieve", json={**question, "k": 6}, timeout=300)
    assert default.status_code == 200, default.text
    assert len(default.json()["results"]) == 3
    assert len(asked.json()["results"]) == 6
