"""Run profiles, chosen by name by a notebook parameter: ``smoke`` runs the series in minutes
on a 2-core CPU for tests (the models still learn), ``default`` (``make run-all``) gives
meaningful results on a laptop CPU in about a quarter of an hour, ``full`` is sized for one
modern GPU. Each stage reads its own section (``profile.data``, ``profile.text``, ...)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

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


class Settings:
    """Base of the typed settings: frozen dataclasses, shown as a table in a notebook."""

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes``; a name that is no field is a DataError listing the fields."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise DataError(f"{type(self).__name__} has no setting {', '.join(unknown)}; "
                            f"its settings: {', '.join(fields)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_record(cls, values: Mapping[str, Any]) -> Any:
        """The settings a metrics file recorded (JSON: tuples came back as lists)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DataError(f"{cls.__name__} has no setting {', '.join(unknown)}: recorded by "
                            "another version of the course? Re-run the notebook that wrote it")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def _repr_html_(self) -> str:
        values = {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}
        return pd.Series(values, name=type(self).__name__).to_frame().to_html()


def _check_choice(owner: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise DataError(f"{owner}.{name} must be one of {list(choices)}, got {value!r}")


def _check_positive(owner: Settings, *names: str) -> None:
    for name in names:
        value = getattr(owner, name)
        if value is not None and not value > 0:
            raise DataError(f"{type(owner).__name__}.{name} must be > 0, got {value!r}")


def _check_share(owner: Settings, *names: str) -> None:
    """Dropout rates: a share of inputs dropped, in [0, 1) (None: the builder's default)."""
    for name in names:
        value = getattr(owner, name)
        if value is not None and not 0.0 <= value < 1.0:
            raise DataError(f"{type(owner).__name__}.{name} is a share of inputs dropped, "
                            f"in [0, 1); got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainingBudget(Settings):
    """How a model trains, shared by the budgets: ``scaled`` keeps an epoch under a step limit."""

    epochs: int = 5                      # a maximum when early_stopping
    batch_size: int = 256
    learning_rate: float = 0.01
    early_stopping: bool = False         # on validation, the best epoch kept
    patience: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "learning_rate", "patience")

    def scaled(self, n_rows: int, max_steps_per_epoch: int | None) -> Any:
        """The budget with the smallest multiple of ``batch_size`` that keeps an epoch of
        ``n_rows`` under ``max_steps_per_epoch`` steps (``None``: unchanged), the learning
        rate scaled by the square root of the multiple (a common rule for Adam)."""
        if not max_steps_per_epoch or n_rows <= self.batch_size * max_steps_per_epoch:
            return self
        factor = -(-n_rows // (self.batch_size * max_steps_per_epoch))  # ceil
        return self.replace(batch_size=self.batch_size * factor,
                            learning_rate=self.learning_rate * math.sqrt(factor))


@dataclasses.dataclass(frozen=True)
class TextSettings(Settings):
    """The text encoder's options (``text.load_text_encoder``): tokens kept per text, texts
    per batch, pooling of the token vectors, precision (``"auto"``: bfloat16 where the
    hardware has it)."""

    max_length: int = 128
    batch_size: int = 64
    pooling: str = "mean"
    precision: str = "auto"


@dataclasses.dataclass(frozen=True)
class FusionSettings(Settings):
    """Notebook 03: the image encoder (``image_*``, ``images.choose_image_encoder``), the
    content models (``content_model.fit_content_model``), the held-out share of items
    (cold items + a seeded draw) and the metric that ranks the fusions."""

    image_backbone: str = "small_cnn"  # "mobilenet_v3_small_imagenet" needs a network
    image_size: int = 64
    image_dim: int = 64
    image_epochs: int = 10
    image_batch_size: int = 64
    epochs: int = 15
    batch_size: int = 64
    output_dim: int = 64
    attribute_dim: int = 16
    learning_rate: float = 2e-3
    eval_share: float = 0.2
    metric: str = "ndcg@10"


@dataclasses.dataclass(frozen=True)
class RetrievalBudget(TrainingBudget):
    """Everything ``two_tower.train_retrieval`` needs besides the data: how it trains, then
    the towers ``two_tower.build_retrieval_model`` builds. The defaults are a plain two-tower
    model (in-batch softmax with log-Q, user id, a 128-unit content MLP); the profiles hold
    the tuned values and why."""

    # Training (and the fields of TrainingBudget).
    optimizer: str = "adam"              # or "adagrad"
    train_history: str = "before"        # query: items strictly before, or "leave_one_out"
    stopping_metric: str = "recall@50"   # what early stopping watches on validation users
    # Towers.
    embedding_dim: int = 32
    hidden_units: tuple[int, ...] = (128,)  # content projection; () = linear
    id_dropout: float | None = None      # None: 0.25 for `fused`, else 0
    content_dropout: float = 0.0         # share of content inputs zeroed per training step
    use_user_id: bool = True
    user_dropout: float = 0.05
    use_history: bool = True
    history_dropout: float = 0.0
    use_context: bool = True
    shared_history: bool = True          # history items through the item tower itself
    # Loss.
    loss: str = "in_batch"               # or "full_softmax" over the warm catalogue
    log_q: bool = True                   # in-batch only: subtract log P(item)
    item_bias: bool = False
    bias_dropout: float = 0.0            # share of biases hidden per step (trains the OOV bias)
    profile_weight: float = 0.0          # > 0: content variants add a ContentProfile score
    profile_rank: int | None = None      # its columns (None: the content's full width)

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        _check_choice(owner, "optimizer", self.optimizer, ("adam", "adagrad"))
        _check_choice(owner, "train_history", self.train_history, ("before", "leave_one_out"))
        _check_choice(owner, "loss", self.loss, ("in_batch", "full_softmax"))
        _check_positive(self, "embedding_dim", "profile_rank")
        _check_share(self, "id_dropout", "content_dropout", "user_dropout", "history_dropout",
                     "bias_dropout")
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))


