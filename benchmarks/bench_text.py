"""Benchmark: text-encoder throughput, fixed-length vs bucketed, float32 vs bfloat16 vs TFLite int8.

    python benchmarks/bench_text.py [--n 1000] [--repeats 3] [--batch-size 64] [--no-tflite]

Encodes ~1000 e-commerce product texts (titles, some with a one- or two-sentence
description) with the bundled MiniLM at max_length=128 and prints items/s for

* fixed  float32: every text padded to 128 tokens (the naive baseline),
* bucketed float32: sorted by length, each batch padded to its own longest text,
* fixed / bucketed bfloat16: the same with the encoder's bfloat16 path (bfloat16 weights,
  fused feed-forward blocks: ``text.flatten_feedforward``),
* bucketed TFLite float32 / dynamic-range int8: the transformer exported with
  token-id inputs (``token_encoder.export_token_encoder``; tokenization stays in
  Python) and run by the TFLite interpreter on all cores, bucketed the same way
  (``token_encoder.encode_bucketed``),

as the median over ``--repeats`` timed runs (after a warm-up) with the
min-max spread, the speed-up over the baseline, and the worst cosine between
each configuration's vectors and the baseline's. No cache is used.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads
from recsys_utils import metrics, text, tflite_conversion, token_encoder

from _common import hardware_line, loadavg


def product_texts(n: int, seed: int = 0) -> tuple[list[str], str]:
    """``n`` deterministic product texts: half titles, half title + description."""
    rng = np.random.default_rng(seed)
    try:
        from recsys_utils import synthetic

        items = synthetic.generate(n_items=n, n_users=max(10, n // 10), seed=seed).items
        titles, descriptions = items["title"].tolist(), items["description"].tolist()
        source = "recsys_utils.synthetic.generate"
    except Exception as exc:  # noqa: BLE001 - the generator is optional here
        titles, descriptions = _fallback_items(n, rng)
        source = f"built-in templates (synthetic unavailable: {type(exc).__name__})"
    texts = [t if rng.random() < 0.5 or not d else f"{t}. {d}" for t, d in zip(titles, descriptions)]
    return texts, source


def _fallback_items(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    colours = ["black", "navy", "red", "olive", "cream", "grey", "pink", "white"]
    materials = ["cotton", "wool", "leather", "linen", "denim", "polyester", "suede"]
    things = ["t-shirt", "sweater", "chelsea boots", "running shoes", "backpack", "scarf",
              "rain jacket", "chinos", "sneakers", "shoulder bag", "beanie", "dress"]
    brands = ["Corvo", "Maison Lyra", "Alba & Finch", "Northpeak", "Kite", "Urbano"]
    extras = ["Machine washable.", "Ships in recycled packaging.", "True to size.",
              "A reliable everyday pick for town and travel.", "Lined for colder days.",
              "Finished with contrast stitching and metal hardware."]
    titles, descriptions = [], []
    for _ in range(n):
        colour, material, thing = rng.choice(colours), rng.choice(materials), rng.choice(things)
        titles.append(f"{rng.choice(brands)} {colour} {material} {thing}")
        first = f"Made of {material}, this {thing} comes in {colour}."
        descriptions.append(first if rng.random() < 0.5 else f"{first} {rng.choice(extras)}")
    return titles, descriptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of texts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--no-tflite", action="store_true",
                        help="skip the TFLite rows (export + conversion take ~30 s)")
    args = parser.parse_args()

    texts, source = product_texts(args.n)
    print(hardware_line())
    encoders = {p: text.load_text_encoder(precision=p, max_length=args.max_length,
                                          batch_size=args.batch_size)
                for p in ("float32", "bfloat16")}
    lengths = np.array([len(t) for t in encoders["float32"].tokenize(texts)])
    print(f"{len(texts)} texts from {source}; tokens per text: median {int(np.median(lengths))}, "
          f"p90 {int(np.percentile(lengths, 90))}, max {lengths.max()} (max_length {args.max_length}); "
          f"batch size {args.batch_size}; {args.repeats} timed repeats (round-robin) after a warm-up")
    print(f"example: {texts[0]!r} | {texts[1]!r}")

    configs = [("fixed", "float32"), ("bucketed", "float32"), ("fixed", "bfloat16"),
               ("bucketed", "bfloat16")]
    runners: dict[str, tflite_conversion.TFLiteRunner] = {}
    if not args.no_tflite:
        import tempfile

        work = Path(tempfile.mkdtemp(prefix="bench_text_"))
        saved = token_encoder.export_token_encoder(encoders["float32"], work / "encoder")
        for mode in ("float32", "dynamic_int8"):
            converted = tflite_conversion.convert_saved_model(saved, mode,
                                                              out_path=work / f"{mode}.tflite")
            if not converted.ok:
                print(f"TFLite {mode} did not convert: {converted.error}")
                continue
            runners[f"TFLite {mode}"] = tflite_conversion.TFLiteRunner(converted.path)
            configs.append(("bucketed", f"TFLite {mode}"))

    def run(mode: str, precision: str, subset: list[str]) -> np.ndarray:
        if precision in runners:
            return token_encoder.encode_bucketed(runners[precision], encoders["float32"], subset,
                                                 batch_size=args.batch_size)
        return encoders[precision].encode(subset, bucketing=(mode == "bucketed"), progress=False)

    for config in configs:  # warm-up: tracing and oneDNN kernels for every padded shape
        run(*config, texts[::4])
    # Round-robin over the configurations, so a burst of load from another
    # process slows one repeat of each rather than every repeat of one.
    rates: dict[tuple[str, str], list[float]] = {c: [] for c in configs}
    vectors: dict[tuple[str, str], np.ndarray] = {}
    load_before = loadavg()
    for repeat in range(args.repeats):
        for config in configs:
            start = time.perf_counter()
            vectors[config] = run(*config, texts)
            rates[config].append(len(texts) / (time.perf_counter() - start))
        print(f"  repeat {repeat + 1}/{args.repeats}: "
              + ", ".join(f"{m} {p} {rates[(m, p)][-1]:.1f}/s" for m, p in configs), flush=True)
    rows = [(m, p, statistics.median(rates[(m, p)]), min(rates[(m, p)]), max(rates[(m, p)]))
            for m, p in configs]
    print(f"1-min load average before/after timing: {load_before} / {loadavg()} "
          f"(above ~2 means other processes shared the {os.cpu_count()} cores)")

    base = rows[0][2]
    reference = vectors[("fixed", "float32")]
    print()
    print("| padding  | precision            | items/s (median) | spread (min-max) | speed-up | min cosine vs baseline |")
    print("|----------|----------------------|-----------------:|-----------------:|---------:|-----------------------:|")
    for mode, precision, median, low, high in rows:
        cos = float(metrics.cosine_rows(vectors[(mode, precision)], reference).min())
        print(f"| {mode:<8} | {precision:<20} | {median:16.1f} | {low:7.1f}-{high:<8.1f} | "
              f"{median / base:7.2f}x | {cos:22.6f} |")
    if ("bucketed", "TFLite dynamic_int8") in rates and ("bucketed", "TFLite float32") in rates:
        f32 = statistics.median(rates[("bucketed", "TFLite float32")])
        i8 = statistics.median(rates[("bucketed", "TFLite dynamic_int8")])
        cos = float(metrics.cosine_rows(vectors[("bucketed", "TFLite dynamic_int8")],
                                        vectors[("bucketed", "TFLite float32")]).min())
        met = "met" if i8 >= 1.5 * f32 and cos >= 0.99 else "not met"
        print(f"\nint8 encoder >= 1.5x float32 TFLite with cosine >= 0.99 (batches of "
              f"{args.batch_size}, all cores): {met} ({i8 / f32:.2f}x, worst cosine {cos:.4f})")
    best = max(rows, key=lambda r: r[2])
    print(f"\nfastest: {best[0]} {best[1]}, {best[2] / base:.2f}x the naive fixed-length float32 baseline; "
          f"precision='auto' resolves to {text._resolve_precision('auto')!r} here")


if __name__ == "__main__":
    main()
