"""Process-wide switches that keep kbqa offline (no hub downloads, no telemetry) and its
stderr clean of the libraries' progress bars when it is not a terminal."""

from __future__ import annotations

import os
import sys

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "TOKENIZERS_PARALLELISM": "false",
}


def offline() -> None:
    """Called first thing in each entry point; the user's own values win."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)


def terminal_only_progress() -> None:
    """Called first thing in each CLI: with stderr not a terminal, transformers and
    huggingface_hub draw no progress bars (kbqa's own bars use tqdm's `disable=None`).
    Read when those libraries are imported; the user's own value wins."""
    if sys.stderr is None or not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