@dataclasses.dataclass(frozen=True)
class ScannSettings(Settings):
    """Notebook 04's served index: users that choose / time it, and the recall it keeps."""

    n_users: int = 500
    n_latency: int = 200
    target_recall: float = 0.98


@dataclasses.dataclass(frozen=True)
class UpdateSettings(Settings):
    """Notebook 04's incremental updates: the variant updated, how many later periods of the
    training interactions it is updated on (each holding ``period_share`` of them), and the
    epochs a warm start trains on each new period."""

    # The course's fused tower: an item new in a period enters a warm start with its content
    # vector, where the id tower can only give it the out-of-vocabulary row. (Default
    # synthetic at 401c070: early stopping kept 7 epochs for fused, 23 for id; the replay
    # took 43 s instead of 96-99 s.)
    variant: str = "fused"
    periods: int = 2
    period_share: float = 0.1
    warm_epochs: int = 2

    def __post_init__(self) -> None:
        _check_choice("UpdateSettings", "variant", self.variant, ("id", "content", "fused"))
        _check_positive(self, "periods", "period_share", "warm_epochs")
        if self.periods * self.period_share >= 1:
            raise DataError(f"UpdateSettings: {self.periods} periods of {self.period_share} "
                            "leave no base period")


@dataclasses.dataclass(frozen=True)
class RetrievalSettings(Settings):
    """Notebook 04: the budget every variant trains with (its batch scaled to keep an epoch
    under ``max_steps_per_epoch`` steps), the history a query keeps, the ablation rows
    (changes to the budget), the classic references' grids (chosen on validation), the TFRS
    tutorial protocol, the served index and the incremental updates. ``content_dropouts``
    and ``queries`` (name -> changes to the budget; the first: none): what notebook 04 tries
    on the fused tower, the best on validation for every variant."""

    budget: RetrievalBudget
    history_length: int
    max_steps_per_epoch: int | None
    ablation: Mapping[str, Mapping[str, Any]]
    baselines: Mapping[str, list[dict[str, Any]]]
    tfrs_protocol: RetrievalBudget
    tfrs_protocol_epochs: int
    scann: ScannSettings
    updates: UpdateSettings = UpdateSettings()
    content_dropouts: tuple[float, ...] = (0.0,)
    queries: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: {"a bag of the user's items": {}})


