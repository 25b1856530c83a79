"""Magnitude pruning of the subclassed towers and ranker (notebook 06's path): the exported
weights rebuild the model exactly, the wrappers reach every Dense and Embedding layer once,
fine-tuning reaches the sparsity asked for, and the stripped model exports with its zeros."""

from __future__ import annotations

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

from recsys_utils import artifacts, dcn_ranker, pruning
from recsys_utils import features as F
from recsys_utils import ranking as K
from recsys_utils import retrieval as R
from recsys_utils import serving as S
from recsys_utils import two_tower
from recsys_utils.profiles import RankingBudget, RetrievalBudget
from recsys_utils.schema import DataError
from toy_world import make_toy

BUDGET = RetrievalBudget(epochs=2, batch_size=128, embedding_dim=16, learning_rate=0.01,
                         loss="full_softmax", item_bias=True, hidden_units=(32,),
                         profile_weight=2.0, profile_rank=8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A trained ``fused`` model (id + content MLP + profile) and its exported towers."""
    toy = make_toy(seed=5)
    data = F.build_features(toy.prepared, history_length=5)
    result = two_tower.train_retrieval("fused", data, toy.content, BUDGET, seed=0, progress=False)
    root = tmp_path_factory.mktemp("pruning")
    paths = S.export_towers(result, data, root / "query", root / "item", n_calibration=16)
    return data, result, paths


def _rebuilt(data, query_dir):
    """The towers rebuilt from their export as notebook 06 does: content from the weights."""
    content = artifacts.saved_array(query_dir, "item_tower/content")
    model = two_tower.build_retrieval_model("fused", data, content, BUDGET)
    model.query_embedding({k: v[:2] for k, v in data.queries("test").features.items()})
    model.candidate_embedding(tf.constant([0]))
    return artifacts.restore_weights(model, query_dir)


def _scores(model, data):
    result = R.RetrievalResult.of("fused", model, data, data.examples["train"], {})
    return result.query_embeddings(data.queries("test").features) @ result.item_embeddings().T


def _prune(sparsity, steps):
    def wrap(layer):
        schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0,
                                                        end_step=steps // 2, frequency=2)
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
    return wrap


def _fine_tune(model, wrapped, rows, steps):
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    model.fit(F.to_dataset(rows, 128, seed=0).repeat(), epochs=1, steps_per_epoch=steps,
              verbose=0, callbacks=[wrapped.callback()])
    wrapped.strip()


def test_exported_weights_rebuild_the_trained_model(exported, tmp_path):
    data, result, paths = exported
    model = _rebuilt(data, paths["query"])
    expected = result.query_embeddings(data.queries("test").features) @ result.item_embeddings().T
    np.testing.assert_array_equal(_scores(model, data), expected)
    np.testing.assert_array_equal(artifacts.saved_array(paths["item"], "item_tower/content"),
                                  result.model.item_tower.content.numpy())
    with pytest.raises(DataError, match="no model weights"):
        artifacts.restore_weights(model, tmp_path)
    with pytest.raises(DataError, match="no variable 'item_tower/nothing'"):
        artifacts.saved_array(paths["query"], "item_tower/nothing")
    other = two_tower.build_retrieval_model("id", data, None, BUDGET.replace(embedding_dim=8))
    other.query_embedding({k: v[:2] for k, v in data.queries("test").features.items()})
    other.candidate_embedding(tf.constant([0]))
    with pytest.raises(DataError, match="do not fit this model"):
        artifacts.restore_weights(other, paths["query"])


def test_pruning_the_towers_reaches_the_sparsity_and_exports_the_zeros(exported, tmp_path):
    data, result, paths = exported
    model = _rebuilt(data, paths["query"])
    assert pruning.sparsity(model) < 0.01
    wrapped = pruning.wrap_layers(model, _prune(0.8, steps=30))
    # Item id, the MLP's two Dense layers, user id, hour, weekday, projection: each once,
    # though the item tower is reached twice (candidates and the query's history).
    assert len(wrapped.wrappers) == 7
    assert len({id(w.layer) for w in wrapped.wrappers}) == 7
    assert isinstance(model.query_tower.item_tower.id_embedding,
                      PruneLowMagnitude)
    _fine_tune(model, wrapped, R.training_examples(data, BUDGET.train_history), steps=30)
    # Stripped: plain layers again, the item tower still shared, each matrix 80% zeros.
    assert isinstance(model.item_tower.id_embedding, tf.keras.layers.Embedding)
    assert model.query_tower.item_tower is model.item_tower
    assert not any(isinstance(layer, PruneLowMagnitude)
                   for layer in model._flatten_layers())
    assert pruning.sparsity(model) == pytest.approx(0.8, abs=0.01)
    kernel = model.query_tower.project.kernel.numpy()
    assert (kernel == 0).mean() == pytest.approx(0.8, abs=0.01)
    # The export serves the pruned model's scores.
    pruned_paths = S.export_towers(R.RetrievalResult.of("fused", model, data,
                                                        data.examples["train"], {}),
                                   data, tmp_path / "q", tmp_path / "i", n_calibration=16)
    towers = S.load_towers(pruned_paths["query"], pruned_paths["item"], data.n_items)
    served = towers.query_embeddings(data.queries("test").features) @ towers.item_embeddings().T
    np.testing.assert_allclose(served, _scores(model, data), atol=1e-4)
    assert not np.allclose(served, _scores(_rebuilt(data, paths["query"]), data), atol=1e-3)


def test_pruning_reaches_the_rankers_cross_layers(tmp_path):
    toy = make_toy(seed=6)
    data = F.build_features(toy.prepared, history_length=5)
    budget = RankingBudget(epochs=1, batch_size=128, embedding_dim=8, cross_layers=2,
                           deep_units=(16,), sampled_negatives=1)
    ranker = dcn_ranker.train_ranking(data, toy.content, budget, seed=0, progress=False)
    path = K.export_ranking_model(ranker, data, tmp_path / "ranker", n_calibration=16)
    model = dcn_ranker.build_ranking_model(
        ranker.target, data, artifacts.saved_array(path, "content"), budget,
        rating_offset=ranker.baseline if ranker.target == "rating" else 0.0)
    rows = {k: v for k, v in K.ranking_examples(data, "train", sampled_negatives=1,
                                                seed=0).items()
            if k in (*K.FEATURE_KEYS, "target")}
    model({k: v[:2] for k, v in rows.items()})
    artifacts.restore_weights(model, path)
    np.testing.assert_allclose(model(rows, training=False).numpy(),
                               ranker.model(rows, training=False).numpy(), atol=1e-6)
    wrapped = pruning.wrap_layers(model, _prune(0.5, steps=20))
    # Item, user, hour and weekday tables, the content projection, two Cross layers' dense
    # layers (private attributes of tfrs' Cross), one deep layer and the head.
    assert len(wrapped.wrappers) == 9
    _fine_tune(model, wrapped, rows, steps=20)
    assert pruning.sparsity(model) == pytest.approx(0.5, abs=0.01)
    assert all((layer._dense.kernel.numpy() == 0).mean() == pytest.approx(0.5, abs=0.02)
               for layer in model.cross)
    # Exported with its weights (a list of layers changed in place could not be saved).
    pruned_path = K.export_ranking_model(K.RankingResult(ranker.target, model, {}, 0.0, 0.0,
                                                         ranker.baseline, {}),
                                         data, tmp_path / "pruned", n_calibration=16)
    served = tf.saved_model.load(str(pruned_path)).signatures["serving_default"]
    sample = {k: v[:32] for k, v in rows.items()}
    inputs = {k: tf.constant(sample[k], tf.float32 if k == "history_mask" else tf.int32)
              for k in K.FEATURE_KEYS}
    np.testing.assert_allclose(served(**inputs)["score"].numpy(),
                               model(sample, training=False).numpy(), atol=1e-5)


def test_wrapping_needs_trained_layers_and_something_to_prune(exported):
    data, _, _ = exported
    unbuilt = two_tower.build_retrieval_model("id", data, None, BUDGET)
    with pytest.raises(DataError, match="call the model on a batch"):
        pruning.wrap_layers(unbuilt, _prune(0.5, steps=10))
    with pytest.raises(DataError, match="no Dense or Embedding layer"):
        pruning.wrap_layers(tf.keras.layers.Layer(), _prune(0.5, steps=10))
