"""recsys_utils: the package behind the course notebooks.

Modules mirror the stages of the series: ``data`` (loading into one schema),
``synthetic`` (the embedded default world), ``splits``, ``artifacts``,
``profiles`` and so on. Importing the package sets ``TF_USE_LEGACY_KERAS=1``
before anything can import TensorFlow, because TensorFlow Recommenders needs
``tf.keras`` to be Keras 2; keras-hub keeps using Keras 3 in the same process.
"""

import os

# Must happen before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
