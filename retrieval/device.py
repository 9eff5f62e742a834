"""Resolve a device setting ("auto", "cpu", "cuda", "cuda:1") to a torch device string."""

from __future__ import annotations


def resolve_device(setting: str) -> str:
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
