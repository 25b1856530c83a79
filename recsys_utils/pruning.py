"""Magnitude pruning of a trained tf-keras model (notebook 06), with ``tfmot``.

``tfmot.sparsity.keras.prune_low_magnitude`` wraps a layer, or the layers of a Sequential or
functional model, and its ``UpdatePruningStep`` callback finds wrappers through ``model.layers``.
The towers and the ranker are subclassed models holding their layers as attributes, so
:func:`wrap_layers` puts a wrapper wherever a prunable layer sits, :meth:`WrappedLayers.callback`
steps exactly those wrappers and :meth:`WrappedLayers.strip` puts the layers (now sparse) back;
:func:`sparsity` counts the zeros.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_model_optimization as tfmot

from .schema import DataError

__all__ = ["PRUNABLE", "WrappedLayers", "sparsity", "wrap_layers"]

#: The layer types whose weight matrices are pruned (``kernel``, ``embeddings``).
PRUNABLE = (tf.keras.layers.Dense, tf.keras.layers.Embedding)


@dataclasses.dataclass
class WrappedLayers:
    """The wrappers :func:`wrap_layers` put in place, and how to take them out again."""

    wrappers: list[tf.keras.layers.Layer]
    _undo: list[Callable[[], None]]

    def callback(self) -> tf.keras.callbacks.Callback:
        """``tfmot``'s ``UpdatePruningStep`` for these wrappers (a ``fit`` without it fails)."""
        return _UpdateWrappers(self.wrappers)

    def strip(self) -> None:
        """Put the original layers back (their weights keep the zeros), as ``strip_pruning``
        does for a Sequential model."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


class _UpdateWrappers(tfmot.sparsity.keras.UpdatePruningStep):
    """``UpdatePruningStep`` given its wrappers: its own search misses attribute-held layers."""

    def __init__(self, wrappers: list[tf.keras.layers.Layer]) -> None:
        super().__init__()
        self._wrappers = list(wrappers)

    def on_train_begin(self, logs: Any = None) -> None:
        self.prunable_layers = self._wrappers
        for layer in self.prunable_layers:
            if int(layer.pruning_step.numpy()) == -1:  # a new wrapper: start the schedule
                layer.pruning_step.assign(0)


def _children(layer: tf.keras.layers.Layer) -> list[tuple[str, Any]]:
    """``(attribute, value)`` for each layer, or public list of layers, ``layer`` holds."""
    return [(name, value) for name, value in list(vars(layer).items())
            if (isinstance(value, tf.keras.layers.Layer) and not name.startswith("_self"))
            or (isinstance(value, list) and not name.startswith("_")
                and any(isinstance(v, tf.keras.layers.Layer) for v in value))]


def wrap_layers(model: tf.keras.layers.Layer,
                wrap: Callable[[tf.keras.layers.Layer], tf.keras.layers.Layer]) -> WrappedLayers:
    """Replace every :data:`PRUNABLE` layer reachable from ``model`` by ``wrap(layer)``.

    Layers held twice (a tower shared by the history and the candidates) are wrapped once.
    A Sequential is replaced by a Sequential of its wrapped layers. The layers must be built
    (the model called once), so the wrappers start from their trained weights.
    """
    wrapped: dict[int, tf.keras.layers.Layer] = {}
    result, seen = WrappedLayers([], []), set()

    def wrapper_for(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
        if not layer.built:
            raise DataError(f"layer {layer.name!r} has no weights yet: call the model on a "
                            "batch before wrapping it")
        if id(layer) not in wrapped:
            wrapper = wrap(layer)
            # Built now, from the shape the layer was built with: the pruning step must exist
            # before fit (the callback starts it) and a nested layer is built only inside fit.
            wrapper.build(layer._build_input_shape)
            wrapper.built = True
            wrapped[id(layer)] = wrapper
            result.wrappers.append(wrapper)
        return wrapped[id(layer)]

    def swapped(child: Any) -> Any:
        """What takes ``child``'s place: its wrapper, a Sequential or list of swapped layers."""
        if isinstance(child, PRUNABLE):
            return wrapper_for(child)
        if isinstance(child, tf.keras.Sequential):
            return tf.keras.Sequential([swapped(c) for c in child.layers], name=child.name)
        if isinstance(child, list):
            return [swapped(c) for c in child]
        if isinstance(child, tf.keras.layers.Layer):
            visit(child)
        return child

    def visit(layer: tf.keras.layers.Layer) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        for name, child in _children(layer):
            new = swapped(child)
            if new is not child:
                # A new list, not items set in place: a checkpoint refuses a list changed in place.
                setattr(layer, name, new)
                result._undo.append(lambda layer=layer, name=name, child=child:
                                    setattr(layer, name, child))

    visit(model)
    if not result.wrappers:
        raise DataError(f"{type(model).__name__} has no Dense or Embedding layer to prune")
    return result


def sparsity(model: tf.keras.layers.Layer) -> float:
    """The share of zeros in the weight matrices (Dense kernels, embedding tables) of ``model``."""
    weights = [layer.trainable_weights[0].numpy()
               for layer in model._flatten_layers(include_self=False)  # each layer once
               if isinstance(layer, PRUNABLE) and layer.trainable_weights]
    if not weights:
        raise DataError(f"{type(model).__name__} has no Dense or Embedding weights")
    return float(sum((w == 0).sum() for w in weights) / sum(w.size for w in weights))
