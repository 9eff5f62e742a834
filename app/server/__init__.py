"""`kbqa serve`: the REST API (FastAPI) with the Gradio chat mounted at /ui, in one process."""
from __future__ import annotations

from app.server.api import ServerConfig, create_app
from app.server.auth import KeyRing
from app.service import QAService


def build_app(service: QAService, keyring: KeyRing | None = None, config: ServerConfig | None = None):
    """The API, plus the chat UI mounted at ``config.ui_path`` unless ``config.ui`` is False."""
    keyring = keyring or KeyRing([])
    config = config or ServerConfig(max_upload_bytes=service.max_upload_bytes)
    app = create_app(service, keyring, config)
    if config.ui:
        from app.server.ui import mount_ui

        app = mount_ui(app, service, keyring, path=config.ui_path, max_upload_bytes=config.max_upload_bytes)
    return app


__all__ = ["ServerConfig", "build_app", "create_app"]
