"""TF Serving's JSON mapping: request bodies to arrays, arrays to answers.

Row format (`instances`: one entry per row) and columnar format (`inputs`:
one entry per input), `{"b64": ...}` for bytes, `predictions` / `outputs`
in the answer; a single named input or output may be given bare.
"""

import base64
import binascii
import json

import numpy as np
from google.protobuf import json_format

from mmkeras.serving.errors import ServingError

BYTES_SUFFIX = "_bytes"  # TF Serving base64-encodes string outputs named like this


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _leaf(value, name, is_string):
    if is_string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if _is_b64(value):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, TypeError) as error:
                raise ServingError(
                    f'input `{name}`: invalid base64 in a {{"b64": ...}} value ({error}).'
                ) from None
        raise ServingError(
            f'input `{name}` takes strings: text as a JSON string (a record\'s number too: "63"), '
            f'bytes as {{"b64": "..."}}; got {json.dumps(value)[:80]}.'
        )
    if isinstance(value, (bool, int, float)):
        return value
    raise ServingError(f"input `{name}` takes numbers; got {json.dumps(value)[:80]}.")


def to_array(value, name, is_string):
    """A nested JSON list to a NumPy array; uneven nesting is an error."""
    flat = []

    def walk(node, depth_path):
        if isinstance(node, list):
            shapes = [walk(child, depth_path + (i,)) for i, child in enumerate(node)]
            if any(shape != shapes[0] for shape in shapes):
                where = "".join(f"[{i}]" for i in depth_path)
                raise ServingError(
                    f"input `{name}`{where}: its rows have different shapes {sorted(set(shapes))}; "
                    "every row of an input must have the same shape."
                )
            return (len(node),) + (shapes[0] if shapes else ())
        flat.append(_leaf(node, name, is_string))
        return ()

    shape = walk(value, ())
    if is_string:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.array(flat).reshape(shape)


def parse_predict_request(body, input_specs):
    """(signature name, {input: array}, row_format) from a :predict body.

    Args:
        body: bytes. The request body.
        input_specs: callable. Signature name to {input: tf.TensorSpec}.
    """
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ServingError(f"malformed JSON in the request body: {error}") from None
    if not isinstance(request, dict):
        raise ServingError("the request body must be a JSON object with `instances` or `inputs`.")
    if ("instances" in request) == ("inputs" in request):
        raise ServingError(
            "give exactly one of `instances` (row format) or `inputs` (columnar format); "
            f"the request has {'both' if 'instances' in request else 'neither'}."
        )
    signature_name = request.get("signature_name", "")
    specs = input_specs(signature_name)
    strings = {name: spec.dtype.name == "string" for name, spec in specs.items()}
    if "instances" in request:
        columns = _rows_to_columns(request["instances"], list(specs))
        row_format = True
    else:
        columns = request["inputs"]
        if not isinstance(columns, dict) or _is_b64(columns):
            columns = _only_input(specs, columns)
        row_format = False
    unknown = sorted(set(columns) - set(specs))
    if unknown:
        raise ServingError(f"unknown input(s) {unknown}; this signature takes {sorted(specs)}.")
    return (
        signature_name,
        {name: to_array(value, name, strings[name]) for name, value in columns.items()},
        row_format,
    )


def _only_input(specs, value):
    if len(specs) != 1:
        raise ServingError(
            f"this signature takes several named inputs {sorted(specs)}; send an object keyed by them."
        )
    return {next(iter(specs)): value}


def _rows_to_columns(instances, names):
    if not isinstance(instances, list):
        raise ServingError("`instances` must be a list with one entry per row.")
    if not instances:
        raise ServingError("`instances` is empty: a request needs at least one row.")
    named = [isinstance(row, dict) and not _is_b64(row) for row in instances]
    if not any(named):
        return _only_input(dict.fromkeys(names), instances)
    if not all(named):
        raise ServingError("`instances` mixes objects and bare values; use one form for every row.")
    keys = set(instances[0])
    for index, row in enumerate(instances):
        if set(row) != keys:
            raise ServingError(
                f"instances[{index}] has inputs {sorted(row)}, but instances[0] has {sorted(keys)}."
            )
    return {key: [row[key] for row in instances] for key in instances[0]}


def _jsonable(name, value):
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return (
                [_jsonable(name, v) for v in value.tolist()] if value.ndim else _jsonable(name, value.item())
            )
        return value.tolist()
    if isinstance(value, list):
        return [_jsonable(name, v) for v in value]
    if isinstance(value, bytes):
        if not name.endswith(BYTES_SUFFIX):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode()}
    return value.item() if isinstance(value, np.generic) else value


def predict_response(outputs, row_format):
    """The JSON answer: `predictions` per row, or `outputs` per output name."""
    if row_format:
        names = list(outputs)
        columns = {name: _jsonable(name, outputs[name]) for name in names}
        if len(names) == 1:
            return {"predictions": columns[names[0]]}
        rows = len(next(iter(columns.values())))
        return {"predictions": [{name: columns[name][i] for name in names} for i in range(rows)]}
    if len(outputs) == 1:
        name, value = next(iter(outputs.items()))
        return {"outputs": _jsonable(name, value)}
    return {"outputs": {name: _jsonable(name, value) for name, value in outputs.items()}}


def proto_json(message):
    """A proto as TF Serving's REST API writes it (field names as in the .proto, defaults included)."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
