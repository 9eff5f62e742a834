"""A small real HTTP server speaking OpenAI's streaming chat completions, that misbehaves on
purpose (tests/test_faults.py, the fair-queue test). Set `server.mode`:

- ``ok``: the answer in a few SSE chunks, a last chunk with ``finish_reason``, ``[DONE]``;
- ``drop``: two chunks of the answer, then the socket is closed mid-body (chunked encoding, so
  the client sees a broken body, not an end);
- ``stall``: one chunk, then silence for `stall_s` (longer than the client's timeout);
- ``hold``: one chunk, then nothing until `release` is set, then the rest of ``ok``.

`requests` counts the chat requests received.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = ["The Lanshan Mountain Railway ", "opened in ", "1898 ", "[1]."]


def _event(piece: str | None, finish: str | None = None) -> bytes:
    delta = {"content": piece} if piece is not None else {}
    body = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        server = self.server
        with server.lock:
            server.requests += 1
        mode = server.mode
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(_event(ANSWER[0]))
        if mode == "drop":
            self._chunk(_event(ANSWER[1]))
            self.connection.shutdown(socket.SHUT_RDWR)  # no terminating chunk: a broken body
            self.close_connection = True
            return
        if mode == "stall":
            time.sleep(server.stall_s)
            self.close_connection = True
            return
        if mode == "hold":
            server.release.wait(300)
        for piece in ANSWER[1:]:
            self._chunk(_event(piece))
        self._chunk(_event(None, "stop"))
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@contextmanager
def misbehaving_llm(mode: str = "ok", stall_s: float = 8.0):
    """Serve on 127.0.0.1 until the block ends; yields the server (``server.url`` is the base URL)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mode, server.stall_s, server.requests = mode, stall_s, 0
    server.lock, server.release = threading.Lock(), threading.Event()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
