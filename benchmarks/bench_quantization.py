"""Benchmark: the MiniLM text encoder as TFLite float32 / float16 / dynamic int8 / full int8.

    python benchmarks/bench_quantization.py [--n 256] [--max-length 64] [--threads 2] [--rounds 3]

Exports the encoder's transformer with token-id inputs
(``token_encoder.export_token_encoder``; tokenization stays in Python), converts it
in every mode (full int8 calibrated on real product texts, with the attention
scores and LayerNorm statistics kept float: ``token_encoder.ENCODER_FLOAT_OPS``;
plus the all-int8 conversion, to show why), and prints for each variant:
file size, single-query latency (one text padded to ``--bucket`` tokens;
median of ``--rounds`` rounds of ``--repeats`` calls, min-max of the round
medians), batch throughput (``--batch-size`` texts), the interpreter's
thread count, and the cosine of its vectors to the float32 TFLite model's on
held-out texts. Ends with issue #8's check: is the int8 encoder at least 1.5x
faster than float32 TFLite with cosine >= 0.99?
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
from recsys_utils import latency, metrics, text, tflite_conversion, token_encoder

from _common import hardware_line, loadavg
from bench_text import product_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="texts (half calibration, half held out)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: all)")
    parser.add_argument("--repeats", type=int, default=30, help="single-query calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bucket", type=int, default=32, help="tokens every input is padded to")
    parser.add_argument("--skip-full-int8", action="store_true", help="skip the ~30 s conversions")
    args = parser.parse_args()

    print(hardware_line())
    texts, source = product_texts(args.n)
    calibration, held_out = texts[: args.n // 2], texts[args.n // 2:]
    encoder = text.load_text_encoder(max_length=args.max_length, precision="float32")
    lengths = [len(t) for t in encoder.tokenize(held_out)]
    print(f"{len(texts)} texts from {source}; tokens per held-out text: median "
          f"{int(np.median(lengths))}, max {max(lengths)}; inputs padded/truncated to {args.bucket}")

    work = Path(tempfile.mkdtemp(prefix="bench_quantization_"))
    saved = token_encoder.export_token_encoder(encoder, work / "encoder")
    rep = token_encoder.encoder_samples(encoder, calibration)  # each text at its own length, as served
    variants = [("float32", {}), ("float16", {}), ("dynamic_int8", {})]
    if not args.skip_full_int8:
        variants += [("full_int8", {"keep_float_ops": token_encoder.ENCODER_FLOAT_OPS}),
                     ("full_int8 (all ops int8)", {})]
    results = {}
    for label, kwargs in variants:
        mode = label.split()[0]
        results[label] = tflite_conversion.convert_saved_model(
            saved, mode, out_path=work / f"{label.replace(' ', '_')}.tflite",
            representative_data=rep, **kwargs)
        r = results[label]
        print(f"  converted {label}: {'ok' if r.ok else 'FAILED ' + str(r.error)} "
              f"({r.seconds:.0f} s)", flush=True)

    # Every held-out text padded to one bucket length: a fixed input shape, as a
    # server padding to buckets would run it (a new shape per call re-allocates
    # the interpreter's tensors, which costs more than the int8 kernels save).
    held = token_encoder.encoder_inputs(encoder, held_out, length=args.bucket)
    runners = {label: tflite_conversion.TFLiteRunner(r.path, num_threads=args.threads)
               for label, r in results.items() if r.ok}
    reference = runners["float32"].predict(held, batch_size=args.batch_size)
    cosines = {}
    for label, run in list(runners.items()):
        try:
            cosines[label] = metrics.cosine_rows(run.predict(held, batch_size=args.batch_size),
                                                 reference)
        except RuntimeError as exc:  # an int8 kernel can fail at run time; record, go on
            print(f"{label}: FAILED at run time, not timed: {' '.join(str(exc).split())[:200]}")
            del runners[label]
    load_before = loadavg()
    medians: dict[str, list[float]] = {label: [] for label in runners}
    throughputs: dict[str, list[float]] = {label: [] for label in runners}
    for _ in range(args.rounds):  # round-robin, so background load hits every variant alike
        for label, run in runners.items():
            timing = latency.measure_latency(run, held, repeats=args.repeats,
                                             batch_size=args.batch_size, batch_repeats=3)
            medians[label].append(timing.median_ms)
            throughputs[label].append(timing.throughput)
    rows = []
    for label, run in runners.items():
        r, cos = results[label], cosines[label]
        rows.append({"variant": label, "size_mb": r.size_mb, "median_ms": statistics.median(medians[label]),
                     "spread": f"{min(medians[label]):.1f}-{max(medians[label]):.1f}",
                     "throughput": statistics.median(throughputs[label]),
                     "threads": run.num_threads, "min_cos": float(cos.min()),
                     "mean_cos": float(cos.mean()),
                     "float_ops": ", ".join(sorted(r.float_ops)) or "-"})
    print(f"1-min load average before/after timing: {load_before} / {loadavg()}")
    print()
    print("(the encoder as a tf.function in TensorFlow, not TFLite: benchmarks/bench_text.py)")
    print("| variant | size MB | single query ms (median) | spread of round medians | texts/s "
          f"(batch {args.batch_size}) | threads | min cosine vs float32 | mean cosine |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['size_mb']:.1f} | {row['median_ms']:.1f} | {row['spread']} | "
              f"{row['throughput']:.1f} | {row['threads']} | {row['min_cos']:.4f} | {row['mean_cos']:.4f} |")
    print()
    for row in rows:
        print(f"{row['variant']}: ops computing in float: {row['float_ops']}")
    base = next(r for r in rows if r["variant"] == "float32")
    dyn = next(r for r in rows if r["variant"] == "dynamic_int8")
    single, through = base["median_ms"] / dyn["median_ms"], dyn["throughput"] / base["throughput"]
    holds = min(single, through) >= 1.5 and dyn["min_cos"] >= 0.99
    print(f"\nissue #8 check (dynamic int8 vs float32 TFLite): single query {single:.2f}x, "
          f"batch throughput {through:.2f}x, min cosine {dyn['min_cos']:.4f} -> "
          f"{'HOLDS' if holds else 'does NOT hold'} (needs >= 1.5x and cosine >= 0.99)")


if __name__ == "__main__":
    main()
