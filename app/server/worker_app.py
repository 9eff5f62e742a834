"""`kbqa serve --workers N`: N uvicorn worker processes behind one port.

Each worker builds its own app (its own models) from the parent's arguments, passed in an
environment variable, since uvicorn starts workers from an import string. Several workers
should share a Chroma server (``store.chroma_url``): an embedded Chroma directory is not
safe for writes from several processes. `--max-pending` applies to each worker, and
``/metrics`` adds up the counts of all of them (each keeps its own in a shared temporary folder).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, replace

SPEC_ENV = "KBQA_SERVE_WORKER_SPEC"
log = logging.getLogger("kbqa.serve")


def serve_workers(args, settings, config, workers: int) -> int:
    import uvicorn

    if settings.store.backend == "chroma" and not settings.store.chroma_url:
        log.warning(
            "--workers %d with an embedded Chroma store: fine for questions, but upload through one process only; "
            "for several writers run a Chroma server (chroma run) and set store.chroma_url",
            workers,
        )
    if config.ui:
        log.warning(
            "the chat UI (Gradio) keeps each session in one worker: with --workers %d put a sticky-session proxy in front, "
            "or serve the UI from a single-worker process and the API (--no-ui) from the workers",
            workers,
        )
    shared = tempfile.mkdtemp(prefix="kbqa-metrics-")  # each worker's counts, added up by /metrics
    spec = {
        "kbs": list(args.kb),
        "settings": settings.model_dump(mode="json", exclude_unset=True),
        "keys": args.keys,
        "config": asdict(replace(config, metrics_dir=shared)),
        "warm_up": bool(args.warm_up),
        "max_pending": args.max_pending,
    }
    os.environ[SPEC_ENV] = json.dumps(spec)
    where = f"http://{config.host}:{config.port}"
    log.info("serving with %d workers (each takes up to %d answers at once): API docs %s/docs  OpenAI base_url %s/v1", workers, args.max_pending, where, where)
    try:
        uvicorn.run("kbqa.app.server.worker_app:create_app_from_env", factory=True, host=config.host, port=config.port, workers=workers, log_level="info")
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return 0


def create_app_from_env():
    """uvicorn's factory in each worker process."""
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.server.auth import load_keyring
    from kbqa.app.service import QAService
    from kbqa.app.settings import Settings

    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise RuntimeError(f"{SPEC_ENV} is not set: start workers with `kbqa serve --workers N`")
    spec = json.loads(raw)
    settings = Settings.model_validate(spec["settings"])
    config = ServerConfig(**spec["config"])
    service = QAService.open(spec["kbs"], settings, max_upload_bytes=config.max_upload_bytes, max_pending=spec["max_pending"])
    if spec["warm_up"]:
        service.warm_up()
    return build_app(service, load_keyring(spec["keys"]), config)