@dataclasses.dataclass(frozen=True)
class RankingBudget(TrainingBudget):
    """Everything ``dcn_ranker.train_ranking`` needs besides the data: how it trains, then
    the deep & cross network (``dcn_ranker.RankingModel``)."""

    # Training (and the fields of TrainingBudget).
    learning_rate: float = 0.005
    early_stopping: bool = True          # on the validation loss
    sampled_negatives: int = 0           # random unseen items per positive (event data)
    # Network.
    embedding_dim: int = 32
    cross_layers: int = 1
    projection_dim: int | None = None    # low-rank cross layer
    deep_units: tuple[int, ...] = (64, 32)
    id_dropout: float = 0.1
    use_history: bool = True
    use_context: bool = True
    use_user_id: bool = True
    l2: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "embedding_dim", "projection_dim")
        _check_share(self, "id_dropout")
        object.__setattr__(self, "deep_units", tuple(int(u) for u in self.deep_units))


@dataclasses.dataclass(frozen=True)
class ChainSettings(Settings):
    """The engagement re-ranker of the chain: hard negatives per positive (from retrieval),
    its epochs, and the positives it trains on at most (None: all)."""

    negatives: int = 4
    epochs: int = 3
    max_positives: int | None = 50_000


@dataclasses.dataclass(frozen=True)
class MultitaskSettings(Settings):
    """The joint retrieval + rating model (``ranking.train_multitask``)."""

    epochs: int = 6
    batch_size: int = 512
    learning_rate: float = 0.003


@dataclasses.dataclass(frozen=True)
class RankingSettings(Settings):
    """Notebook 05: candidates retrieved per user, the ranker's budget, the chain's
    re-ranker and the joint model."""

    k_retrieve: int
    max_steps_per_epoch: int | None
    budget: RankingBudget
    chain: ChainSettings
    multitask: MultitaskSettings


@dataclasses.dataclass(frozen=True)
class QuantizationSettings(Settings):
    """Notebook 06: full-int8 calibration samples, held-out quality rows, single queries
    timed per round and interleaved rounds (``latency.compare_latency``), interpreter
    threads for single queries (1: a sub-millisecond model spends more time waking
    threads) and batches (None = all cores), the text encoder's modes, K for index recall,
    and pruning: the sparsities tried and the fine-tuning batches each gets."""

    calibration_samples: int = 200
    quality_rows: int = 1000
    latency_repeats: int = 30
    latency_rounds: int = 3
    batch_size: int = 64
    latency_threads: int = 1
    batch_threads: int | None = None
    encoder_modes: tuple[str, ...] = ("float32", "float16", "dynamic_int8", "full_int8")
    index_k: int = 10
    pruning_sparsities: tuple[float, ...] = (0.5, 0.75, 0.9)
    pruning_steps: int = 200

    def __post_init__(self) -> None:
        _check_positive(self, "pruning_steps")
        if not all(0 < s < 1 for s in self.pruning_sparsities):
            raise DataError("pruning_sparsities are shares of zeros, each in (0, 1); got "
                            f"{self.pruning_sparsities}")


@dataclasses.dataclass(frozen=True)
class SearchTowerSettings(Settings):
    """``search_models.train_search_model``'s budget (epochs: rounds over the queries)."""

    epochs: int = 40
    batch_size: int = 64
    item_hidden: tuple[int, ...] = (256,)
    learning_rate: float = 1e-3
    temperature: float = 0.05


@dataclasses.dataclass(frozen=True)
class SearchSettings(Settings):
    """Notebook 07: queries generated for the fashion catalogue, items each method hands
    the hybrid (``depth``), the served model's top K, the recall its ScaNN index keeps on
    validation queries (with the fewest leaves, as notebook 04's), the two-tower budget."""

    fashion_queries: int = 800
    depth: int = 300
    serve_k: int = 10
    target_recall: float = 0.98
    two_tower: SearchTowerSettings = SearchTowerSettings()


@dataclasses.dataclass(frozen=True)
class Profile:
    """All knobs of one profile, one typed section per stage."""

    name: str
    data: DataScale
    text: TextSettings
    fusion: FusionSettings
    retrieval: RetrievalSettings
    ranking: RankingSettings
    quantization: QuantizationSettings
    search: SearchSettings


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

# Text encoder: short item texts fit in 64 tokens.
_TEXT = {
    "smoke": TextSettings(max_length=64),
    "default": TextSettings(),
    "full": TextSettings(batch_size=256),
}

_FUSION = {
    "smoke": FusionSettings(image_size=48, image_epochs=6),
    "default": FusionSettings(),
    "full": FusionSettings(image_size=96, image_dim=128, image_epochs=30, image_batch_size=256,
                           epochs=30, batch_size=256, output_dim=128, attribute_dim=32),
}

