"""Run profiles, chosen by name by a notebook parameter: ``smoke`` runs the series in minutes
on a 2-core CPU for tests (the models still learn), ``default`` (``make run-all``) gives
meaningful results on a laptop CPU in about a quarter of an hour, ``full`` is sized for one
modern GPU. Each stage reads its own section (``profile.data``, ``profile.text``, ...)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .schema import DataError


@dataclasses.dataclass(frozen=True)
class DataScale:
    """Data-preparation sizes: ``fashion_items`` None keeps all 44,446 items; ``image_size``:
    synthetic images' side (pixels); ``cold_item_fraction``: interacted items held out cold."""

    synthetic_items: int
    synthetic_users: int
    fashion_items: int | None
    fashion_users: int
    image_size: int = 64
    cold_item_fraction: float = 0.1


@dataclasses.dataclass(frozen=True)
class Profile:
    """All knobs of one profile; later stages' sections are keyword dicts for their functions."""

    name: str
    data: DataScale
    text: dict[str, Any] = dataclasses.field(default_factory=dict)
    fusion: dict[str, Any] = dataclasses.field(default_factory=dict)
    retrieval: dict[str, Any] = dataclasses.field(default_factory=dict)
    ranking: dict[str, Any] = dataclasses.field(default_factory=dict)
    quantization: dict[str, Any] = dataclasses.field(default_factory=dict)
    search: dict[str, Any] = dataclasses.field(default_factory=dict)


PROFILE_NAMES = ("smoke", "default", "full")

# Smoke users: with 500 shoppers (~10 interactions per item) no two-tower model beat
# popularity; 2,000 (~37 per item) is the smallest world where they do (seconds).
_DATA = {
    "smoke": DataScale(synthetic_items=600, synthetic_users=2000,
                       fashion_items=1500, fashion_users=2000, image_size=48),
    "default": DataScale(synthetic_items=3000, synthetic_users=3000,
                         fashion_items=8000, fashion_users=3000),
    "full": DataScale(synthetic_items=20000, synthetic_users=50000,
                      fashion_items=None, fashion_users=50000),
}

# Text encoder: short item texts fit in 64 tokens; "auto" = bfloat16 where the hardware has it.
_TEXT = {
    "smoke": dict(max_length=64, batch_size=64, pooling="mean", precision="auto"),
    "default": dict(max_length=128, batch_size=64, pooling="mean", precision="auto"),
    "full": dict(max_length=128, batch_size=256, pooling="mean", precision="auto"),
}

# Image encoder and fusion (notebook 03): image_* go to images.choose_image_encoder
# ("mobilenet_v3_small_imagenet" needs a network), epochs, batch_size, ... to
# content_model.fit_content_model; eval_share: held-out share (cold items + a seeded draw).
_FUSION: dict[str, dict[str, Any]] = {
    "smoke": dict(image_backbone="small_cnn", image_size=48, image_dim=64, image_epochs=6,
                  image_batch_size=64, epochs=15, batch_size=64, output_dim=64, attribute_dim=16,
                  learning_rate=2e-3, eval_share=0.2, metric="ndcg@10"),
    "default": dict(image_backbone="small_cnn", image_size=64, image_dim=64, image_epochs=10,
                    image_batch_size=64, epochs=15, batch_size=64, output_dim=64, attribute_dim=16,
                    learning_rate=2e-3, eval_share=0.2, metric="ndcg@10"),
    "full": dict(image_backbone="small_cnn", image_size=96, image_dim=128, image_epochs=30,
                 image_batch_size=256, epochs=30, batch_size=256, output_dim=128, attribute_dim=32,
                 learning_rate=2e-3, eval_share=0.2, metric="ndcg@10"),
}

