"""The exported search model loads the documented way: ``search_serving.load_search_model``
registers the tokeniser's ``tensorflow_text`` ops before ``tf.saved_model.load``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A SavedModel that needs a tensorflow-text op (NormalizeUTF8, as the search model's tokeniser).
EXPORT = """
import sys
import tensorflow as tf
import tensorflow_text as tf_text

class Normalize(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(self, text):
        return {"text": tf_text.normalize_utf8(text, "NFKC")}

module = Normalize()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
"""

# A fresh process, as a user's: the bare load fails, the documented loader works.
LOAD = """
import sys
import tensorflow as tf
from recsys_utils import search_serving
from recsys_utils.schema import DataError

assert "tensorflow_text" not in sys.modules, "imported too early: the test would prove nothing"
try:
    tf.saved_model.load(sys.argv[1])
    print("bare load: ok")
except Exception as error:
    print("bare load failed:", "NormalizeUTF8" in str(error))
loaded = search_serving.load_search_model(sys.argv[1])
out = loaded.module.signatures["serving_default"](text=tf.constant(["\\uff21bc"]))
print("loader:", out["text"].numpy()[0].decode())
try:
    search_serving.load_search_model(sys.argv[1] + "-missing")
except DataError as error:
    print("missing:", "notebook 07" in str(error))
"""


def _python(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_search_model_loader_registers_tensorflow_text_ops(tmp_path):
    path = str(tmp_path / "model")
    _python(EXPORT, path)
    lines = _python(LOAD, path).splitlines()
    assert "bare load failed: True" in lines  # the error users met without the loader
    assert "loader: Abc" in lines             # NFKC ran: the op was registered
    assert "missing: True" in lines
