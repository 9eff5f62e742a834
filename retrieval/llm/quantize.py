"""Dynamic int8 Linear layers for CPU inference (``llm.precision = "int8"``), LoRA-compatible.

Every ``nn.Linear`` of the model (the tied ``lm_head`` too, as its own int8 copy; the
input embedding stays fp32) becomes ``torch.ao``'s dynamic int8 Linear with one scale per
output channel: int8 weights, activations quantized per call. LoRA matrices
(``lora_A``/``lora_B``) stay fp32: they are small, and peft owns them.

peft wraps only ``nn.Linear`` layers and reads the weights' device and dtype when it adds
an adapter, so `add_through_stand_ins` hands it fp32 stand-ins (dequantized copies) for the duration
of the call and then puts the very same int8 modules back, in place of the stand-ins,
wherever peft kept them (as a LoRA layer's ``base_layer`` or where they were). The int8
weights are never re-quantized, so adding an adapter does not drift the base model.
"""

from __future__ import annotations

import warnings

_LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")


def _is_lora_part(name: str) -> bool:
    return any(part in name.split(".") for part in _LORA_PARTS)


def _set_child(root, dotted: str, module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _dynamic_linear_class():
    import torch.ao.nn.quantized.dynamic as nnqd

    return nnqd.Linear


def quantize_linears(model, *, lm_head: bool = True) -> int:
    """Swap the model's Linear layers (not LoRA's) for dynamic int8 ones, in place; returns how many."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        from torch.ao.quantization import per_channel_dynamic_qconfig

        qlinear = _dynamic_linear_class()
        targets = [
            (name, module)
            for name, module in model.named_modules()
            if type(module) is torch.nn.Linear and not _is_lora_part(name) and (lm_head or name.rpartition(".")[2] != "lm_head")
        ]
        for name, module in targets:
            if module.weight.device.type != "cpu":
                raise ValueError(f"llm.precision int8: layer {name} is on {module.weight.device}; dynamic int8 runs on the CPU only")
            module.float()
            module.qconfig = per_channel_dynamic_qconfig
            _set_child(model, name, qlinear.from_float(module))
    return len(targets)


def count_int8_linears(model) -> int:
    qlinear = _dynamic_linear_class()
    return sum(isinstance(m, qlinear) for m in model.modules())


def _dequantized(qmodule):
    import torch

    weight, bias = qmodule._weight_bias()
    linear = torch.nn.Linear(qmodule.in_features, qmodule.out_features, bias=bias is not None)
    with torch.no_grad():
        linear.weight.copy_(weight.dequantize())
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def add_through_stand_ins(model, add):
    """``add(model)`` (a peft call that adds an adapter and returns the model, possibly a new
    wrapper object) run while the model's int8 Linear layers are fp32 stand-ins that peft
    can wrap; afterwards the original int8 modules replace the stand-ins wherever peft kept
    them. Returns what ``add`` returned."""
    qlinear = _dynamic_linear_class()
    stand_ins, originals = [], {}  # stand_ins keeps the ids below unique while in use
    for name, module in list(model.named_modules()):
        if isinstance(module, qlinear):
            stand_in = _dequantized(module)
            stand_ins.append(stand_in)
            originals[id(stand_in)] = module
            _set_child(model, name, stand_in)
    result = model
    try:
        result = add(model)
    finally:
        _put_back(result, originals)
    return result


def _put_back(model, originals: dict) -> None:
    for name, module in list(model.named_modules()):
        original = originals.pop(id(module), None)
        if original is not None:
            _set_child(model, name, original)
    if originals:
        raise RuntimeError(f"int8 model: {len(originals)} Linear layer(s) went missing while peft added an adapter")
