"""`kbqa serve`: the REST API (FastAPI) with the Gradio chat mounted at /ui, in one process.

Imports are lazy: importing the package loads neither FastAPI nor the UI until an app is
built. Nothing in `app/` below the server imports it (`app.service` takes its upload checks
from `app.uploads`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kbqa.app.server.api import ServerConfig
    from kbqa.app.server.auth import KeyRing
    from kbqa.app.service import QAService


def build_app(service: "QAService", keyring: "KeyRing | None" = None, config: "ServerConfig | None" = None):
    """The API, plus the chat UI mounted at ``config.ui_path`` unless ``config.ui`` is False."""
    from kbqa.app.server.api import ServerConfig, create_app
    from kbqa.app.server.auth import KeyRing

    keyring = keyring or KeyRing([])
    config = config or ServerConfig(max_upload_bytes=service.max_upload_bytes)
    app = create_app(service, keyring, config)
    if config.ui:
        from kbqa.app.server.ui import mount_ui

        app = mount_ui(app, service, keyring, path=config.ui_path, max_upload_bytes=config.max_upload_bytes)
    return app


def __getattr__(name: str):
    if name in ("ServerConfig", "create_app"):
        from kbqa.app.server import api

        return getattr(api, name)
    raise AttributeError(name)


__all__ = ["ServerConfig", "build_app", "create_app"]
