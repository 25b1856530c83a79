"""Run-time choice of the ``tf.distribute`` strategy (:func:`describe_hardware`) and of the
precision policy, set on ``tf_keras`` (Keras 2, which TensorFlow Recommenders uses)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tensorflow as tf

from recsys_utils.schema import DataError

__all__ = ["HardwareChoice", "describe_hardware", "choose_strategy", "cpu_description"]

MULTI_WORKER = "MultiWorkerMirroredStrategy"
MIRRORED = "MirroredStrategy"
ONE_GPU = "OneDeviceStrategy:GPU"
DEFAULT = "default"

#: Minimum compute capability for each mixed policy.
BF16_MIN_CC = (8, 0)
FP16_MIN_CC = (7, 0)


@dataclasses.dataclass(frozen=True)
class HardwareChoice:
    """What :func:`describe_hardware` decided, and why (``reason``: one line to print).

    ``devices`` are the local logical devices, e.g. ``("/gpu:0", "/gpu:1")`` or
    ``("/cpu:0",)``; ``num_workers`` is 1 unless multi-worker.
    """

    strategy_name: str
    devices: tuple[str, ...]
    mixed_precision: str
    reason: str
    num_workers: int = 1


def _parse_tf_config(tf_config: str | None) -> dict[str, Any] | None:
    """TF_CONFIG as a dict, or None when unset; DataError when malformed."""
    if tf_config is None or not tf_config.strip():
        return None
    try:
        config = json.loads(tf_config)
    except json.JSONDecodeError as error:
        raise DataError(
            f"is not valid JSON ({error.msg} at position {error.pos}): {tf_config[:200]!r}; "
            'expected e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}', source="TF_CONFIG") from None
    if not isinstance(config, dict):
        raise DataError(f"must be a JSON object, got {type(config).__name__}", source="TF_CONFIG")
    cluster = config.get("cluster", {})
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise DataError(f"'cluster' must map job names to lists of 'host:port', got {cluster!r}",
                        source="TF_CONFIG")
    return config


def _logical_name(device: Any, position: int) -> str:
    """'/physical_device:GPU:1' -> '/gpu:1' (the name strategies accept)."""
    match = re.search(r"(GPU|CPU):(\d+)$", str(getattr(device, "name", "")))
    return f"/gpu:{match.group(2) if match else position}"


def _compute_capability(gpu: Any) -> tuple[int, int] | None:
    try:
        details = tf.config.experimental.get_device_details(gpu)
    except Exception:  # noqa: BLE001 - details are best-effort; unknown -> float32
        return None
    cc = (details or {}).get("compute_capability")
    return (int(cc[0]), int(cc[1])) if cc else None


def _precision(gpus: Sequence[Any]) -> tuple[str, str]:
    """(policy, explanation) for the local devices; the weakest GPU decides."""
    # bfloat16 on CPU is a per-model call: it only pays with AMX/AVX512-BF16 and slows
    # several Keras 2 layers.
    if not gpus:
        return "float32", "float32 on CPU"
    capabilities = [_compute_capability(gpu) for gpu in gpus]
    if any(cc is None for cc in capabilities):
        return "float32", "float32 (GPU compute capability unknown)"
    weakest = min(capabilities)
    cc_text = f"compute capability {weakest[0]}.{weakest[1]}"
    # bfloat16 keeps float32's exponent range, so no loss scaling: tfrs.Model.train_step
    # never scales the loss, so under mixed_float16 small gradients underflow.
    if weakest >= BF16_MIN_CC:
        return "mixed_bfloat16", (f"mixed_bfloat16 ({cc_text}: bf16 tensor cores, "
                                  "no loss scaling needed)")
    if weakest >= FP16_MIN_CC:
        return "mixed_float16", (f"mixed_float16 ({cc_text}: fp16 tensor cores; "
                                 "custom train steps need loss scaling)")
    return "float32", f"float32 ({cc_text} < 7.0: no tensor cores)"


def describe_hardware(gpus: list | None = None, tf_config: str | None = None) -> HardwareChoice:
    """Decide strategy and precision from the local GPUs and TF_CONFIG: MultiWorkerMirrored
    when TF_CONFIG names > 1 worker, Mirrored over > 1 GPU, OneDevice on one, else the default;
    by the weakest GPU's compute capability, mixed_bfloat16 from 8.0, mixed_float16 from 7.0,
    else (and on CPU) float32.

    ``gpus``: physical GPU devices (default: those TensorFlow lists; ``[]``:
    none); ``tf_config``: the TF_CONFIG JSON (default: the environment's; ``""``:
    no cluster). DataError (naming TF_CONFIG) when it is not valid JSON, not a
    cluster description, or a parameter-server cluster (not handled here).
    """
    gpus = list(tf.config.list_physical_devices("GPU") if gpus is None else gpus)
    config = _parse_tf_config(os.environ.get("TF_CONFIG") if tf_config is None else tf_config)
    gpu_names = tuple(_logical_name(gpu, i) for i, gpu in enumerate(gpus))
    policy, why_policy = _precision(gpus)

    cluster = (config or {}).get("cluster", {})
    # A "chief" is a worker too for MultiWorkerMirroredStrategy.
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    if workers > 1:
        if cluster.get("ps"):
            raise DataError("describes a parameter-server cluster ('ps' jobs); use "
                            "tf.distribute.ParameterServerStrategy directly", source="TF_CONFIG")
        task = config.get("task")
        if not isinstance(task, dict) or "type" not in task or "index" not in task:
            raise DataError(f"has {workers} workers but no 'task' with 'type' and 'index' saying "
                            "which one this process is", source="TF_CONFIG")
        where = f"{len(gpus)} GPU(s)" if gpus else "CPU only"
        return HardwareChoice(
            MULTI_WORKER, gpu_names or ("/cpu:0",), policy,
            f"MultiWorkerMirroredStrategy: {workers} workers from TF_CONFIG, this is "
            f"{task['type']} {task['index']} with {where}; {why_policy}", num_workers=workers)
    if len(gpus) > 1:
        return HardwareChoice(MIRRORED, gpu_names, policy, f"MirroredStrategy over {len(gpus)} "
                              f"GPUs {', '.join(gpu_names)}; {why_policy}")
    if gpus:
        return HardwareChoice(ONE_GPU, gpu_names, policy,
                              f"OneDeviceStrategy on {gpu_names[0]}; {why_policy}")
    return HardwareChoice(DEFAULT, ("/cpu:0",), policy,
                          f"default strategy on CPU (no GPU found); {why_policy}")


def _build(choice: HardwareChoice, tf_config: str | None) -> tf.distribute.Strategy:
    if choice.strategy_name == MULTI_WORKER:
        config = _parse_tf_config(tf_config)
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(config["cluster"]), task_type=config["task"]["type"],
            task_id=int(config["task"]["index"]), rpc_layer=config.get("rpc_layer", "grpc"))
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    if choice.strategy_name == MIRRORED:
        return tf.distribute.MirroredStrategy(devices=list(choice.devices))
    if choice.strategy_name == ONE_GPU:
        return tf.distribute.OneDeviceStrategy(choice.devices[0])
    return tf.distribute.get_strategy()  # the default (no-op) strategy


def choose_strategy(*, apply_mixed_precision: bool = True, gpus: list | None = None,
                    tf_config: str | None = None) -> tuple[tf.distribute.Strategy, HardwareChoice]:
    """``(strategy, choice)``: the strategy :func:`describe_hardware` picks, built.

    ``apply_mixed_precision`` sets the ``tf_keras`` global policy to ``choice.mixed_precision``
    (``"float32"`` undoes an earlier mixed policy). Build models under ``strategy.scope()``; under
    a mixed policy give the last layer ``dtype="float32"`` so logits and losses stay float32.
    Multi-worker: every worker must call this before other TensorFlow ops (the strategy starts the
    collective-ops server).
    """
    tf_config = os.environ.get("TF_CONFIG") if tf_config is None else tf_config
    choice = describe_hardware(gpus=gpus, tf_config=tf_config)
    strategy = _build(choice, tf_config)
    if apply_mixed_precision:
        import tf_keras  # Keras 2: the Keras tfrs models are built with

        tf_keras.mixed_precision.set_global_policy(choice.mixed_precision)
    return strategy, choice


def cpu_description() -> str:
    """``"<model name>, <n> logical cores (<int8/bf16 flags>), <m> GiB RAM"``: where timings ran."""
    import platform

    name, flags, memory = platform.processor() or "unknown CPU", "", ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines()
                    if line.startswith("model name"))
        flags = ", ".join(f for f in ("avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
                          if f in info.split())
    except (OSError, StopIteration):
        pass
    try:
        kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return f"{name}, {os.cpu_count()} logical cores ({flags or 'no VNNI/AMX flags'}){memory}"
