"""Vector stores behind the `VectorStore` protocol; `make_store` picks one from settings."""

from kbqa.retrieval.stores.factory import make_store

__all__ = ["make_store"]
