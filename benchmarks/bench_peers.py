"""Benchmark: the project's text encoder against the library a practitioner would use instead.

    make bench-peers        # creates .venv-peers (PyTorch CPU, sentence-transformers) first
    python benchmarks/bench_peers.py --peer-python .venv-peers/bin/python [--n 1000] [--repeats 3]

The same ~1,000 product texts as ``bench_text.py``, the same MiniLM checkpoint
(the bundled all-MiniLM-L6-v2 directory), batch 64, max_length 128, mean
pooling, L2-normalised, on the same machine in one run:

* the project: ``recsys_utils.text.TextEncoder.encode`` (bucketed, the default
  path), float32 and bfloat16;
* the peer: ``SentenceTransformer(<checkpoint dir>).encode(texts, batch_size=64)``
  on PyTorch CPU, float32 and bfloat16 (``torch.autocast``), run by
  ``benchmarks/peers/peer_server.py`` in the peers' own environment (PyTorch
  next to TensorFlow is the conflict it avoids) and timed inside that process.

Timed in round-robin rounds after a warm-up (a burst of load slows one
repeat of each, not every repeat of one); medians with the min-max spread, the
project / peer ratio per precision, and the worst cosine of every row to the
project's float32 vectors. Then the limit: float operations per text from the
model's size and the padded token counts, against this machine's best float32
matrix multiply (measured: vendor peaks depend on FMA units and SMT a VM hides),
and the rate each framework's matmul kernels reach at the encoder's layer shape in
each precision (how much of the gap is the kernels, how much the rest of the path).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
from recsys_utils import metrics, text
from recsys_utils.bert_checkpoint import default_checkpoint_dir

from _common import gemm_flops, hardware_line, loadavg
from _peers import Peer
from bench_text import product_texts

PRECISIONS = ("float32", "bfloat16")


def tf_matmul_flops(precision: str, shape: tuple[int, int, int], repeats: int = 20) -> float:
    """TensorFlow's best flop/s for one ``(m, k) @ (k, n)`` matmul in ``precision``: the rate
    its kernel (oneDNN on a CPU) reaches at the encoder's layer shape. One eager op, result
    left in place (a ``tf.function`` call or a copy to NumPy would add ~1 ms to a 3 ms op)."""
    import tensorflow as tf

    m, k, n = shape
    dtype = tf.as_dtype(precision)
    a, b = (tf.cast(tf.random.normal(s, seed=0), dtype) for s in ((m, k), (k, n)))
    tf.matmul(a, b)  # threads up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.matmul(a, b)  # synchronous on a CPU
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def flops_per_text(encoder: text.TextEncoder, texts: list[str], batch_size: int) -> float:
    """Multiply-adds x 2 per text for the bucketed batches the project runs (padding included).

    Per token and layer: the four attention projections (4 h^2) and the feed-forward
    (2 h f); per layer and sequence the attention scores and mix (2 L^2 h).
    """
    config = encoder.backbone.get_config()
    h, f, layers = config["hidden_dim"], config["intermediate_dim"], config["num_layers"]
    total = 0.0
    for _, ids, _ in encoder.batches(texts, batch_size=batch_size):
        b, length = ids.shape
        total += b * layers * (length * (4 * h * h + 2 * h * f) + 2 * length * length * h)
    return 2.0 * total / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-python", default=".venv-peers/bin/python",
                        help="python of the peers' environment (make bench-peers creates it)")
    parser.add_argument("--n", type=int, default=1000, help="number of texts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    args = parser.parse_args()
    if not Path(args.peer_python).exists():  # exit 0, so that `make bench` goes on
        print(f"{args.peer_python} not found: `make bench-peers` creates the peers' environment "
              "(requirements-peers.txt) and runs this script")
        return

    texts, source = product_texts(args.n)
    print(hardware_line())
    work = Path(tempfile.mkdtemp(prefix="bench_peers_"))  # the texts and vectors the peer reads
    model_dir = default_checkpoint_dir()
    peer = Peer(args.peer_python, model_dir, args.max_length)
    print("peer: " + ", ".join(f"{k} {v}" for k, v in peer.info.items() if k != "ready"))
    encoders = {p: text.load_text_encoder(precision=p, max_length=args.max_length,
                                          batch_size=args.batch_size) for p in PRECISIONS}
    lengths = np.array([len(t) for t in encoders["float32"].tokenize(texts)])
    print(f"{len(texts)} texts from {source}; tokens per text: median {int(np.median(lengths))}, "
          f"p90 {int(np.percentile(lengths, 90))}, max {lengths.max()}; batch {args.batch_size}; "
          f"checkpoint {model_dir}")

    def project(precision: str, subset: list[str]) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        vectors = encoders[precision].encode(subset, progress=False)
        return time.perf_counter() - start, vectors

    def sentence_transformers(precision: str, subset: list[str]) -> tuple[float, np.ndarray]:
        path = work / "subset.json"
        path.write_text(json.dumps(subset))
        out = work / f"peer_{precision}.npy"
        answer = peer.ask(op="encode", texts=str(path), out=str(out), precision=precision,
                          batch_size=args.batch_size)
        return answer["seconds"], np.load(out)

    rows = [("project (TextEncoder, bucketed)", p, project) for p in PRECISIONS]
    rows += [("sentence-transformers", p, sentence_transformers) for p in PRECISIONS]
    for name, precision, run in rows:  # warm-up: every padded shape traced / allocated once
        run(precision, texts)
    rates: dict[tuple[str, str], list[float]] = {(n, p): [] for n, p, _ in rows}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    load_before = loadavg()
    for repeat in range(args.repeats):
        for name, precision, run in rows:
            seconds, vectors[(name, precision)] = run(precision, texts)
            rates[(name, precision)].append(len(texts) / seconds)
        print(f"  repeat {repeat + 1}/{args.repeats}: " + ", ".join(
            f"{n.split(' ')[0]} {p} {rates[(n, p)][-1]:.1f}/s" for n, p, _ in rows), flush=True)
    # The kernels underneath: one feed-forward matmul of a typical batch (64 texts x 24
    # tokens, hidden 384 -> intermediate 1536) in each framework and precision.
    config = encoders["float32"].backbone.get_config()
    shape = (args.batch_size * 24, config["hidden_dim"], config["intermediate_dim"])
    kernels = {p: (tf_matmul_flops(p, shape), peer.ask(op="matmul", precision=p,
                                                        shape=list(shape))["flops"])
               for p in PRECISIONS}
    peer.close()
    shutil.rmtree(work)
    print(f"1-min load average before/after timing: {load_before} / {loadavg()} "
          f"(above ~2 means other processes shared the {os.cpu_count()} cores)")

    project_name = rows[0][0]
    reference = vectors[(project_name, "float32")]  # the float32 reference path
    median = {key: statistics.median(values) for key, values in rates.items()}
    cosine = {key: float(metrics.cosine_rows(v, reference).min()) for key, v in vectors.items()}
    print()
    print("| encoder | precision | items/s (median) | spread (min-max) | project / peer | worst cosine to project float32 |")
    print("|---|---|---:|---:|---:|---:|")
    for name, precision, _ in rows:
        key = (name, precision)
        ratio = median[key] / median[("sentence-transformers", precision)]
        print(f"| {name} | {precision} | {median[key]:.1f} | {min(rates[key]):.1f}-"
              f"{max(rates[key]):.1f} | {ratio:.2f}x | {cosine[key]:.6f} |")

    flops = flops_per_text(encoders["float32"], texts, args.batch_size)
    peak = gemm_flops()
    print(f"\nlimit: {flops / 1e9:.3f} GFLOP per text (bucketed padding included) against "
          f"{peak / 1e9:.0f} GFLOP/s (this machine's best float32 matmul, measured) = "
          f"{peak / flops:,.0f} texts/s in float32; "
          "the project's float32 median reaches "
          f"{median[(project_name, 'float32')] * flops / peak:.0%} of it")
    print(f"\nthe matmul kernels underneath, {shape[0]}x{shape[1]} @ {shape[1]}x{shape[2]} "
          "(one feed-forward layer of a batch), best of 20:")
    print("| precision | TensorFlow GFLOP/s | PyTorch GFLOP/s | TensorFlow / PyTorch | "
          "project: share of TensorFlow's rate | peer: share of PyTorch's rate |")
    print("|---|---:|---:|---:|---:|---:|")
    for precision, (tf_rate, torch_rate) in kernels.items():
        used = {name: median[(name, precision)] * flops for name in (project_name,
                                                                     "sentence-transformers")}
        print(f"| {precision} | {tf_rate / 1e9:.0f} | {torch_rate / 1e9:.0f} | "
              f"{tf_rate / torch_rate:.2f}x | {used[project_name] / tf_rate:.0%} | "
              f"{used['sentence-transformers'] / torch_rate:.0%} |")
    checks = []
    for precision in PRECISIONS:
        ratio = median[(project_name, precision)] / median[("sentence-transformers", precision)]
        met = ratio >= 1.0 and cosine[(project_name, precision)] >= 0.999
        checks.append(f"{precision} {'met' if met else 'not met'} ({ratio:.2f}x)")
    print("\nproject >= 1.0x sentence-transformers at cosine >= 0.999 to float32: "
          + "; ".join(checks))


if __name__ == "__main__":
    main()