# Two-tower retrieval (notebook 04). "budget" goes to every variant
# (two_tower.train_retrieval); epochs is a maximum: early stopping on validation Recall@50
# (NDCG@10 stopped the smoke content tower at its 4th epoch, far below its best).
# Chosen on the default synthetic world's validation users; fused tower test Recall@10
# 0.091 (in-batch softmax, log-Q, user id, MLP content tower, next-item histories) ->
# 0.113 with a full softmax + learned item bias (half the biases hidden each step trains
# the "unknown item" bias cold items get), the history as query (leave-one-out, half
# dropped each step) and a linear content projection (a 128-unit MLP: cold Recall@50
# 0.035 vs 0.13). Each lever set back alone is within validation noise (notebook 04's
# ablation). Left out, id tower, validation NDCG@10 (base 0.067): 256 dimensions 0.071,
# history items through their own tower 0.074 (fused tower 0.068: the ablation row), with
# it cosine logits at temperature 0.1 / 0.05 0.068 / 0.060, user id 0.057, stopping on
# NDCG@10 0.067. A content tower over fused vector + facts + words >= 20 items share
# (TF-IDF): 0.076, tied EASE on test NDCG@10 (0.0615 vs 0.0628, interval [-0.0069,
# +0.0046]): the content_words variant. Its id + words twin fused_words was below it (warm
# NDCG@10 0.0580, cold Recall@50 0.056 vs 0.119), chosen on no data set, ~30 s of notebook 04.
# profile_weight: content variants also score by the training-free two_tower.ContentProfile,
# weight learned from 4 (validation choice for a fixed fashion tower + profile blend:
# NDCG@10 0.1087 at 0 -> 0.1128 at 4). Test with it: fashion smoke fused_text warm
# Recall@10 0.176 -> 0.190, new items' Recall@50 at the profile's exposure 0.147 -> 0.201;
# default synthetic content_words 0.117 -> 0.118 and 0.151 -> 0.167 (validation NDCG@10
# 0.0748 -> 0.0730, a tie). Ablation "no content profile", default synthetic fused tower,
# validation / test NDCG@10 / cold Recall@50: 0.0684 / 0.0585 / 0.124 with it,
# 0.0692 / 0.0572 / 0.069 without.
# profile_rank: wide content keeps its 64 strongest SVD directions (fused vectors have 84,
# text 404, fused + words 340): default synthetic content_words trained in 53 s, not 85 s,
# validation NDCG@10 0.0749 (full width 0.0730; 32 columns 0.0750, 128 0.0751), test cold
# Recall@50 0.172 (0.165).
_RETRIEVAL_BUDGET = dict(embedding_dim=64, learning_rate=0.002, optimizer="adam",
                         loss="full_softmax", item_bias=True, bias_dropout=0.5, log_q=False,
                         use_user_id=False, use_context=False, train_history="leave_one_out",
                         history_dropout=0.5, hidden_units=(), early_stopping=True, patience=3,
                         stopping_metric="recall@50", profile_weight=4.0, profile_rank=64)
# Ablation of notebook 04: the fused model with one lever changed at a time.
_RETRIEVAL_ABLATION = {
    "in-batch softmax, log-Q (no item bias)": dict(loss="in_batch", log_q=True, item_bias=False),
    "no item bias": dict(item_bias=False),
    "next-item histories (strictly before)": dict(train_history="before"),
    "with a user id embedding": dict(use_user_id=True),
    "history items through a tower of their own": dict(shared_history=False),
    "no content profile": dict(profile_weight=0.0),
}
# The default profile's rows (time budget): the losses, bias, profile and the user id,
# which moved cold-start Recall@50 most. The full profile runs all.
_DEFAULT_ABLATION = ("in-batch softmax, log-Q (no item bias)", "no item bias",
                     "with a user id embedding", "no content profile")
# The TFRS basic-retrieval tutorial's settings (as notebook 04's cells and the report state).
# tfrs_protocol_epochs: the project's model on the tutorial's rows.
_TFRS_PROTOCOL = dict(epochs=3, batch_size=8192, embedding_dim=32, learning_rate=0.1,
                      optimizer="adagrad", log_q=False)
# Classic references (recsys_utils.baselines): grids searched on validation users.
_BASELINE_GRIDS_SMALL = {
    "ease": [dict(l2=v) for v in (50.0, 200.0, 500.0)],
    "item_knn": [dict(k=k, shrink=10.0) for k in (50, 200)],
    "bpr": [dict(factors=64, learning_rate=0.05, lambda_reg=0.01, max_iter=100)]}
_BASELINE_GRIDS = {
    "ease": [dict(l2=v) for v in (50.0, 100.0, 250.0, 500.0, 1000.0)],
    "item_knn": [dict(k=k, shrink=10.0) for k in (50, 200, 500)],
    "bpr": [dict(factors=f, learning_rate=0.05, lambda_reg=0.01, max_iter=i)
            for f, i in ((64, 200), (256, 400))]}
_RETRIEVAL: dict[str, dict[str, Any]] = {
    "smoke": dict(max_steps_per_epoch=100, history_length=10, text_variants=True,
                  ablation=dict(list(_RETRIEVAL_ABLATION.items())[:1]),
                  # Patience in steps about the default's (5 x 100 vs 3 x 200): the id tower sits
                  # at popularity for its first ~400 steps (item bias first); patience 2 stopped
                  # it there (best epoch 1). 9 epochs, not 12, saved little on MovieLens (299 s
                  # vs 314 s for notebook 04) and chose `id`, which lost to EASE on NDCG@10
                  # (-0.0129 [-0.0248, -0.0009]; `fused` had tied).
                  budget=dict(_RETRIEVAL_BUDGET, epochs=12, patience=5, batch_size=256,
                              learning_rate=0.003),
                  # 5 epochs reach top-100 0.370 on the tutorial's rows (10: 0.372; 3: 0.358).
                  baselines=_BASELINE_GRIDS_SMALL, tfrs_protocol=_TFRS_PROTOCOL,
                  tfrs_protocol_epochs=5,
                  scann=dict(n_users=200, n_latency=50, target_recall=0.98)),
    "default": dict(max_steps_per_epoch=200, history_length=20, text_variants=True,
                    ablation={row: _RETRIEVAL_ABLATION[row] for row in _DEFAULT_ABLATION},
                    budget=dict(_RETRIEVAL_BUDGET, epochs=30, batch_size=256),
                    baselines=_BASELINE_GRIDS, tfrs_protocol=_TFRS_PROTOCOL,
                    tfrs_protocol_epochs=10,
                    scann=dict(n_users=500, n_latency=200, target_recall=0.98)),
    "full": dict(history_length=50, text_variants=True, ablation=_RETRIEVAL_ABLATION,
                 budget=dict(_RETRIEVAL_BUDGET, epochs=50, batch_size=1024, learning_rate=0.004),
                 baselines=_BASELINE_GRIDS, tfrs_protocol=_TFRS_PROTOCOL, tfrs_protocol_epochs=10,
                 scann=dict(n_users=2000, n_latency=500, target_recall=0.98)),
}

