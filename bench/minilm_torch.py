"""all-MiniLM-L6-v2 document embeddings with nothing but torch, for a GPU machine that has only torch.

Used by bench/retrieval_quality.py to embed the large benchmark corpora (SciFact: ~25k chunks
for ours and the peer) once on a GPU instead of for hours on a shared 2-core CPU. The forward
pass is the plain BERT encoder + mean pooling + L2 normalisation that sentence-transformers
runs for this model; `check` compares it with sentence-transformers on CPU.

    python bench/minilm_torch.py embed  IN.npz WEIGHTS.safetensors OUT.npy     (GPU machine)
    python bench/minilm_torch.py check                                          (here)

IN.npz holds `ids` (all token ids, uint16, concatenated) and `lengths` (per text), made by
bench/retrieval_quality.py with the model's own tokenizer (truncation at 256 tokens).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

LAYERS, HEADS, HIDDEN, EPS = 6, 12, 384, 1e-12


def load_weights(path: str, device: str) -> dict[str, torch.Tensor]:
    if path.endswith(".pt"):  # a plain torch state dict (the GPU machine may lack safetensors)
        state = torch.load(path, map_location="cpu")
    else:
        from safetensors.torch import load_file

        state = load_file(path)
    return {k.removeprefix("bert."): v.to(device=device, dtype=torch.float32) for k, v in state.items()}


def encode(w: dict[str, torch.Tensor], ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ids, mask: (batch, seq) -> unit vectors (batch, 384)."""
    ln = torch.nn.functional.layer_norm
    b, n = ids.shape
    pos = torch.arange(n, device=ids.device)
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][pos][None] + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, (HIDDEN,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], EPS)
    bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    d = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def lin(t, name):
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin(x, f"attention.self.{m}").view(b, n, HEADS, d).transpose(1, 2) for m in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + bias, dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, n, HIDDEN)
        x = ln(x + lin(ctx, "attention.output.dense"), (HIDDEN,), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], EPS)
        h = torch.nn.functional.gelu(lin(x, "intermediate.dense"))
        x = ln(x + lin(h, "output.dense"), (HIDDEN,), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], EPS)
    m = mask[..., None].float()
    pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def embed_arrays(ids: np.ndarray, lengths: np.ndarray, weights: str, device: str, batch: int = 512) -> np.ndarray:
    w = load_weights(weights, device)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(-lengths)  # similar lengths together: less padding
    out = np.zeros((len(lengths), HIDDEN), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(order), batch):
            idx = order[s : s + batch]
            n = int(lengths[idx].max())
            t = np.zeros((len(idx), n), dtype=np.int64)
            mk = np.zeros((len(idx), n), dtype=np.int64)
            for r, j in enumerate(idx):
                L = int(lengths[j])
                t[r, :L] = ids[starts[j] : starts[j] + L]
                mk[r, :L] = 1
            out[idx] = encode(w, torch.from_numpy(t).to(device), torch.from_numpy(mk).to(device)).cpu().numpy()
    return out


def main(argv: list[str]) -> int:
    if argv[0] == "embed":
        data = np.load(argv[1])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        vectors = embed_arrays(data["ids"].astype(np.int64), data["lengths"].astype(np.int64), argv[2], device)
        np.save(argv[3], vectors.astype(np.float16))
        print(f"embedded {len(vectors)} texts on {device}")
        return 0
    if argv[0] == "check":
        from sentence_transformers import SentenceTransformer

        from kbqa.retrieval.packaged import minilm_dir

        texts = ["The railway opened in 1911.", "大熊猫主要以竹子为食。", "word " * 400]
        st = SentenceTransformer(str(minilm_dir()), device="cpu")
        ref = st.encode(texts, normalize_embeddings=True)
        enc = st.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"]
        ids = np.array([i for e in enc for i in e], dtype=np.uint16)
        mine = embed_arrays(ids.astype(np.int64), np.array([len(e) for e in enc]), str(minilm_dir() / "model.safetensors"), "cpu")
        cos = (ref * mine).sum(1)
        print("cosine with sentence-transformers:", cos)
        return 0 if cos.min() > 0.999 else 1
    raise SystemExit(__doc__)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