# Two-tower retrieval (notebook 04). "budget" goes to every variant
# (two_tower.train_retrieval); epochs is a maximum, early stopping on validation Recall@50.
# Each value was chosen on validation users; docs/tuning.md has the measurements: a full
# softmax with a learned item bias (half hidden each step: that trains the bias cold items
# get), leave-one-out histories half dropped, a linear content projection, the training-free
# content profile as extra columns (one weight, learned from 4) kept to its 64 strongest
# directions, and content dropout chosen per data set.
_RETRIEVAL_BUDGET = RetrievalBudget(
    embedding_dim=64, learning_rate=0.002, optimizer="adam", loss="full_softmax", item_bias=True,
    bias_dropout=0.5, log_q=False, use_user_id=False, use_context=False,
    train_history="leave_one_out", history_dropout=0.5, hidden_units=(), early_stopping=True,
    patience=3, stopping_metric="recall@50", profile_weight=4.0, profile_rank=64)
_CONTENT_DROPOUTS = (0.0, 0.5)
# What a training example's query is, chosen per data set on validation (notebook 04): the
# budget's bag of the user's other items, or the items strictly before the example plus a user
# id (the TFRS tutorials' query). MovieLens smoke, fused tower, validation NDCG@10 0.075 vs 0.114
# (test 0.062 vs 0.097); default synthetic 0.077 vs 0.072 without the user id, which alone cost
# 0.067 -> 0.057 on the id tower (docs/tuning.md).
_QUERIES = {"a bag of the user's items": {},
            "the items before it and a user id": dict(train_history="before", history_dropout=0.0,
                                                      use_user_id=True)}
