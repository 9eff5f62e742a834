"""A short, bounded form of bench/load_test.py: concurrent retrieval and chat against a real
uvicorn server on 127.0.0.1 while an upload is ingested. It checks that every request is
answered without error and the run ends by itself (no latency thresholds)."""
from __future__ import annotations

import os

from bench.load_test import run_load
from tests.conftest import SAMPLE
from tests.live_server import running


def test_short_load_run_has_no_errors(tmp_path, settings, sample_kb_dir):
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.service import QAService

    s = settings.with_overrides({"llm.max_new_tokens": 4})
    service = QAService.open([f"sample={sample_kb_dir}", f"uploads={tmp_path / 'uploads'}"], s)
    app = build_app(service, None, ServerConfig(ui=False))
    with running(app) as url:
        result = run_load(
            url, clients=3, duration_s=6, chat_every=4, upload=("faq.md", (SAMPLE / "faq_zh.md").read_bytes()),
            upload_kb="uploads", server_pid=os.getpid(), max_tokens=4, request_timeout_s=300,
        )
    assert result["errors"] == 0, result["kinds"]
    kinds = result["kinds"]
    assert kinds["retrieve"]["requests"] >= 3 and kinds["retrieve"]["p50_ms"] is not None
    assert kinds["upload"]["requests"] == 1 and kinds["upload"]["statuses"] == {"200": 1}
    assert "chat" in kinds and kinds["chat"]["statuses"].keys() == {"200"}
    assert result["memory"] and result["rss_mb_max"] >= result["rss_mb_start"] > 0
    assert service.documents("uploads")  # the upload landed
