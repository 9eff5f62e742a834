"""A real `kbqa serve` subprocess on 127.0.0.1 for the fault and security tests: started,
waited for (/healthz), and stopped (or found already killed) when the block ends."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.live_server import free_port


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def kbqa_serve(kbs: list[str], log: Path, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
    """`kbqa serve --kb ... --no-ui --no-warm-up ARGS` with `env` over os.environ; yields `Served`."""
    port = free_port()
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", KBQA_LLM__MAX_NEW_TOKENS="8")
    full_env.pop("KBQATEST_CRASH_AT", None)
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "kbqa.app.cli.kbqa_main", "serve", "--port", str(port), "--no-ui", "--no-warm-up", *args]
    for kb in kbs:
        cmd += ["--kb", kb]
    out = open(log, "w", encoding="utf-8")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)
    served = Served(f"http://127.0.0.1:{port}", proc, log)
    try:
        while True:  # bounded by pytest's timeout; fails fast if the server exits
            if proc.poll() is not None:
                raise RuntimeError(f"kbqa serve exited with {proc.returncode}:\n{served.log_text()[-3000:]}")
            try:
                if httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        out.close()
