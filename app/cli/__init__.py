"""Command-line entry points: `ingest` and `kbqa`."""
