"""Tests of recsys_utils.bert_checkpoint: finding the offline checkpoint, clear errors."""

import recsys_utils  # noqa: F401, I001 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

import pytest

from recsys_utils import bert_checkpoint, text


def test_default_checkpoint_is_found_from_the_installed_package():
    path = bert_checkpoint.default_checkpoint_dir()
    assert path.is_dir()
    assert {"config.json", "vocab.txt", "model.safetensors"} <= {p.name for p in path.iterdir()}


def test_the_encoder_raises_the_checkpoint_error():
    assert text.CheckpointError is bert_checkpoint.CheckpointError


def test_missing_checkpoint_directory_says_what_was_checked(tmp_path):
    missing = tmp_path / "no_model_here"
    with pytest.raises(bert_checkpoint.CheckpointError, match="does not exist") as err:
        bert_checkpoint.load_bert(missing)
    assert str(missing) in str(err.value)


def test_directory_without_checkpoint_files_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(bert_checkpoint.CheckpointError) as err:
        bert_checkpoint.load_bert(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "config.json" in message and "vocab.txt" in message
    assert isinstance(err.value, ValueError)


def test_unknown_preset_name_says_what_was_tried():
    with pytest.raises(bert_checkpoint.CheckpointError) as err:
        bert_checkpoint.load_bert("no_such_bert_preset")
    message = str(err.value)
    assert "no_such_bert_preset" in message
    assert "local directory" in message and "not a known keras-hub BERT preset" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no deep traceback


def test_known_preset_offline_mentions_the_network(monkeypatch):
    import keras_hub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    # Simulated, so the test is the same with or without a network.
    monkeypatch.setattr(keras_hub.models.BertTokenizer, "from_preset", offline)
    with pytest.raises(bert_checkpoint.CheckpointError) as err:
        bert_checkpoint.load_bert("bert_tiny_en_uncased")
    message = str(err.value)
    assert "needs a network" in message and "ConnectionError" in message
