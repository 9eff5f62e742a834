"""Embedders behind the `Embedder` protocol; `make_embedder` picks one from settings."""

from kbqa.retrieval.embedders.factory import make_embedder, model_name

__all__ = ["make_embedder", "model_name"]
