"""What every benchmark prints besides its table: the machine and the load it ran under.

Kept apart from the benchmarks themselves so that printing one line does not
load the text encoder or the TFLite tooling.
"""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path

import recsys_utils  # noqa: F401 - first: sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads

#: Packages whose versions the hardware line names (distribution name, label).
PACKAGES = (("tensorflow", "TensorFlow"), ("tensorflow-recommenders", "TFRS"),
            ("keras-hub", "keras-hub"), ("scann", "ScaNN"))


def loadavg(path: str | Path = "/proc/loadavg") -> str:
    """The 1-minute load average as printed by the kernel (``"n/a"`` where there is none).

    2.0 on a 2-core machine means both cores were busy with something else on average.
    """
    try:
        return Path(path).read_text().split()[0]
    except (OSError, IndexError):
        return "n/a"


def package_version(distribution: str) -> str:
    """The installed version of ``distribution``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def hardware_line() -> str:
    """One line naming where the timings ran.

    ``"CPU: <model>, <n> logical cores (<flags>), <m> GiB RAM; GPU: <count or none>;
    TensorFlow x, TFRS y, keras-hub z, ScaNN w, Python v"``.
    """
    import tensorflow as tf

    from recsys_utils.hardware import cpu_description

    gpus = len(tf.config.list_physical_devices("GPU"))
    versions = ", ".join(f"{label} {package_version(name)}" for name, label in PACKAGES)
    return (f"CPU: {cpu_description()}; GPU: {gpus or 'none'}; {versions}, "
            f"Python {platform.python_version()}")


def gemm_flops(size: int = 2048, repeats: int = 5) -> float:
    """float32 flop/s of this machine's best dense matrix multiply: ``size``-cube NumPy
    (BLAS) matmuls, the fastest of ``repeats``. The compute limit a benchmark can reach:
    vendor peaks depend on FMA units and SMT that a VM does not show."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b  # threads up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best
