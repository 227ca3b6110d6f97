"""The `tune:` section's search space: checked against the spec, declared to KerasTuner, applied to trials."""

import copy
import itertools
import json
import math

from mmkeras.errors import SpecError

# Past this many combinations of values the space is checked one value at a time.
COMBINATIONS = 256
# KerasTuner chooses among numbers, strings or booleans of one type; other
# choices (lists of filters, null) travel as their JSON text.
_PLAIN_TYPES = (bool, int, float, str)


def _plain(choices):
    kinds = {type(choice) for choice in choices}
    return len(kinds) == 1 and kinds <= set(_PLAIN_TYPES)


def _steps(path):
    return [int(part) if part.isdigit() else part for part in path.split(".")]


def get_path(mapping, path):
    """The value at a dotted path of a spec mapping, or None where it is not set."""
    value = mapping
    for step in _steps(path):
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return None
    return value


def set_path(mapping, path, value):
    """Sets a dotted path of a spec mapping in place, making the sections it lacks."""
    where = "tune.space." + path
    steps = _steps(path)
    node = mapping
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                raise SpecError(f"{where}: `{step}` picks a list item, but there is no such item here.")
        elif not isinstance(node, dict):
            raise SpecError(f"{where}: `{step}` names a field of a section, but its parent is a value.")
        if last:
            node[step] = value
        else:
            if isinstance(step, str) and node.get(step) is None:
                node[step] = {}
            node = node[step]


def with_values(mapping, values):
    """A copy of a spec mapping with `{path: value}` set, and no `tune:` section."""
    mapping = copy.deepcopy(mapping)
    mapping.pop("tune", None)
    for path, value in values.items():
        set_path(mapping, path, value)
    return mapping


def _combinations(entries):
    """Every combination of the entries' candidates, or (past COMBINATIONS) each entry's alone."""
    sizes = [len(entry.candidates()) for entry in entries]
    if math.prod(sizes) <= COMBINATIONS:
        return [
            dict(zip((e.path for e in entries), values))
            for values in itertools.product(*(e.candidates() for e in entries))
        ]
    return [{entry.path: value} for entry in entries for value in entry.candidates()]


def check_space(spec):
    """Raises SpecError naming the entries whose values the spec refuses.

    Every combination of the choices and of each range's ends (each value
    alone when there are too many) is set into the spec, which is then
    checked as `mmkeras train` would check it: a field that does not exist,
    a value out of its range, a layer argument the layer does not take.
    Runs before any trial, so no training is wasted on it.
    """
    from mmkeras.spec import Spec

    mapping = spec.to_dict()
    for values in _combinations(spec.tune.entries):
        try:
            Spec.from_dict(with_values(mapping, values), spec.base_dir)
        except SpecError as error:
            shown = ", ".join(f"{path}={value!r}" for path, value in values.items())
            raise SpecError(f"tune.space: {shown} does not fit the spec: {error}") from None


def declare(entries, hyperparameters, spec_mapping):
    """Declares each entry to KerasTuner; its default is the spec's own value where the entry holds it.

    Args:
        entries: list of SearchEntry.
        hyperparameters: keras_tuner.HyperParameters.
        spec_mapping: dict. The spec as plain data.
    """
    for entry in entries:
        current = get_path(spec_mapping, entry.path)
        default = current if entry.holds(current) else None
        if entry.choices is not None:
            plain = _plain(entry.choices)
            values = entry.choices if plain else [json.dumps(c) for c in entry.choices]
            if default is not None and not plain:
                default = json.dumps(default)
            hyperparameters.Choice(entry.path, values, default=default)
        elif entry.whole:
            hyperparameters.Int(entry.path, entry.low, entry.high, step=entry.step, default=default)
        else:
            sampling = "log" if entry.log else "linear"
            hyperparameters.Float(
                entry.path, entry.low, entry.high, step=entry.step, sampling=sampling, default=default
            )


def values_of(entries, hyperparameter_values):
    """{path: spec value} from a trial's hyperparameter values."""
    values = {}
    for entry in entries:
        value = hyperparameter_values[entry.path]
        if entry.choices is not None and not _plain(entry.choices):
            value = json.loads(value)
        values[entry.path] = value
    return values
