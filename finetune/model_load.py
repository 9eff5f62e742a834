"""Fine-tuning's model side: find the base model, load it, choose what trains (LoRA adapters
or the last decoder layers), save the result, and fold an adapter into its base (`merge`).
torch, transformers and peft are imported on first use."""

from __future__ import annotations

from pathlib import Path

from kbqa.finetune.config import CONFIG_NAME, ConfigError, TrainConfig


def resolve_model(model: str, cache_dir: str | None = None) -> str:
    """'smollm2' -> the packaged model's cached folder; otherwise a local folder."""
    from kbqa.retrieval.packaged import PACKAGED_LLM

    if model == PACKAGED_LLM:
        from kbqa.retrieval.llm.model_cache import packaged_model_dir

        return str(packaged_model_dir(Path(cache_dir) if cache_dir else Path.home() / ".cache" / "kbqa"))
    if not Path(model).is_dir():
        raise ConfigError(f"model: {model!r} is neither the packaged 'smollm2' nor a local model folder")
    return model


def load_base(path: str, device: str):
    """The base model in fp32 (bf16 comes from autocast on CUDA) and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).to(device)
    return model, tokenizer


def _decoder_layers(model):
    for attr in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj = model
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return obj
    raise ConfigError("mode: freeze and lora_last_layers need a model whose decoder layers are found (model.layers, transformer.h, ...)")


def make_trainable(model, cfg: TrainConfig):
    """LoRA adapters on the chosen linear layers, or only the last n decoder layers unfrozen."""
    if cfg.mode == "lora":
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError as exc:
            raise ImportError("LoRA training needs peft: pip install 'kbqa[finetune]'") from exc
        targets = cfg.target_modules if cfg.target_modules == "all-linear" else [t.strip() for t in cfg.target_modules.split(",")]
        layers = None
        if cfg.lora_last_layers:
            decoder = _decoder_layers(model)
            n = len(decoder)
            if cfg.lora_last_layers > n:
                raise ConfigError(f"lora_last_layers: the model has only {n} layers (got {cfg.lora_last_layers})")
            layers = list(range(n - cfg.lora_last_layers, n))
            if targets == "all-linear":  # peft takes layers_to_transform only with named modules
                import torch

                targets = sorted({name.rsplit(".", 1)[-1] for name, mod in decoder.named_modules() if isinstance(mod, torch.nn.Linear)})
        lora = LoraConfig(
            r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets, layers_to_transform=layers, task_type="CAUSAL_LM"
        )
        return get_peft_model(model, lora)
    layers = _decoder_layers(model)
    if cfg.freeze_last_layers > len(layers):
        raise ConfigError(f"freeze_last_layers: the model has only {len(layers)} layers (got {cfg.freeze_last_layers})")
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in layers[-cfg.freeze_last_layers :]:
        for p in layer.parameters():
            p.requires_grad_(True)
    return model


def trainable_state(model) -> dict:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def _plain(model):
    """Forget a GGUF origin: the packaged model's cached folder holds plain weights, but its config
    still names the GGUF quantization, and transformers refuses to save such a model."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def save_model(model, tokenizer, folder: Path, cfg: TrainConfig) -> None:
    """The adapter (LoRA) or the whole model (freeze), loadable by --adapter / --llm-model."""
    folder.mkdir(parents=True, exist_ok=True)
    if cfg.mode == "freeze":
        _plain(model)
    model.save_pretrained(folder)
    if cfg.mode == "freeze":
        tokenizer.save_pretrained(folder)


def merge(adapter: str | Path, out: str | Path, base: str | None = None, cache_dir: str | None = None) -> Path:
    """Fold a LoRA adapter into its base model and write a plain transformers model folder."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"--adapter {adapter}: no adapter_config.json (not a LoRA adapter folder)")
    if base is None:
        base = TrainConfig.load(adapter).model if (adapter / CONFIG_NAME).is_file() else None
    if base is None:
        raise ConfigError(f"{adapter}: the base model is unknown; pass it (--base)")
    path = resolve_model(base, cache_dir)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    merged = _plain(PeftModel.from_pretrained(model, str(adapter)).merge_and_unload())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(path, local_files_only=True).save_pretrained(out)
    return out
