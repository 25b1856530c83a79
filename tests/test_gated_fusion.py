"""The gated fusion notebook 03 writes out (recsys_utils.gated_fusion): weights, masking, one definition."""

from __future__ import annotations

import json

import recsys_utils  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import tensorflow as tf

from recsys_utils import content_model, fusion_layers, notebook_code
from recsys_utils.gated_fusion import GatedFusion

B, OUT = 4, 8


def inputs(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = {"text": rng.normal(size=(B, 12)).astype(np.float32),
          "image": rng.normal(size=(B, 6)).astype(np.float32)}
    mask = np.array([[1, 1], [1, 0], [0, 1], [0, 0]], np.float32)   # both, text, image, none
    return xs, mask


def test_weights_are_uniform_at_start_and_zero_for_absent_modalities():
    tf.keras.utils.set_random_seed(0)
    gated = GatedFusion(OUT, modality_names=["text", "image"])
    xs, mask = inputs()
    fused, weights = gated(xs, modality_mask=mask, return_weights=True)
    assert fused.shape == (B, OUT) and weights.shape == (B, 2)
    # A zero-initialised gate: equal weights over what is present; exactly 0 for the absent;
    # a row with nothing present falls back to the missing vectors of both.
    np.testing.assert_allclose(weights.numpy(), [[0.5, 0.5], [1, 0], [0, 1], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(gated.prior_weights, [0.5, 0.5], atol=1e-6)


def test_fused_vector_is_the_weighted_sum_of_the_projections():
    tf.keras.utils.set_random_seed(0)
    gated = GatedFusion(OUT, modality_names=["text", "image"])
    xs, mask = inputs()
    fused, weights = gated(xs, modality_mask=mask, return_weights=True)
    tokens, _, _ = gated.project_modalities(xs, mask)                  # (B, 2, OUT)
    expected = np.einsum("bm,bmd->bd", weights.numpy(), tokens.numpy())
    np.testing.assert_allclose(fused.numpy(), expected, atol=1e-5)


def test_input_independent_gate_and_config_round_trip():
    gated = GatedFusion(OUT, input_dependent=False, modality_names=["text", "image"])
    xs, mask = inputs()
    gated(xs, modality_mask=mask)
    assert not hasattr(gated, "gate_kernel")
    clone = GatedFusion.from_config(gated.get_config())
    assert clone.input_dependent is False and clone(xs, modality_mask=mask).shape == (B, OUT)
    assert isinstance(gated, fusion_layers.FusionLayer)


def test_one_definition_built_by_the_package_and_shown_by_the_notebook():
    # build_fusion builds the generated class; the package defines no second one.
    assert type(content_model.build_fusion("gated", output_dim=OUT)) is GatedFusion
    for module in ("fusion_layers.py", "content_model.py", "content_comparison.py"):
        text = (notebook_code.ROOT / "recsys_utils" / module).read_text(encoding="utf-8")
        assert "class GatedFusion" not in text, module
    path = notebook_code.ROOT / notebook_code.SAVED["recsys_utils/gated_fusion.py"][0]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "# @save recsys_utils/gated_fusion.py\n@tf.keras.utils.register_keras_serializable" in code
    assert "class GatedFusion(FusionLayer)" in code
