"""The answer queue is bounded: beyond `max_pending`, requests are refused (503), and every
way a stream can end frees its place. Pure admission logic, with a stand-in knowledge base."""

from __future__ import annotations

import pytest

from kbqa.app.service import Busy, QAService
from kbqa.app.settings import Settings
from kbqa.retrieval.retriever import Retrieval


class _FakeKB:
    path = "fake"

    def stream_with_sources(self, question, **kwargs):
        return Retrieval([], True), iter(["a", "b"])


def _service(n):
    return QAService({"kb": _FakeKB()}, Settings(), max_pending=n)


def test_refuses_beyond_the_bound_and_frees_places():
    service = _service(2)
    first = service.stream("kb", "q1")
    second = service.stream("kb", "q2")
    with pytest.raises(Busy):
        service.stream("kb", "q3")
    assert "".join(first.tokens) == "ab"  # read to the end: place freed
    third = service.stream("kb", "q3")
    second.tokens.close()  # closed early (client gone): place freed
    fourth = service.stream("kb", "q4")
    with pytest.raises(Busy):
        service.stream("kb", "q5")
    del third, fourth  # dropped unread: places freed
    import gc

    gc.collect()
    assert "".join(service.stream("kb", "q6").tokens) == "ab"
