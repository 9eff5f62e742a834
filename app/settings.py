"""One typed settings object for the whole application.

Each part owns its sections, with their defaults (declared once): `kbqa.retrieval.config`
(embedder, store, retrieval, llm, answer) and `kbqa.ingest.config` (chunking, ingest). This
module composes them into the one `Settings` tree and re-exports the section models, so that
``from kbqa.app.settings import RetrievalSettings`` keeps working.

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
from typing import Any

from pydantic import Field, ValidationError

from kbqa.ingest.config import ChunkingSettings, IngestSettings
from kbqa.retrieval.config import AnswerSettings, EmbedderSettings, LLMSettings, RetrievalSettings, Section, StoreSettings

__all__ = [
    "AnswerSettings",
    "ChunkingSettings",
    "EmbedderSettings",
    "IngestSettings",
    "LLMSettings",
    "RetrievalSettings",
    "Settings",
    "SettingsError",
    "StoreSettings",
]

ENV_PREFIX = "KBQA_"


class Settings(Section):
    """The whole tree: one section per part's settings model, plus where caches go."""

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
                dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
                if dotted.split(".")[0] not in cls.model_fields:
                    continue  # another kbqa variable (e.g. KBQA_SERVE_WORKER_SPEC), not a setting
                _set_dotted(data, dotted, _env_value(key, value))
        for dotted, value in (overrides or {}).items():
            if value is not None:
                _set_dotted(data, dotted, value)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            raise SettingsError(f"invalid settings: {problems}") from exc

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """A validated copy with dotted keys set (``{"retrieval.k": 8}``); None values are skipped. Raises SettingsError for a key
        under a value that is not a section, pydantic's ValidationError for an invalid value."""
        data = self.model_dump()
        for dotted, value in overrides.items():
            if value is not None:
                _set_dotted(data, dotted, value)
        return type(self).model_validate(data)


class SettingsError(ValueError):
    """A config file, environment variable or override that cannot be read or validated; the message names it."""


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
