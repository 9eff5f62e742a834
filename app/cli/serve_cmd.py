"""`kbqa serve --kb DIR [--kb NAME=DIR ...]`: the chat UI and the REST API in one process."""

from __future__ import annotations

import argparse
import logging
import sys

from kbqa.app.cli.common import add_settings_flags, fail, settings_from_args

log = logging.getLogger("kbqa.serve")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the chat UI (/ui) and the REST API (/v1, /docs) over one or more knowledge bases")
    p.add_argument(
        "--kb",
        action="append",
        required=True,
        metavar="[NAME=]DIR",
        help="a knowledge base directory (repeatable); named after the directory unless NAME= is given",
    )
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; another address needs API keys)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--keys", help="API keys file (TOML; default $KB_API_KEYS_FILE; inline keys: $KB_API_KEYS)")
    p.add_argument("--max-upload-mb", dest="max_upload_mb", type=float, default=20.0, help="largest accepted upload, in MB (default 20)")
    p.add_argument("--max-pending", dest="max_pending", type=int, default=8, help="answers generated or queued at once; more are refused with 503 (default 8)")
    p.add_argument(
        "--rate-limit",
        dest="rate_limit",
        type=float,
        default=0.0,
        help="requests a minute per API key, more get 429 with Retry-After (default 0: none; a key's rate_limit in the keys file overrides it)",
    )
    p.add_argument("--no-ui", dest="ui", action="store_false", help="serve only the REST API")
    p.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="load models on the first request instead of at start-up")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes behind the port, each with its own models (default 1; share a Chroma server between them)"
    )
    add_settings_flags(p)
    p.set_defaults(func=cmd_serve)


def choose_host(requested: str | None, keys_enabled: bool) -> str:
    """No keys: local-only, bound to 127.0.0.1 whatever was asked (with a warning)."""
    if keys_enabled:
        return requested or "127.0.0.1"
    if requested not in (None, "127.0.0.1", "localhost", "::1"):
        log.warning("no API keys configured: local-only mode, binding 127.0.0.1 instead of %s (configure keys with --keys to serve the network)", requested)
    elif requested is None:
        log.warning("no API keys configured: local-only mode on 127.0.0.1; anyone on this machine may read and change the knowledge bases")
    return "127.0.0.1"


def cmd_serve(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from kbqa.app.server import ServerConfig, build_app
    from kbqa.app.server.auth import KeysError, load_keyring
    from kbqa.app.service import QAService

    settings = settings_from_args(args)
    try:
        keyring = load_keyring(args.keys)
    except KeysError as exc:
        fail(str(exc))
    max_bytes = int(args.max_upload_mb * 1024 * 1024)
    try:
        service = QAService.open(args.kb, settings, max_upload_bytes=max_bytes, max_pending=args.max_pending)
    except ValueError as exc:
        fail(str(exc))
    for name in service.names():  # a server killed mid-upload left a half document: finish it before serving
        if removed := service.kb(name).reconcile():
            log.warning("%s: deleted %d chunks of a document an interrupted ingest left half-written", name, removed)
    for warning in keyring.check_kbs(service.names()):
        log.warning(warning)
    host = choose_host(args.host, keyring.enabled)
    if args.rate_limit < 0:
        fail(f"--rate-limit {args.rate_limit:g}: must be 0 (none) or positive")
    if args.workers < 1:
        fail(f"--workers {args.workers}: need at least 1")
    if args.workers > 1:
        from kbqa.app.server.worker_app import serve_workers

        config = ServerConfig(host=host, port=args.port, max_upload_bytes=max_bytes, ui=args.ui, rate_limit=args.rate_limit)
        return serve_workers(args, settings, config, args.workers)
    if args.warm_up:
        log.info("loading models for %s ...", ", ".join(service.names()))
        service.warm_up()
    config = ServerConfig(host=host, port=args.port, max_upload_bytes=max_bytes, ui=args.ui, rate_limit=args.rate_limit)
    app = build_app(service, keyring, config)

    import uvicorn

    where = f"http://{host}:{args.port}"
    log.info("serving %s: chat %s/ui/  API docs %s/docs  OpenAI base_url %s/v1", ", ".join(service.names()), where, where, where)
    uvicorn.run(app, host=host, port=args.port, log_level="info")
    return 0
