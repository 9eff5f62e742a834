"""Property tests: random bytes and random Unicode never crash or hang the loaders, the
cleaner, the splitter, the BM25 tokenizer or the redactor. A loader may refuse input, but
only with a LoadError that names the file and a reason."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from kbqa.ingest.clean import clean_text
from kbqa.ingest.errors import LoadError
from kbqa.ingest.loaders import load_document, supported_extensions
from kbqa.ingest.redact import redact
from kbqa.ingest.split import split_text
from kbqa.retrieval.tokenize import bm25_tokens

BOUNDED = hsettings(max_examples=40, deadline=timedelta(seconds=20), suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# byte strings that look a little like each format, so the parsers get past their first check
PREFIXES = [b"", b"%PDF-1.4\n", b"PK\x03\x04", b"<html><body>", b"\xef\xbb\xbf", b"\xff\xfe", b"# title\n"]


@BOUNDED
@given(ext=st.sampled_from(supported_extensions()), prefix=st.sampled_from(PREFIXES), body=st.binary(max_size=4096))
def test_loaders_take_random_bytes(ext, prefix, body):
    path = Path(f"random{ext}")
    try:
        pages = load_document(path, prefix + body)
    except LoadError as exc:
        assert exc.path == str(path) and exc.reason
        return
    assert all(isinstance(p.text, str) for p in pages)


@BOUNDED
@given(ext=st.sampled_from([".txt", ".md", ".html"]), text=st.text(max_size=3000))
def test_text_loaders_take_random_unicode(ext, text):
    try:
        pages = load_document(Path(f"random{ext}"), text.encode("utf-8", "surrogatepass"))
    except LoadError as exc:
        assert exc.reason
        return
    assert all(isinstance(p.text, str) for p in pages)


@pytest.fixture(scope="module")
def counter(embedder):
    embedder.count_tokens(["warm up"])  # load the tokenizer outside the per-example deadline
    return embedder


@BOUNDED
@given(text=st.text(max_size=4000), chunk=st.integers(16, 120), overlap=st.integers(0, 40))
def test_clean_and_split_random_unicode(counter, text, chunk, overlap):
    embedder = counter
    cleaned = clean_text(text)
    pieces = split_text(cleaned, embedder.count_tokens, chunk, overlap)
    assert all(p and p == p.strip() for p in pieces)
    if cleaned.strip():
        assert pieces  # text in, chunks out
    counts = embedder.count_tokens(pieces) if pieces else []
    assert all(n <= chunk + 8 for n in counts), list(zip(counts, pieces))  # a little slack: tokens at joins


@BOUNDED
@given(text=st.text(max_size=4000))
def test_bm25_tokenizer_and_redactor_random_unicode(text):
    tokens = bm25_tokens(text)
    assert all(isinstance(t, str) and t for t in tokens)
    redacted, counts = redact(text)
    assert isinstance(redacted, str) and all(n > 0 for n in counts.values())


@pytest.mark.parametrize("size", [200_000])
def test_long_runs_without_separators(embedder, size):
    """One 'word' of 200k characters, and 200k CJK characters with no punctuation."""
    for text in ("x" * size, "蓝" * size, "\u200b" * size + "a"):
        pieces = split_text(clean_text(text), embedder.count_tokens, 120, 20)
        assert pieces or not clean_text(text)
        assert bm25_tokens(text) is not None
