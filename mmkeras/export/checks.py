"""Checks an export must pass: only servable ops, and the same predictions.

Both run in a fresh Python process that imports TensorFlow (and TensorFlow
Text) but not mmkeras, as TF Serving would see the SavedModel.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tensorflow.core.protobuf import saved_model_pb2

from mmkeras.errors import SpecError

# Registered in core TensorFlow, but they call back into Python: TF Serving
# cannot run them.
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

_REGISTRY_SCRIPT = """
import json, sys
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
names = json.load(sys.stdin)
core = {n for n in names if op_def_registry.get(n) is not None}
try:
    import tensorflow_text  # noqa: F401  (TF Serving links TensorFlow Text ops)
except ImportError:
    pass
text = {n for n in names if op_def_registry.get(n) is not None} - core
print(json.dumps({"core": sorted(core), "text": sorted(text)}))
"""


def ops_by_function(saved_model_dir):
    """{op type: [where it is used]} over the graph and every function."""
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    uses = {}
    for meta_graph in proto.meta_graphs:
        for node in meta_graph.graph_def.node:
            uses.setdefault(node.op, set()).add("the main graph")
        for function in meta_graph.graph_def.library.function:
            for node in function.node_def:
                uses.setdefault(node.op, set()).add(function.signature.name)
    return {op: sorted(places) for op, places in uses.items()}


def check_ops(saved_model_dir):
    """Returns the offenders: `op (used in ...)` for each op TF Serving lacks."""
    uses = ops_by_function(saved_model_dir)
    result = subprocess.run(
        [sys.executable, "-c", _REGISTRY_SCRIPT], input=json.dumps(sorted(uses)),
        capture_output=True, text=True, check=True,
    )
    known = json.loads(result.stdout.strip().splitlines()[-1])
    servable = set(known["core"]) | set(known["text"])
    offenders = []
    for op, places in sorted(uses.items()):
        if op in PYTHON_OPS or op not in servable:
            where = ", ".join(places[:3]) + (" ..." if len(places) > 3 else "")
            reason = "calls back into Python" if op in PYTHON_OPS else "is not a core TensorFlow or TensorFlow Text op"
            offenders.append(f"{op} {reason} (used in {where})")
    return offenders


_PARITY_SCRIPT = """
import base64, json, sys
import numpy as np
import tensorflow as tf
try:
    import tensorflow_text  # noqa: F401
except ImportError:
    pass
path, rows_file, out_file = sys.argv[1:4]
rows = json.load(open(rows_file))
raw = {name: tf.constant([base64.b64decode(v) for v in values]) for name, values in rows.items()}
outputs = tf.saved_model.load(path).signatures["serving_default"](**raw)
np.savez(out_file, **{k: v.numpy() for k, v in outputs.items() if v.dtype != tf.string})
print("mmkeras" in sys.modules)
"""


def check_parity(saved_model_dir, raw_rows, expected, output_key, tolerance=1e-5):
    """Serves `raw_rows` from the SavedModel in a fresh process; compares.

    Args:
        saved_model_dir: str. The exported version folder.
        raw_rows: dict. Feature name to a list of raw values (str or bytes).
        expected: np.ndarray. The in-memory model's output for those rows.
        output_key: str. The signature output to compare with `expected`.
        tolerance: float. Largest allowed absolute difference.

    Returns:
        The largest absolute difference; raises SpecError above `tolerance`.
    """
    with tempfile.TemporaryDirectory() as folder:
        rows_file = os.path.join(folder, "rows.json")
        with open(rows_file, "w") as f:
            json.dump(
                {
                    name: [base64.b64encode(v.encode("utf-8") if isinstance(v, str) else v).decode() for v in values]
                    for name, values in raw_rows.items()
                },
                f,
            )
        out_file = os.path.join(folder, "outputs.npz")
        result = subprocess.run(
            [sys.executable, "-c", _PARITY_SCRIPT, saved_model_dir, rows_file, out_file],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise SpecError(f"the exported model failed to serve in a fresh process:\n{result.stderr[-2000:]}")
        if result.stdout.strip().splitlines()[-1] != "False":
            raise SpecError("the parity check's fresh process imported mmkeras")
        served = np.load(out_file)[output_key]
    difference = float(np.max(np.abs(served - np.asarray(expected).reshape(served.shape))))
    if difference > tolerance:
        raise SpecError(
            f"the exported model's `{output_key}` differ from the trained model's by up to "
            f"{difference:.2e} (allowed {tolerance:.0e}); the export was not published."
        )
    return difference
