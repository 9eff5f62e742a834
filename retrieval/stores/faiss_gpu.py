"""Exact search on a CUDA device for the FAISS store: faiss-gpu's flat index when the
installed faiss has GPUs, otherwise a torch fp16 matrix product. torch and faiss are
imported on first use."""

from __future__ import annotations

import numpy as np


def cuda_wanted(device: str) -> bool:
    """Whether `device` ("auto", "cpu", "cuda", "cuda:N") means searching on a CUDA device here."""
    if device == "cpu":
        return False
    import torch

    return torch.cuda.is_available() and (device in {"auto", "cuda"} or device.startswith("cuda:"))


def gpu_searcher(rows: np.ndarray, vectors: np.ndarray, device: str):
    """A function (unit query 1 x dim, k) -> (rows, scores) best first, over these vectors;
    its ``backend`` attribute says "faiss-gpu" or "torch"."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        resources = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(resources, vectors.shape[1])
        index.add(vectors)

        def search(query: np.ndarray, k: int):
            scores, labels = index.search(query, k)
            return [int(rows[i]) for i in labels[0] if i >= 0], [float(s) for s, i in zip(scores[0], labels[0]) if i >= 0]

        search.backend = "faiss-gpu"  # type: ignore[attr-defined]
        search.resources = resources  # type: ignore[attr-defined]
        return search
    import torch

    matrix = torch.from_numpy(vectors).to(device=device, dtype=torch.float16)

    def search(query: np.ndarray, k: int):
        q = torch.from_numpy(query).to(device=device, dtype=torch.float16)
        scores, positions = torch.topk((q @ matrix.T).float(), k, dim=1)
        positions = positions[0].cpu().numpy()
        return [int(rows[i]) for i in positions], scores[0].cpu().tolist()

    search.backend = "torch"  # type: ignore[attr-defined]
    return search
