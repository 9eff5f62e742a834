"""kbqa installed from its wheel (not editable), used from a directory outside the checkout.

The wheel is built from this checkout and installed with ``--no-deps`` into a fresh venv
whose dependencies come from the test venv's site-packages (a ``.pth`` line; the editable
install's finder there is not run). Then `ingest`, `kbqa ask` and `kbqa serve` run from a
temporary directory: the shipped reader and adapter must come from the installed package,
and the install must not add the top-level names `app` or `eval` that other projects use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, SAMPLE
from live_server import free_port


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((work / "dist").glob("kbqa-*.whl"))
    env_dir = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=300)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return env_dir


def run(venv: Path, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_package_folder_is_listed_in_pyproject():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {
        f"kbqa.{p.parent.relative_to(ROOT).as_posix().replace('/', '.')}"
        for part in ("app", "ingest", "retrieval", "finetune", "eval")
        for p in (ROOT / part).rglob("__init__.py")
    }
    assert folders | {"kbqa.data"} == set(config["packages"])
    assert all((ROOT / path).is_dir() for path in config["package-dir"].values())


def test_the_wheel_carries_the_shipped_models_and_no_stray_top_level_names(venv, tmp_path):
    code = (
        "import json, kbqa.retrieval.readers.span as s, kbqa.retrieval.packaged as p, importlib.util as u; "
        "print(json.dumps([str(s.SHIPPED_READER), str(p.SHIPPED_ADAPTER), [n for n in ('app', 'eval', 'ingest', 'retrieval', 'finetune') if u.find_spec(n)]]))"
    )
    out = run(venv, "python", "-c", code, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    reader, adapter, stray = json.loads(out.stdout)
    site = str(next((venv / "lib").glob("python3*/site-packages")))
    assert reader.startswith(site) and (Path(reader) / "reader.safetensors").is_file()
    assert adapter.startswith(site) and (Path(adapter) / "adapter_config.json").is_file()
    assert stray == []  # kbqa's parts live under kbqa.*, so `import app` finds another project's app
    assert run(venv, "kbqa", "--version", cwd=tmp_path).stdout.strip() == "kbqa 0.1.0"


def test_ingest_ask_and_serve_from_outside_the_checkout(venv, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLE / "faq_zh.md", docs)
    out = run(venv, "ingest", str(docs), "--kb", "kb", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    out = run(venv, "kbqa", "ask", "多大的儿童可以免票？", "--kb", "kb", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout)
    assert answer["found"] is True and answer["answer_mode"] == "extractive" and "6" in answer["answer"]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [str(venv / "bin" / "kbqa"), "serve", "--kb", "faq=kb", "--port", str(port), "--no-ui"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        body = {"model": "faq", "messages": [{"role": "user", "content": "多大的儿童可以免票？"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert reply["found"] is True and "6" in reply["choices"][0]["message"]["content"]
