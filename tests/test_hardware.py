"""Strategy and precision choice, with the device list faked."""

from __future__ import annotations

import json
from dataclasses import dataclass

import recsys_utils  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from recsys_utils import hardware
from recsys_utils.schema import DataError


@dataclass(frozen=True)
class FakeGPU:
    name: str
    device_type: str = "GPU"


def gpus(n: int) -> list[FakeGPU]:
    return [FakeGPU(f"/physical_device:GPU:{i}") for i in range(n)]


@pytest.fixture
def capability(monkeypatch):
    """Fake compute capabilities: set ``capability.value = (major, minor)`` or a dict by name."""

    class Holder:
        value: object = (8, 0)

    holder = Holder()

    def details(device):
        value = holder.value
        if isinstance(value, dict):
            value = value[device.name]
        return {} if value is None else {"compute_capability": value, "device_name": "Fake"}

    monkeypatch.setattr(tf.config.experimental, "get_device_details", details)
    return holder


@pytest.fixture
def float32_policy_afterwards():
    yield
    tf_keras.mixed_precision.set_global_policy("float32")


def two_workers(index: int = 0) -> str:
    return json.dumps({"cluster": {"worker": ["host1:12345", "host2:12345"]},
                       "task": {"type": "worker", "index": index}})


def test_no_gpu_is_default_cpu_float32():
    choice = hardware.describe_hardware(gpus=[], tf_config="")
    assert choice.strategy_name == "default"
    assert choice.devices == ("/cpu:0",)
    assert choice.mixed_precision == "float32"
    assert "CPU" in choice.reason and "\n" not in choice.reason


def test_one_ampere_gpu_is_one_device_bf16(capability):
    capability.value = (8, 0)
    choice = hardware.describe_hardware(gpus=gpus(1), tf_config="")
    assert choice.strategy_name == "OneDeviceStrategy:GPU"
    assert choice.devices == ("/gpu:0",)
    assert choice.mixed_precision == "mixed_bfloat16"
    assert "8.0" in choice.reason


@pytest.mark.parametrize("cc,policy", [((7, 5), "mixed_float16"), ((7, 0), "mixed_float16"),
                                       ((6, 1), "float32"), ((9, 0), "mixed_bfloat16"),
                                       (None, "float32")])
def test_precision_by_compute_capability(capability, cc, policy):
    capability.value = cc
    assert hardware.describe_hardware(gpus=gpus(1), tf_config="").mixed_precision == policy


def test_two_gpus_are_mirrored_and_weakest_decides(capability):
    capability.value = {"/physical_device:GPU:0": (8, 6), "/physical_device:GPU:1": (7, 5)}
    choice = hardware.describe_hardware(gpus=gpus(2), tf_config="")
    assert choice.strategy_name == "MirroredStrategy"
    assert choice.devices == ("/gpu:0", "/gpu:1")
    assert choice.mixed_precision == "mixed_float16"  # the T4-class card rules out bf16


def test_tf_config_with_two_workers_is_multi_worker(capability):
    choice = hardware.describe_hardware(gpus=[], tf_config=two_workers(1))
    assert choice.strategy_name == "MultiWorkerMirroredStrategy"
    assert choice.num_workers == 2
    assert choice.mixed_precision == "float32"
    assert "2 workers" in choice.reason and "worker 1" in choice.reason
    capability.value = (8, 0)
    with_gpus = hardware.describe_hardware(gpus=gpus(2), tf_config=two_workers())
    assert with_gpus.strategy_name == "MultiWorkerMirroredStrategy"
    assert with_gpus.devices == ("/gpu:0", "/gpu:1")


def test_tf_config_with_one_worker_falls_back_to_local():
    one = json.dumps({"cluster": {"worker": ["host1:1"]}, "task": {"type": "worker", "index": 0}})
    assert hardware.describe_hardware(gpus=[], tf_config=one).strategy_name == "default"


def test_tf_config_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", two_workers())
    assert hardware.describe_hardware(gpus=[]).strategy_name == "MultiWorkerMirroredStrategy"
    monkeypatch.delenv("TF_CONFIG")
    assert hardware.describe_hardware(gpus=[]).strategy_name == "default"


@pytest.mark.parametrize("bad,match", [
    ('{"cluster": {"worker": ["a:1", "b:2"]', "not valid JSON"),
    ('["a:1"]', "JSON object"),
    ('{"cluster": {"worker": "a:1,b:2"}}', "lists of 'host:port'"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}}', "no 'task'"),
    ('{"cluster": {"worker": ["a:1", "b:2"], "ps": ["c:3"]}, "task": {"type": "worker", "index": 0}}',
     "parameter-server"),
])
def test_malformed_tf_config_is_a_clear_error(bad, match):
    with pytest.raises(DataError, match=match) as error:
        hardware.describe_hardware(gpus=[], tf_config=bad)
    assert "TF_CONFIG" in str(error.value)


def test_choose_strategy_on_this_machine_trains(float32_policy_afterwards):
    strategy, choice = hardware.choose_strategy()
    assert isinstance(strategy, tf.distribute.Strategy)
    assert choice.reason
    assert tf_keras.mixed_precision.global_policy().name == choice.mixed_precision
    with strategy.scope():
        model = tf_keras.Sequential([
            tf_keras.layers.Input(shape=(3,)),
            tf_keras.layers.Dense(4, activation="relu"),
            tf_keras.layers.Dense(1, dtype="float32"),
        ])
        model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    history = model.fit(x, x.sum(axis=1, keepdims=True), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_choose_strategy_sets_and_leaves_the_policy(float32_policy_afterwards, capability):
    # A 1-GPU Volta box (faked): the policy follows the choice...
    capability.value = (7, 0)
    choice = hardware.describe_hardware(gpus=gpus(1), tf_config="")
    tf_keras.mixed_precision.set_global_policy(choice.mixed_precision)
    assert tf_keras.mixed_precision.global_policy().name == "mixed_float16"
    # ...and on this CPU machine choose_strategy resets it to float32, unless told not to.
    hardware.choose_strategy(apply_mixed_precision=False, gpus=[], tf_config="")
    assert tf_keras.mixed_precision.global_policy().name == "mixed_float16"
    hardware.choose_strategy(gpus=[], tf_config="")
    assert tf_keras.mixed_precision.global_policy().name == "float32"


WORKER_SCRIPT = """
import json, sys
import recsys_utils
from recsys_utils import hardware
strategy, choice = hardware.choose_strategy(gpus=[], tf_config=sys.argv[1])
import numpy as np, tensorflow as tf, tf_keras
with strategy.scope():
    model = tf_keras.Sequential([tf_keras.layers.Input(shape=(3,)), tf_keras.layers.Dense(1)])
    model.compile("sgd", "mse")
x = np.ones((8, 3), "float32")
model.fit(tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4), epochs=1, verbose=0)
print("RESULT", json.dumps({"name": choice.strategy_name, "replicas": strategy.num_replicas_in_sync}))
"""


def test_multi_worker_strategy_really_trains_with_two_local_workers(tmp_path):
    """Two processes on localhost form a real 2-worker cluster (~15 s)."""
    import os
    import socket
    import subprocess
    import sys

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("localhost", 0))
            ports.append(s.getsockname()[1])
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script),
             json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:]
        result = json.loads(out.split("RESULT", 1)[1])
        assert result == {"name": "MultiWorkerMirroredStrategy", "replicas": 2}


def test_cpu_description_names_the_cores_it_ran_on():
    import os

    described = hardware.cpu_description()
    assert f"{os.cpu_count()} logical cores" in described
