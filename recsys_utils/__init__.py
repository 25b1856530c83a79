"""recsys_utils: the package behind the course notebooks.

Modules mirror the stages of the series: ``data`` (loading into one schema),
``synthetic`` (the embedded default world), ``splits``, ``artifacts``,
``profiles`` and so on. Importing the package sets ``TF_USE_LEGACY_KERAS=1``
before anything can import TensorFlow, because TensorFlow Recommenders needs
``tf.keras`` to be Keras 2; keras-hub keeps using Keras 3 in the same process.

It also keeps notebook output readable (it runs first in every notebook):
``TF_CPP_MIN_LOG_LEVEL=2`` unless set (TensorFlow's C++ INFO and WARNING lines
off, errors kept), and inside a Jupyter kernel
:func:`recsys_utils.progress.quiet_noise` drops the stack's known harmless
stderr lines and shows each repeated warning once. ``RECSYS_VERBOSE_LOGS=1``
keeps everything.
"""

import os

# Must happen before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if os.environ.get("RECSYS_VERBOSE_LOGS", "").strip().lower() not in ("1", "true", "yes"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import progress as _progress  # noqa: E402  (standard library only: no TensorFlow yet)

_progress.quiet_noise()

__version__ = "0.1.0"