# Ranking and the chain (notebook 05). "budget": dcn_ranker.train_ranking (epochs a maximum,
# early stopping on validation loss); sampled_negatives only affects event data.
# projection_dim: low-rank cross layer (x0 holds the raw content vectors: a full-rank W
# would be d0 x d0, d0 ~ 2 x content dim).
_RANKING_BUDGET = dict(embedding_dim=32, learning_rate=0.003, cross_layers=1, projection_dim=64,
                       deep_units=(64, 32), sampled_negatives=0, early_stopping=True, patience=2)
_RANKING: dict[str, dict[str, Any]] = {
    "smoke": dict(k_retrieve=100, max_steps_per_epoch=40,
                  chain=dict(negatives=4, epochs=3, max_positives=10_000),
                  budget=dict(_RANKING_BUDGET, epochs=6, batch_size=512),
                  multitask=dict(epochs=3, batch_size=1024, learning_rate=0.003)),
    "default": dict(k_retrieve=100, max_steps_per_epoch=200,
                    chain=dict(negatives=4, epochs=3, max_positives=50_000),
                    budget=dict(_RANKING_BUDGET, epochs=12, batch_size=512),
                    multitask=dict(epochs=6, batch_size=512, learning_rate=0.003)),
    "full": dict(k_retrieve=100, chain=dict(negatives=4, epochs=5, max_positives=None),
                 budget=dict(_RANKING_BUDGET, epochs=30, batch_size=4096),
                 multitask=dict(epochs=15, batch_size=4096, learning_rate=0.003)),
}

# Quantization (notebook 06): full-int8 calibration samples, held-out quality rows, single
# queries timed per round and interleaved rounds (latency.compare_latency), interpreter
# threads for single queries (1: a sub-millisecond model spends more time waking threads)
# and batches (None = all cores), the text encoder's modes (benchmarks/bench_quantization.py
# on 2 cores: 3-6 s per MiniLM conversion, 10-18 s for full-int8), K for index recall.
_QUANTIZATION: dict[str, dict[str, Any]] = {
    "smoke": dict(calibration_samples=32, quality_rows=256, latency_repeats=20, latency_rounds=3,
                  batch_size=32, latency_threads=1, batch_threads=None,
                  encoder_modes=("float32", "dynamic_int8"), index_k=10),
    "default": dict(calibration_samples=200, quality_rows=2000, latency_repeats=30,
                    latency_rounds=3, batch_size=64, latency_threads=1, batch_threads=None,
                    encoder_modes=("float32", "float16", "dynamic_int8", "full_int8"), index_k=10),
    "full": dict(calibration_samples=500, quality_rows=10000, latency_repeats=60,
                 latency_rounds=3, batch_size=64, latency_threads=1, batch_threads=None,
                 encoder_modes=("float32", "float16", "dynamic_int8", "full_int8"), index_k=10),
}

# Product search (notebook 07).
_SEARCH: dict[str, dict[str, Any]] = {
    # fashion_queries: generated for the fashion catalogue; depth: items each method hands
    # the hybrid; serve_k: the exported model's top-K; target_recall: the served ScaNN index
    # keeps this share of the exact top serve_k on validation queries with the fewest leaves
    # (as notebook 04's does);
    # two_tower: search_models.train_search_model keywords (epochs: rounds over the queries).
    "smoke": dict(fashion_queries=240, depth=200, serve_k=10, target_recall=0.98,
                  two_tower=dict(epochs=30, batch_size=32, item_hidden=(256,),
                                 learning_rate=1e-3, temperature=0.05)),
    "default": dict(fashion_queries=800, depth=300, serve_k=10, target_recall=0.98,
                    two_tower=dict(epochs=40, batch_size=64, item_hidden=(256,),
                                   learning_rate=1e-3, temperature=0.05)),
    "full": dict(fashion_queries=5000, depth=500, serve_k=10, target_recall=0.98,
                 two_tower=dict(epochs=60, batch_size=256, item_hidden=(512,),
                                learning_rate=1e-3, temperature=0.05)),
}

PROFILES: dict[str, Profile] = {
    name: Profile(name=name, data=_DATA[name], text=_TEXT[name], fusion=_FUSION[name],
                  retrieval=_RETRIEVAL[name], ranking=_RANKING[name],
                  quantization=_QUANTIZATION[name], search=_SEARCH[name])
    for name in PROFILE_NAMES
}


def get_profile(name: str) -> Profile:
    """Return the profile called ``name``; the error lists the valid names."""
    if name not in PROFILES:
        raise DataError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return PROFILES[name]