# Ablation of notebook 04: the fused model with one lever changed at a time.
_RETRIEVAL_ABLATION = {
    "in-batch softmax, log-Q (no item bias)": dict(loss="in_batch", log_q=True, item_bias=False),
    "no item bias": dict(item_bias=False),
    "next-item histories (strictly before)": dict(train_history="before"),
    "with a user id embedding": dict(use_user_id=True),
    "history items through a tower of their own": dict(shared_history=False),
    "no content profile": dict(profile_weight=0.0),
}
# The default profile's rows (time budget: each is a training of the fused tower, ~21 s of
# `make run-all`): the two losses and the content profile, which moved cold-start Recall@50
# most. The full profile runs all.
_DEFAULT_ABLATION = ("in-batch softmax, log-Q (no item bias)", "no content profile")
# The TFRS basic-retrieval tutorial's settings (as notebook 04's cells and the report state).
# tfrs_protocol_epochs: the project's model on the tutorial's rows.
_TFRS_PROTOCOL = RetrievalBudget(epochs=3, batch_size=8192, embedding_dim=32, learning_rate=0.1,
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
_RETRIEVAL = {
    "smoke": RetrievalSettings(
        # No ablation rows: CI trains the default profile's on the synthetic world (the
        # smoke row, log-Q, cost a fused-tower training on each of four data sets).
        max_steps_per_epoch=100, history_length=10, ablation={},
        # Patience in steps about the default's (5 x 100 vs 3 x 200): the id tower sits at
        # popularity for its first ~400 steps (item bias first); patience 2 stopped it there
        # (best epoch 1). 9 epochs, not 12, saved little on MovieLens (299 s vs 314 s for
        # notebook 04) and chose `id`, which lost to EASE on NDCG@10 (-0.0129 [-0.0248,
        # -0.0009]; `fused` had tied).
        budget=_RETRIEVAL_BUDGET.replace(epochs=12, patience=5, learning_rate=0.003),
        content_dropouts=_CONTENT_DROPOUTS, queries=_QUERIES,
        # 5 epochs reach top-100 0.370 on the tutorial's rows (10: 0.372; 3: 0.358).
        baselines=_BASELINE_GRIDS_SMALL, tfrs_protocol=_TFRS_PROTOCOL, tfrs_protocol_epochs=5,
        scann=ScannSettings(n_users=200, n_latency=50)),
    "default": RetrievalSettings(
        max_steps_per_epoch=200, history_length=20,
        ablation={row: _RETRIEVAL_ABLATION[row] for row in _DEFAULT_ABLATION},
        # Learning rate chosen on validation: 0.004 against 0.002, the eight towers' best
        # validation Recall@50 (early stopping's metric) 0.3091 vs 0.3079 on average (higher
        # for five); early stopping kept 9 epochs on average instead of 15 (training 264 s vs
        # 374 s).
        budget=_RETRIEVAL_BUDGET.replace(epochs=30, learning_rate=0.004),
        # Both rates and both queries, chosen on each data set's validation users: listing only
        # the synthetic world's choices (0.5, the bag) cost MovieLens its win over EASE (`id`
        # Recall@10 0.1251 vs 0.1442, -0.0191 [-0.0392, +0.0021]), and there `fused` lost to
        # `content` on new items (-0.0801 [-0.1580, -0.0108]). Not free: fashion's validation then
        # picks rate 0, which new items pay for (docs/tuning.md); the rate belongs on held-out
        # items. Each costs a fused-tower training.
        content_dropouts=_CONTENT_DROPOUTS, queries=_QUERIES,
        baselines=_BASELINE_GRIDS,
        tfrs_protocol=_TFRS_PROTOCOL, tfrs_protocol_epochs=10, scann=ScannSettings()),
    "full": RetrievalSettings(
        max_steps_per_epoch=None, history_length=50,
        ablation=_RETRIEVAL_ABLATION,
        budget=_RETRIEVAL_BUDGET.replace(epochs=50, batch_size=1024, learning_rate=0.004),
        content_dropouts=_CONTENT_DROPOUTS, queries=_QUERIES,
        baselines=_BASELINE_GRIDS, tfrs_protocol=_TFRS_PROTOCOL, tfrs_protocol_epochs=10,
        scann=ScannSettings(n_users=2000, n_latency=500)),
}

# Ranking and the chain (notebook 05). "budget": dcn_ranker.train_ranking (epochs a maximum,
# early stopping on validation loss); sampled_negatives only affects event data.
# projection_dim: low-rank cross layer (x0 holds the raw content vectors: a full-rank W
# would be d0 x d0, d0 ~ 2 x content dim).
_RANKING_BUDGET = RankingBudget(embedding_dim=32, learning_rate=0.003, cross_layers=1,
                                projection_dim=64, deep_units=(64, 32), sampled_negatives=0,
                                early_stopping=True, patience=2)
_RANKING = {
    "smoke": RankingSettings(
        k_retrieve=100, max_steps_per_epoch=40, chain=ChainSettings(max_positives=10_000),
        budget=_RANKING_BUDGET.replace(epochs=6, batch_size=512),
        multitask=MultitaskSettings(epochs=3, batch_size=1024)),
    "default": RankingSettings(
        k_retrieve=100, max_steps_per_epoch=200, chain=ChainSettings(),
        budget=_RANKING_BUDGET.replace(epochs=12, batch_size=512), multitask=MultitaskSettings()),
    "full": RankingSettings(
        k_retrieve=100, max_steps_per_epoch=None,
        chain=ChainSettings(epochs=5, max_positives=None),
        budget=_RANKING_BUDGET.replace(epochs=30, batch_size=4096),
        multitask=MultitaskSettings(epochs=15, batch_size=4096)),
}

# Quantization (notebook 06). The text encoder's modes: benchmarks/bench_quantization.py on
# 2 cores takes 3-6 s per MiniLM conversion, 10-18 s for full-int8.
_QUANTIZATION = {
    "smoke": QuantizationSettings(calibration_samples=32, quality_rows=256, latency_repeats=20,
                                  batch_size=32, encoder_modes=("float32", "dynamic_int8"),
                                  pruning_sparsities=(0.5, 0.9), pruning_steps=60),
    # Two sparsities: a third (0.75) cost ~25 s of `make run-all` and lay between them.
    "default": QuantizationSettings(pruning_sparsities=(0.5, 0.9)),
    "full": QuantizationSettings(calibration_samples=500, quality_rows=10000, latency_repeats=60),
}

# Product search (notebook 07).
_SEARCH = {
    "smoke": SearchSettings(fashion_queries=240, depth=200,
                            two_tower=SearchTowerSettings(epochs=30, batch_size=32)),
    "default": SearchSettings(),
    "full": SearchSettings(fashion_queries=5000, depth=500,
                           two_tower=SearchTowerSettings(epochs=60, batch_size=256,
                                                         item_hidden=(512,))),
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
