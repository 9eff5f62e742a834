"""Process-wide switches that keep kbqa offline: no hub downloads, no telemetry."""
from __future__ import annotations

import os

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
