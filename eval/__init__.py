"""Evaluation: retrieval and answer metrics (pure functions) and the harness built on them."""
