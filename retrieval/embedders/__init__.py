"""Embedders behind the `Embedder` protocol; `make_embedder` picks one from settings."""
from retrieval.embedders.factory import make_embedder

__all__ = ["make_embedder"]
