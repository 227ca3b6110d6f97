"""Checks an export must pass: only servable ops, the same predictions, and
the documented signatures.

The op and parity checks run in a fresh Python process that imports
TensorFlow (and TensorFlow Text) but not mmkeras, as TF Serving would see the
SavedModel; the signatures are read from saved_model.pb.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from mmkeras.errors import ExportError

# Registered in core TensorFlow, but they call back into Python: TF Serving
# cannot run them.
PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

# Looks each op up in the registry, with TensorFlow Text's ops and without,
# prints that at once (it explains a model that then fails to load), and
# serves the cases from the SavedModel if there are any.
_FRESH_PROCESS_SCRIPT = """
import base64, json, sys
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
job_file, out_file = sys.argv[1:3]
job = json.load(open(job_file))
core = {n for n in job["ops"] if op_def_registry.get(n) is not None}
try:
    import tensorflow_text  # noqa: F401  (TF Serving links TensorFlow Text ops)
except ImportError:
    pass
text = {n for n in job["ops"] if op_def_registry.get(n) is not None} - core
print(json.dumps({"core": sorted(core), "text": sorted(text)}), flush=True)
served = {}
if job["cases"]:
    signatures = tf.saved_model.load(job["path"]).signatures
    for i, case in enumerate(job["cases"]):
        raw = {n: tf.constant([base64.b64decode(v) for v in values]) for n, values in case["raw"].items()}
        served[str(i)] = signatures[case["signature"]](**raw)[case["output"]].numpy()
np.savez(out_file, **served)
print("mmkeras" in sys.modules)
"""


def _read_saved_model(saved_model_dir):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return proto


def ops_by_function(saved_model_dir):
    """{op type: [where it is used]} over the graph and every function."""
    uses = {}
    for meta_graph in _read_saved_model(saved_model_dir).meta_graphs:
        for node in meta_graph.graph_def.node:
            uses.setdefault(node.op, set()).add("the main graph")
        for function in meta_graph.graph_def.library.function:
            for node in function.node_def:
                uses.setdefault(node.op, set()).add(function.signature.name)
    return {op: sorted(places) for op, places in uses.items()}


def check_ops(saved_model_dir):
    """Returns the offenders: `op (used in ...)` for each op TF Serving lacks."""
    return check_in_fresh_process(saved_model_dir)[0]


def check_in_fresh_process(saved_model_dir, cases=(), tolerance=1e-5):
    """The op check and, given `cases`, the parity check, in one fresh process
    (one import of TensorFlow, not two).

    Parity: each case's rows are served from the SavedModel and compared with
    what the trained model gave.

    Returns:
        (offenders, largest difference): the ops TF Serving lacks, as
        `check_ops` names them, and the largest absolute difference over the
        cases (None when there are offenders or no cases).

    Raises:
        ExportError: the model failed to serve (and no op explains it), the
            process imported mmkeras, or a difference is above `tolerance`
            (naming the signature and output).
    """
    uses = ops_by_function(saved_model_dir)
    with tempfile.TemporaryDirectory() as folder:
        job_file, out_file = os.path.join(folder, "job.json"), os.path.join(folder, "outputs.npz")
        with open(job_file, "w") as f:
            json.dump({"ops": sorted(uses), "path": saved_model_dir, "cases": _cases_json(cases)}, f)
        result = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS_SCRIPT, job_file, out_file], capture_output=True, text=True
        )
        lines = result.stdout.strip().splitlines()
        registry = next((line for line in lines if line.startswith("{")), None)
        if registry is None:
            raise ExportError(f"the op check's fresh process failed:\n{result.stderr[-2000:]}")
        offenders = _offenders(uses, json.loads(registry))
        if offenders or not cases:
            return offenders, None
        if result.returncode != 0:
            raise ExportError(
                f"the exported model failed to serve in a fresh process:\n{result.stderr[-2000:]}"
            )
        if lines[-1] != "False":
            raise ExportError("the parity check's fresh process imported mmkeras")
        return offenders, _largest_difference(cases, np.load(out_file), tolerance)


def _offenders(uses, known):
    servable = set(known["core"]) | set(known["text"])
    offenders = []
    for op, places in sorted(uses.items()):
        if op in PYTHON_OPS or op not in servable:
            where = ", ".join(places[:3]) + (" ..." if len(places) > 3 else "")
            reason = (
                "calls back into Python"
                if op in PYTHON_OPS
                else "is not a core TensorFlow or TensorFlow Text op"
            )
            offenders.append(f"{op} {reason} (used in {where})")
    return offenders


def _b64(value):
    return base64.b64encode(value.encode("utf-8") if isinstance(value, str) else value).decode()


def _cases_json(cases):
    return [
        {
            "signature": case.signature,
            "output": case.output,
            "raw": {name: [_b64(v) for v in values] for name, values in case.raw.items()},
        }
        for case in cases
    ]


def _largest_difference(cases, served, tolerance):
    largest = 0.0
    for i, case in enumerate(cases):
        values = served[str(i)]
        difference = float(np.max(np.abs(values - np.asarray(case.expected).reshape(values.shape))))
        if difference > tolerance:
            raise ExportError(
                f"the exported model's `{case.signature}` output `{case.output}` differs from the "
                f"trained model's by up to {difference:.2e} (allowed {tolerance:.0e}); "
                "the export was not published."
            )
        largest = max(largest, difference)
    return largest


def _shape_as_listed(tensor_shape):
    if tensor_shape.unknown_rank:
        return "unknown_rank"
    return "(" + ", ".join(str(dim.size) for dim in tensor_shape.dim) + ")"


def signature_listing(saved_model_dir):
    """{signature: {input: (dtype, shape)}} of the `serve` graph, as
    `saved_model_cli show --all` prints them; read from saved_model.pb, where
    the tool reads them, without starting it (a TensorFlow import)."""
    listing = {}
    for meta_graph in _read_saved_model(saved_model_dir).meta_graphs:
        if "serve" not in meta_graph.meta_info_def.tags:
            continue
        for signature, definition in meta_graph.signature_def.items():
            listing[signature] = {
                name: (types_pb2.DataType.Name(info.dtype), _shape_as_listed(info.tensor_shape))
                for name, info in definition.inputs.items()
            }
    return listing


def check_listing(saved_model_dir, expected):
    """The SavedModel must list each signature with the documented inputs,
    as `saved_model_cli show` would.

    Args:
        expected: dict. Signature name to {input name: (dtype, shape)} as
            saved_model_cli prints them, e.g. ("DT_STRING", "(-1)").
    """
    listing = signature_listing(saved_model_dir)
    problems = []
    for signature, inputs in expected.items():
        if signature not in listing:
            problems.append(f"signature `{signature}` is missing (listed: {sorted(listing)})")
        elif listing[signature] != inputs:
            problems.append(f"signature `{signature}` takes {listing[signature]}, expected {inputs}")
    if problems:
        raise ExportError(
            "saved_model_cli show disagrees with the documented signatures:\n  " + "\n  ".join(problems)
        )
    return listing
