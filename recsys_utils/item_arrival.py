"""A new catalogue item recommendable in seconds, without retraining.

Notebook 03 writes what turns an item's raw fields into its fused content vector
(:func:`export_item_encoder`: the kept image encoder and the best fusion as SavedModels, the
attribute vocabularies as JSON); :func:`load_item_encoder` reads them back beside notebook 02's
text encoder. :func:`candidate_vectors` passes content rows through a trained two-tower model's
item tower as an item it never saw (the out-of-vocabulary id row, the unknown-item bias), and
:func:`add_items` appends the vectors to a brute-force top-k index. :func:`add_new_items` chains
them and times each step; :func:`item_ranks` reads where they rank (notebook 04's replay, on
``serving.build_brute_force(..., without=...)``). Import ``recsys_utils`` before TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from . import artifacts
from .content_comparison import encode_attributes, price_bands, price_edges
from .features import fact_columns, item_attribute_matrix
from .images import load_images
from .item_text import item_text
from .schema import DataError
from .serving import load_saved_model

__all__ = ["AddedItems", "ItemEncoder", "add_items", "add_new_items", "attribute_spec",
           "candidate_vectors", "export_item_encoder", "item_content_rows",
           "item_ranks", "load_item_encoder", "CONTENT_SOURCES", "ENCODER_NAME"]

#: Where notebook 03 writes the item encoder (under the artifact directory's ``models/``).
ENCODER_NAME = "item_encoder"
#: The retrieval content sources (notebook 04's ``variant_content``) a new item's raw fields
#: can rebuild; the TF-IDF ones need the catalogue's fitted vectorizers and are left out.
CONTENT_SOURCES = ("fused", "text", "facts")


def attribute_spec(items: pd.DataFrame, codes: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """How to encode each attribute input of notebook 03's content task for any item.

    ``codes``: key -> int codes ``(n,)`` of the catalogue ``items`` (``ContentTask.attributes``):
    a categorical column's codes index its sorted values (``encode_attributes``), a price band
    is a quantile band of ``price`` (``price_bands``). Returns key -> ``{"column", "values"}``
    or ``{"column": "price", "edges"}``; DataError if neither reproduces the catalogue codes.
    """
    spec: dict[str, dict] = {}
    for key, expected in codes.items():
        expected = np.asarray(expected)
        if key in items.columns:
            found, vocab = encode_attributes(items, [key])
            if np.array_equal(found[key], expected):
                spec[key] = {"column": key, "values": vocab[key]}
                continue
        if "price" in items.columns:
            prices = pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float64)
            ok = np.isfinite(prices)
            # content_task's default of 5 bands first; tied prices may leave fewer codes.
            for n_bands in dict.fromkeys((5, int(expected.max()) + 1)):
                edges = price_edges(prices, n_bands)
                if ok.any() and np.array_equal(price_bands(prices, edges=edges), expected):
                    spec[key] = {"column": "price", "edges": [float(e) for e in edges]}
                    break
            if key in spec:
                continue
        raise DataError(f"attribute input {key!r}: neither a column's sorted values nor price "
                        f"bands reproduce its codes", source="attribute_spec")
    return spec


def _encode_attribute(rows: pd.DataFrame, entry: Mapping[str, Any]) -> np.ndarray:
    """Int32 codes ``(n,)`` of ``rows`` under one :func:`attribute_spec` entry; -1 = unknown
    (a value the catalogue never had, or missing): the fusion's "unknown" row."""
    column = entry["column"]
    if column not in rows.columns:
        return np.full(len(rows), -1, np.int32)
    if "edges" in entry:
        return price_bands(pd.to_numeric(rows[column], errors="coerce"), edges=entry["edges"])
    position = {value: i for i, value in enumerate(entry["values"])}
    values = rows[column].astype("string")
    return np.array([-1 if pd.isna(v) else position.get(str(v), -1) for v in values], np.int32)


class _Signature(tf.Module):
    """A tf-keras model behind one traced function (inference mode) for a SavedModel."""

    def __init__(self, model: tf.keras.Model, spec: Any) -> None:
        super().__init__()
        self.model = model
        self.embed = tf.function(lambda inputs: model(inputs, training=False),
                                 input_signature=[spec])


