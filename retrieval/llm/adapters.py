"""LoRA adapters registered by name, and picking one per request.

Settings hold ``llm.adapters = {name = "path/to/adapter"}`` and optionally a default
``llm.adapter`` (a registered name or a folder). A request names an adapter, or
``"base"`` for the model without any adapter. Backends that serve adapters expose
``for_adapter(name) -> LLM``: a cheap view that shares the loaded base model.

The API's ``model`` field carries both the knowledge base and the adapter as
``"kb:adapter"`` (``"kb"`` alone means the default adapter); see `parse_model_field`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbqa.retrieval.protocols import LLM

BASE = "base"  # the model with every adapter disabled
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class AdapterSpec:
    name: str  # the name a request uses
    path: str  # the adapter folder (transformers, vllm) or "" when only the server knows it (openai)

    @property
    def module_name(self) -> str:
        """A name peft accepts as a module key (no dots), unique per folder, so that two
        registries may use one name for different folders on a shared base model."""
        digest = hashlib.sha1(self.path.encode("utf-8")).hexdigest()[:8]
        return f"kbqa_{re.sub(r'[^A-Za-z0-9_]', '_', self.name)}_{digest}"


class AdapterRegistry:
    """Adapters by name, plus the default one (None = the base model)."""

    def __init__(self, adapters: Mapping[str, str] | None = None, default: str | None = None, *, check_paths: bool = True):
        self._specs: dict[str, AdapterSpec] = {}
        for name, path in (adapters or {}).items():
            if not _NAME.match(name) or name == BASE:
                raise ValueError(f"llm.adapters: invalid adapter name {name!r} (letters, digits, '_', '.', '-'; not {BASE!r})")
            if check_paths and not Path(path).expanduser().is_dir():
                raise FileNotFoundError(f"llm.adapters.{name}: adapter folder {path!r} not found")
            self._specs[name] = AdapterSpec(name, str(Path(path).expanduser()) if path else "")
        self.default: AdapterSpec | None = None
        if default and default != BASE:
            if default in self._specs:
                self.default = self._specs[default]
            elif Path(default).expanduser().is_dir():
                # a folder given as the default answers requests that name no adapter; it is not
                # listed among the named adapters (register it in llm.adapters to name it)
                name = _unique_name(Path(default).name, self._specs)
                self.default = AdapterSpec(name, str(Path(default).expanduser()))
            elif not check_paths:
                self.default = self._specs.setdefault(default, AdapterSpec(default, ""))
            else:
                raise FileNotFoundError(f"llm.adapter: {default!r} is neither a registered adapter ({self.names()}) nor an adapter folder")

    def names(self) -> list[str]:
        return sorted(self._specs)

    def resolve(self, name: str | None) -> AdapterSpec | None:
        """None -> the default adapter; "base" -> no adapter; otherwise a registered name."""
        if name is None:
            return self.default
        if name == BASE:
            return None
        if name not in self._specs:
            known = ", ".join([BASE, *self.names()])
            raise KeyError(f"unknown adapter {name!r} (known: {known}; register adapters in llm.adapters)")
        return self._specs[name]

    def int_id(self, spec: AdapterSpec) -> int:
        """A stable positive integer per adapter (vLLM's LoRARequest wants one)."""
        names = self.names()
        return names.index(spec.name) + 1 if spec.name in names else len(names) + 1


def _unique_name(stem: str, taken: Mapping[str, object]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "adapter"
    name, n = base, 2
    while name in taken or name == BASE:
        name, n = f"{base}-{n}", n + 1
    return name


def adapter_view(llm, name: str | None):
    """A shallow copy of backend `llm` answering with adapter `name` ("base" = none,
    None = its default); it shares the loaded model. Backends keep `registry`,
    `adapter_spec` and `adapter`."""
    import copy

    view = copy.copy(llm)
    view.adapter_spec = llm.registry.resolve(name)
    view.adapter = view.adapter_spec.name if view.adapter_spec else None
    return view


def select_adapter(llm: "LLM", adapter: str | None) -> "LLM":
    """The LLM that answers with `adapter` (None = the backend's default)."""
    if adapter is None:
        return llm
    for_adapter = getattr(llm, "for_adapter", None)
    if for_adapter is None:
        raise ValueError(f"the LLM backend {type(llm).__name__} does not serve LoRA adapters (asked for {adapter!r})")
    return for_adapter(adapter)


def parse_model_field(model: str | None) -> tuple[str | None, str | None]:
    """``"kb:adapter"`` -> (kb, adapter); ``"kb"`` -> (kb, None); ``":adapter"`` -> (None, adapter)."""
    if not model:
        return None, None
    kb, sep, adapter = model.strip().partition(":")
    if sep and not adapter:
        raise ValueError(f"model {model!r}: empty adapter name after ':' (use 'kb', 'kb:adapter' or 'kb:{BASE}')")
    return (kb or None), (adapter or None)
