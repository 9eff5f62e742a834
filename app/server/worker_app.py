"""`kbqa serve --workers N`: N uvicorn worker processes behind one port.

Each worker builds its own app (its own models) from the parent's arguments, passed in an
environment variable, since uvicorn starts workers from an import string. Several workers
should share a Chroma server (``store.chroma_url``): an embedded Chroma directory is not
safe for writes from several processes.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict

SPEC_ENV = "KBQA_SERVE_WORKER_SPEC"
log = logging.getLogger("kbqa.serve")


def serve_workers(args, settings, config, workers: int) -> int:
    import uvicorn

    if settings.store.backend == "chroma" and not settings.store.chroma_url:
        log.warning(
            "--workers %d with an embedded Chroma store: fine for questions, but upload through one process only; "
            "for several writers run a Chroma server (chroma run) and set store.chroma_url", workers
        )
    if config.ui:
        log.warning(
            "the chat UI (Gradio) keeps each session in one worker: with --workers %d put a sticky-session proxy in front, "
            "or serve the UI from a single-worker process and the API (--no-ui) from the workers", workers
        )
    spec = {
        "kbs": list(args.kb),
        "settings": settings.model_dump(mode="json", exclude_unset=True),
        "keys": args.keys,
        "config": asdict(config),
        "warm_up": bool(args.warm_up),
    }
    os.environ[SPEC_ENV] = json.dumps(spec)
    where = f"http://{config.host}:{config.port}"
    log.info("serving with %d workers: API docs %s/docs  OpenAI base_url %s/v1", workers, where, where)
    uvicorn.run("app.server.worker_app:create_app_from_env", factory=True, host=config.host, port=config.port, workers=workers, log_level="info")
    return 0


def create_app_from_env():
    """uvicorn's factory in each worker process."""
    from app.server import ServerConfig, build_app
    from app.server.auth import load_keyring
    from app.service import QAService
    from app.settings import Settings

    raw = os.environ.get(SPEC_ENV)
    if not raw:
        raise RuntimeError(f"{SPEC_ENV} is not set: start workers with `kbqa serve --workers N`")
    spec = json.loads(raw)
    settings = Settings.model_validate(spec["settings"])
    config = ServerConfig(**spec["config"])
    service = QAService.open(spec["kbs"], settings, max_upload_bytes=config.max_upload_bytes)
    if spec["warm_up"]:
        service.warm_up()
    return build_app(service, load_keyring(spec["keys"]), config)
