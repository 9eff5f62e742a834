"""Ingestion: files -> text pages -> clean chunks -> embeddings in the knowledge base's stores."""
