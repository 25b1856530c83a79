"""The peers' side of ``bench_peers.py``: runs in the peers' environment (``make bench-peers``).

Reads one JSON request per line on stdin and answers one JSON line on stdout, so the
benchmark can interleave the project's timings with the peers' in one run:

* ``{"op": "encode", "texts": <.json list>, "out": <.npy>, "precision": "float32"|"bfloat16",
  "batch_size": 64}``: sentence-transformers on PyTorch CPU, the same checkpoint directory,
  mean pooling, L2-normalised (bfloat16 through ``torch.autocast``); answers ``{"seconds"}``.
* ``{"op": "matmul", "precision": ..., "shape": [m, k, n]}``: PyTorch's best flop/s for one
  ``(m, k) @ (k, n)`` matmul in that precision -> ``{"flops": ...}``;
* ``{"op": "faiss_index", "items": <.npy>}``: builds ``faiss.IndexFlatIP`` (exact inner
  product) over the rows; answers ``{"build_seconds"}``.
* ``{"op": "faiss_search", "queries": <.npy>, "k": 10, "out": <.npy>, "min_seconds": 0.5}``:
  searches all queries at once, repeated until ``min_seconds`` have passed after one untimed
  call; answers ``{"qps"}`` and writes the ids of the last call.

No import of the project: the peers live in their own environment (PyTorch next to
TensorFlow is the conflict this avoids).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def main(model_dir: str, max_length: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = max_length
    versions = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    import sentence_transformers
    versions["sentence-transformers"] = sentence_transformers.__version__
    try:
        import faiss
        versions["faiss"] = faiss.__version__
    except ImportError:
        faiss = None
    print(json.dumps({"ready": True, **versions}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "encode":
            texts = json.load(open(request["texts"]))
            bf16 = request["precision"] == "bfloat16"
            start = time.perf_counter()
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                vectors = model.encode(texts, batch_size=request.get("batch_size", 64),
                                       normalize_embeddings=True, convert_to_numpy=True)
            seconds = time.perf_counter() - start
            np.save(request["out"], vectors.astype(np.float32))
            print(json.dumps({"seconds": seconds}), flush=True)
        elif request["op"] == "matmul":
            dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[request["precision"]]
            m, k, n = request["shape"]
            a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
            best = float("inf")
            with torch.inference_mode():
                a @ b  # threads up
                for _ in range(request.get("repeats", 20)):
                    start = time.perf_counter()
                    a @ b
                    best = min(best, time.perf_counter() - start)
            print(json.dumps({"flops": 2.0 * m * k * n / best}), flush=True)
        elif request["op"].startswith("faiss") and faiss is None:
            print(json.dumps({"error": "faiss is not installed"}), flush=True)
        elif request["op"] == "faiss_index":
            items = np.ascontiguousarray(np.load(request["items"]), dtype=np.float32)
            start = time.perf_counter()
            index = faiss.IndexFlatIP(items.shape[1])
            index.add(items)
            print(json.dumps({"build_seconds": time.perf_counter() - start}), flush=True)
        elif request["op"] == "faiss_search":
            queries = np.ascontiguousarray(np.load(request["queries"]), dtype=np.float32)
            index.search(queries, request["k"])  # untimed: threads and caches warm
            calls, start = 0, time.perf_counter()
            while True:
                _, ids = index.search(queries, request["k"])
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= request.get("min_seconds", 0.5):
                    break
            np.save(request["out"], ids)
            print(json.dumps({"qps": calls * len(queries) / elapsed}), flush=True)
        else:
            print(json.dumps({"error": f"unknown op {request['op']!r}"}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
