"""What the benchmarks share: results written as JSON (kept as they come in
the long ones), and how a score over several seeds is written."""

import json

import numpy as np


def write_json(path, results):
    """Writes `results` to `path` (`--json`), if one was given."""
    if path:
        with open(path, "w") as f:
            json.dump(results, f, indent=2)


def measure_each(names, measure, json_path=None):
    """{name: measure(name)} for each name; with `json_path`, the results so
    far are written there after each one, so a run stopped midway keeps what
    it measured."""
    results = {}
    for name in names:
        results[name] = measure(name)
        write_json(json_path, results)
    return results


def mean_and_spread(values):
    """Mean ± standard deviation (n - 1, as `mmkeras train --seeds` reports it)."""
    if not values:
        return "-"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.3f}"
