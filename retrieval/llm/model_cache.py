"""The packaged SmolLM2 GGUF, dequantized once and cached as a normal model folder.

transformers loads GGUF files with ``gguf_file=`` (dequantizing, about 15 s) but refuses
``save_pretrained`` on such a model, so we save config, tokenizer and the state dict
(safetensors) ourselves; later loads take a few seconds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from kbqa.retrieval.packaged import PACKAGED_LLM, smollm2_gguf

log = logging.getLogger(__name__)
CACHED_NAME = "smollm2-135m-instruct"


def packaged_model_dir(cache_dir: Path) -> Path:
    """Return a folder that `from_pretrained` loads; build it on first use."""
    target = Path(cache_dir) / "models" / CACHED_NAME
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    gguf = smollm2_gguf()
    log.warning("first use of the packaged model: dequantizing %s (about 15 s, cached in %s)", gguf.name, target)
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".building-"))
    try:
        model.config.save_pretrained(tmp)
        if model.generation_config is not None:
            model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def local_model_path(model: str, cache_dir: Path) -> str:
    """`llm.model` as a folder `from_pretrained` (or vLLM) loads: the packaged SmolLM2's
    cached folder for "smollm2", else the local model folder it names."""
    if model == PACKAGED_LLM:
        return str(packaged_model_dir(cache_dir))
    path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"llm.model: {model!r} is neither the packaged {PACKAGED_LLM!r} nor a local model folder")
    return str(path)