def export_item_encoder(path: str | Path, *, items: pd.DataFrame, attribute_columns: list[str],
                        content_model: Any, feed: Mapping[str, np.ndarray],
                        attribute_codes: Mapping[str, np.ndarray],
                        image_encoder: tf.keras.Model | None = None) -> Path:
    """Write what computes a new item's fused vector, atomically, to ``path``.

    ``content_model``: notebook 03's kept :class:`~recsys_utils.content_model.ContentModel`;
    ``feed``: its inputs for the catalogue (``content_model.feed(...)``, only their shapes and
    dtypes are read); ``attribute_codes``: the catalogue's attribute inputs (for
    :func:`attribute_spec`); ``image_encoder``: pixels ``(B, s, s, 3)`` 0-255 -> ``(B, d)``, or
    None when the data set has no images. ``attribute_columns``: the columns ``item_text``
    reads. Layout: ``fusion/`` and ``image/`` SavedModels (``embed``), ``spec.json``.
    """
    names = list(content_model.modality_names)
    spec = {
        "modalities": names, "method": content_model.method,
        "attribute_columns": list(attribute_columns),
        "attributes": attribute_spec(items, attribute_codes) if "attributes" in names else {},
        "image_size": int(image_encoder.input_shape[1]) if image_encoder is not None else None,
        "feed": {k: [list(np.shape(v)[1:]), str(np.asarray(v).dtype)] for k, v in feed.items()},
    }
    if "image" in names and image_encoder is None:
        raise DataError("the fusion reads images: pass the image encoder that made them",
                        source="export_item_encoder")
    fusion_spec = {k: tf.TensorSpec((None, *shape), tf.as_dtype(dtype), name=k)
                   for k, (shape, dtype) in spec["feed"].items()}
    with artifacts.atomic_dir(path) as tmp:
        artifacts.save_module(_Signature(content_model.encoder, fusion_spec), tmp / "fusion",
                              signatures=None)
        if image_encoder is not None:
            size = spec["image_size"]
            artifacts.save_module(
                _Signature(image_encoder, tf.TensorSpec((None, size, size, 3), tf.float32)),
                tmp / "image", signatures=None)
        (tmp / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return Path(path)


@dataclasses.dataclass
class ItemEncoder:
    """Raw item fields -> notebook 03's fused vector: text encoder (notebook 02), image encoder
    and fusion (notebook 03), loaded by :func:`load_item_encoder`."""

    spec: dict[str, Any]
    text_encoder: Any
    fusion: Any
    image_encoder: Any | None

    @property
    def has_images(self) -> bool:
        return "image" in self.spec["modalities"]

    def encode(self, items: pd.DataFrame, pixels: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
        """``items``: one row per new item with ``title``, ``description``, ``category``, the
        attribute columns, optionally ``price`` and ``image_path`` (a readable file; missing or
        unreadable: no image, the fusion's "missing" vector). ``pixels``: ``(n, s, s, 3)`` 0-255
        instead of the files. Returns ``text`` ``(n, 384)``, ``image`` ``(n, d_img)`` and
        ``image_present`` ``(n,)`` (when the fusion reads images), ``fused`` ``(n, d)``.
        """
        if not isinstance(items, pd.DataFrame) or items.empty:
            raise DataError("new items: a non-empty DataFrame with one row per item expected, "
                            f"got {type(items).__name__}", source="new items")
        items = items.reset_index(drop=True)
        texts = item_text(items, self.spec["attribute_columns"])  # DataError on missing columns
        out = {"text": self.text_encoder(text=tf.constant(texts))["output_0"].numpy()}
        feed: dict[str, np.ndarray] = {}
        mask = []
        for name in self.spec["modalities"]:
            if name == "text":
                feed["text"] = out["text"]
                mask.append(np.ones(len(items), np.float32))
            elif name == "image":
                present, images = self._images(items, pixels)
                vectors = np.zeros((len(items), self.spec["feed"]["image"][0][0]), np.float32)
                if present.any():
                    vectors[present] = self.image_encoder.embed(
                        tf.constant(images[present], tf.float32)).numpy()
                feed["image"], out["image"], out["image_present"] = vectors, vectors, present
                mask.append(present.astype(np.float32))
            elif name == "attributes":
                for key, entry in self.spec["attributes"].items():
                    feed[f"attributes__{key}"] = _encode_attribute(items, entry)
                mask.append(np.ones(len(items), np.float32))
            else:
                raise DataError(f"unknown modality {name!r} in the item encoder's spec")
        feed["modality_mask"] = np.stack(mask, axis=1)
        out["fused"] = self.fusion.embed({k: tf.constant(v) for k, v in feed.items()}).numpy()
        return out

    def _images(self, items: pd.DataFrame, pixels: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray]:
        size = self.spec["image_size"]
        if pixels is not None:
            pixels = np.asarray(pixels)
            if pixels.shape != (len(items), size, size, 3):
                raise DataError(f"pixels must be ({len(items)}, {size}, {size}, 3) in 0-255, "
                                f"got {pixels.shape}", source="new items")
            return np.ones(len(items), bool), pixels
        paths = items["image_path"] if "image_path" in items else [None] * len(items)
        images, present = load_images(list(paths), size=size, progress=False)
        return present, images


def load_item_encoder(artifact_dir: str | Path) -> ItemEncoder:
    """Notebook 03's :func:`export_item_encoder` and notebook 02's text encoder of a run; a
    :class:`DataError` naming the notebook to run when one is missing."""
    root = artifacts.model_dir(artifact_dir, ENCODER_NAME)
    text_path = artifacts.model_dir(artifact_dir, "text_encoder")
    for path, notebook in ((root / "spec.json", "03_multimodal_fusion"),
                           (text_path / "saved_model.pb", "02_text_encoding")):
        if not path.exists():
            raise DataError(f"no {path.relative_to(artifact_dir)}: run notebook {notebook} "
                            f"with artifact_dir={str(artifact_dir)!r} first")
    spec = json.loads((root / "spec.json").read_text(encoding="utf-8"))
    remedy = f"run notebook 03_multimodal_fusion with artifact_dir={str(artifact_dir)!r}"
    text = load_saved_model(text_path, remedy).signatures["serving_default"]
    image = load_saved_model(root / "image", remedy) if (root / "image").exists() else None
    return ItemEncoder(spec, text, load_saved_model(root / "fusion", remedy), image)


def item_content_rows(encoded: Mapping[str, np.ndarray], source: str, catalogue: pd.DataFrame,
                      items: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """The retrieval content of new ``items`` ``(n, d + a)``, as ``features.item_content``
    builds the catalogue's: the ``source`` vector (``"fused"``, ``"text"``, or none for
    ``"facts"``) next to the one-hot facts of ``columns`` in the catalogue's vocabulary (a
    value the catalogue lacks gets no indicator)."""
    if source not in CONTENT_SOURCES:
        raise DataError(f"content source {source!r} cannot be rebuilt from a new item's fields; "
                        f"choose one of {list(CONTENT_SOURCES)}", source="new items")
    _, names = item_attribute_matrix(catalogue, columns)
    both, both_names = item_attribute_matrix(pd.concat([catalogue, items], ignore_index=True),
                                             columns)
    position = {name: j for j, name in enumerate(both_names)}
    facts = np.zeros((len(items), len(names)), np.float32)
    for j, name in enumerate(names):
        if name in position:
            facts[:, j] = both[len(catalogue):, position[name]]
    vectors = (np.zeros((len(items), 0), np.float32) if source == "facts"
               else np.asarray(encoded[source], np.float32))
    return np.concatenate([vectors, facts], axis=1)


def candidate_vectors(model: Any, content: np.ndarray) -> np.ndarray:
    """Candidate embeddings ``(n, dim)`` of new items from their content rows ``(n, d)``:
    ``model.new_item_embedding`` (notebook 04), after checking the model reads content and
    the rows fit it. No weight changes."""
    tower = model.item_tower
    if not tower.use_content:
        raise DataError("this model's item tower reads no content: a new item would only get "
                        "the shared out-of-vocabulary id row; use a content or fused variant",
                        source="new items")
    width = int(tower.content.shape[1])
    content = np.asarray(content, np.float32)
    if content.ndim != 2 or content.shape[1] != width or not np.isfinite(content).all():
        raise DataError(f"content rows must be finite (n, {width}) like the model's item "
                        f"content, got shape {content.shape}", source="new items")
    return model.new_item_embedding(content).numpy()


def add_items(index: tfrs.layers.factorized_top_k.BruteForce, vectors: np.ndarray,
              item_ids: Sequence[str]) -> tfrs.layers.factorized_top_k.BruteForce:
    """Append candidates ``(n, dim)`` named ``item_ids`` to a built brute-force ``index``, in
    place (its table is re-indexed with the rows added); the next query can return them."""
    if not isinstance(index, tfrs.layers.factorized_top_k.BruteForce):
        raise DataError(f"add_items extends a BruteForce index, got {type(index).__name__}: "
                        "rebuild a ScaNN index over the full table instead", source="new items")
    if getattr(index, "_candidates", None) is None:
        raise DataError("the index is empty: build it (serving.build_brute_force) first",
                        source="new items")
    table, known = index._candidates, index._identifiers  # tfrs keeps both as weights
    ids = np.asarray(item_ids).astype(str).reshape(-1)
    vectors = np.asarray(vectors, np.float32)
    if vectors.shape != (len(ids), int(table.shape[1])):
        raise DataError(f"vectors must be ({len(ids)}, {int(table.shape[1])}) for {len(ids)} "
                        f"ids, got {vectors.shape}", source="new items")
    clash = sorted(set(ids) & set(known.numpy().astype(str)))
    if clash or len(set(ids)) != len(ids):
        raise DataError(f"item ids already in the index or repeated: {clash[:5] or list(ids)}",
                        source="new items")
    index.index(tf.concat([table, tf.constant(vectors)], axis=0),
                tf.concat([known, tf.constant(ids, tf.string)], axis=0))
    return index


@dataclasses.dataclass
class AddedItems:
    """What :func:`add_new_items` did: the ``item_ids``, their ``encoded`` fields (``text``,
    ``fused``...), retrieval ``content`` ``(n, d + a)``, candidate ``vectors`` ``(n, dim)`` and
    wall ``seconds`` per step (``encode``, ``tower``, ``index``, ``total``)."""

    item_ids: list[str]
    encoded: dict[str, np.ndarray]
    content: np.ndarray
    vectors: np.ndarray
    seconds: dict[str, float]


def add_new_items(index: tfrs.layers.factorized_top_k.BruteForce, model: Any,
                  encoder: ItemEncoder, items: pd.DataFrame, *, source: str, prepared: Any,
                  pixels: np.ndarray | None = None) -> AddedItems:
    """Encode new ``items`` from their raw fields (text, image, fusion), pass them through
    ``model``'s item tower as unseen items and append them to ``index``: after this call the
    index can return them. ``source``: the content the model's tower reads
    (:data:`CONTENT_SOURCES`); ``prepared``: the catalogue (its facts' vocabulary)."""
    if "item_id" not in getattr(items, "columns", ()):
        raise DataError("new items need an item_id column", source="new items")
    started = time.perf_counter()
    encoded = encoder.encode(items, pixels)
    content = item_content_rows(encoded, source, prepared.items, items, fact_columns(prepared))
    encoded_at = time.perf_counter()
    vectors = candidate_vectors(model, content)
    tower_at = time.perf_counter()
    add_items(index, vectors, items["item_id"].astype(str).tolist())
    done = time.perf_counter()
    seconds = {"encode": encoded_at - started, "tower": tower_at - encoded_at,
               "index": done - tower_at, "total": done - started}
    return AddedItems(items["item_id"].astype(str).tolist(), encoded, content, vectors,
                      {k: round(v, 4) for k, v in seconds.items()})


def item_ranks(index: tfrs.layers.factorized_top_k.BruteForce, user_ids: Sequence[str],
               timestamps: Any, item_ids: Sequence[str]) -> np.ndarray:
    """``(n_users, n_items)`` int: the 1-based rank of each of ``item_ids`` in each user's
    list over the whole index (seen items not removed, as served); 0 where an id is absent."""
    from .serving import recommend

    size = int(index._identifiers.shape[0])
    listed, _ = recommend(index, list(user_ids), timestamps, k=size)
    wanted = np.asarray(item_ids).astype(str).reshape(-1)
    ranks = np.zeros((len(listed), len(wanted)), np.int64)
    for row, ids in enumerate(listed):
        position = {item: rank for rank, item in enumerate(ids, start=1)}
        ranks[row] = [position.get(item, 0) for item in wanted]
    return ranks
