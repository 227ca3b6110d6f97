"""`mmkeras tune`: KerasTuner searches the spec's `tune:` space, each trial an mmkeras run.

```
OUTPUT/
  oracle.json, tuner0.json   KerasTuner's state: a killed search resumes from it
  trial_00/ ...              one run folder per trial (what `mmkeras train` writes), plus trial.json
  logs/                      TensorBoard's hparams dashboard: every trial's values and objective
  trials.csv                 the same as a table
  best_spec.yaml             the best trial's spec, ready for `mmkeras train`
```

A trial killed half-way is tried again on the next `mmkeras tune` and
resumes from its own backup, as any killed run does. A trial that fails
(bad data in a setting, out of memory) is marked failed and the search goes
on; KerasTuner stops after three failures in a row.
"""

import csv
import dataclasses
import os

import keras_tuner
import tensorflow as tf
from keras_tuner.engine.base_tuner import BaseTuner
from tensorboard.plugins.hparams import api as hparams_api

from mmkeras.errors import SpecError
from mmkeras.run_folder import RunFolder
from mmkeras.spec import Spec
from mmkeras.training import train
from mmkeras.tune.search_space import check_space, declare, values_of, with_values

ORACLES = {
    "bayesian": keras_tuner.oracles.BayesianOptimizationOracle,
    "hyperband": keras_tuner.oracles.HyperbandOracle,
    "random": keras_tuner.oracles.RandomSearchOracle,
}
LOG_DIR = "logs"
BEST_SPEC = "best_spec.yaml"


def _starting_from_the_spec(oracle_class):
    """The oracle class whose first trial trains the spec's own values (each
    hyperparameter's default), so the search is never worse than the spec."""

    class Oracle(oracle_class):
        def _random_values(self):
            if not self.trials:
                return {hp.name: hp.default for hp in self.hyperparameters.space}
            return super()._random_values()

    Oracle.__name__ = oracle_class.__name__
    return Oracle


class _SearchSpace(keras_tuner.HyperModel):
    """Declares the spec's search space; the trials train specs, not this model."""

    def __init__(self, spec):
        super().__init__(name="spec")
        self.spec = spec

    def build(self, hp):
        declare(self.spec.tune.entries, hp, self.spec.to_dict())


def _hparam_value(value):
    return value if isinstance(value, (bool, int, float, str)) else str(value)


@dataclasses.dataclass
class TuneResult:
    """What `tune` returns.

    Args:
        output_dir: str. The search folder.
        objective: str. The optimised validation metric.
        direction: str. "min" or "max".
        trials: list of dict. Per trial: `trial`, `status`, the objective's
            value (None when it failed) and each searched path's value.
        best_trial: str. The best trial's id.
        best_spec: str. The path of its spec.
    """

    output_dir: str
    objective: str
    direction: str
    trials: list
    best_trial: str
    best_spec: str


class SpecTuner(BaseTuner):
    """Runs each trial as `mmkeras train` on the spec with the trial's values set."""

    def __init__(self, spec, output_dir, objective, direction, max_trials, overwrite=False, verbose=1):
        tune = spec.tune
        seed = tune.seed if tune.seed is not None else spec.train.seed
        arguments = {"objective": keras_tuner.Objective(objective, direction), "seed": seed}
        if tune.algorithm == "hyperband":
            arguments.update(max_epochs=spec.train.epochs, factor=tune.hyperband_factor)
        else:
            arguments["max_trials"] = max_trials
        output_dir = os.path.abspath(output_dir)
        super().__init__(
            _starting_from_the_spec(ORACLES[tune.algorithm])(**arguments),
            hypermodel=_SearchSpace(spec),
            directory=os.path.dirname(output_dir),
            project_name=os.path.basename(output_dir),
            overwrite=overwrite,
        )
        self.spec = spec
        self.output_dir = output_dir
        self.objective = objective
        self.verbose = verbose

    def run_trial(self, trial, *args, **kwargs):
        values = values_of(self.spec.tune.entries, trial.hyperparameters.values)
        mapping = with_values(self.spec.to_dict(), values)
        if "tuner/epochs" in trial.hyperparameters.values:  # Hyperband's budget for this trial
            mapping["train"]["epochs"] = trial.hyperparameters.values["tuner/epochs"]
        run_dir = self.get_trial_dir(trial.trial_id)
        folder = RunFolder(run_dir)
        if folder.finished:  # trained before the search was killed
            metrics = folder.read_metrics()
        else:
            metrics = train(
                Spec.from_dict(mapping, self.spec.base_dir), run_dir, verbose=self.verbose
            ).metrics
        if self.objective not in metrics:
            known = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
            raise keras_tuner.errors.FatalError(
                f"tune.objective: `{self.objective}` is not among the run's validation metrics ({known})."
            )
        self._write_hparams(trial.trial_id, values, metrics[self.objective])
        return {self.objective: metrics[self.objective]}

    def on_search_begin(self):
        # The hparams dashboard's columns: the searched paths and the objective.
        with tf.summary.create_file_writer(os.path.join(self.output_dir, LOG_DIR)).as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(entry.path) for entry in self.spec.tune.entries],
                metrics=[hparams_api.Metric(self.objective)],
            )
        super().on_search_begin()

    def _write_hparams(self, trial_id, values, objective_value):
        logs = os.path.join(self.output_dir, LOG_DIR, f"trial_{trial_id}")
        with tf.summary.create_file_writer(logs).as_default():
            hparams_api.hparams({k: _hparam_value(v) for k, v in values.items()}, trial_id=trial_id)
            tf.summary.scalar(self.objective, objective_value, step=0)

    def summary_rows(self):
        """One dict per trial, in the order they started."""
        rows = []
        for trial_id in self.oracle.start_order:
            trial = self.oracle.trials[trial_id]
            best = (
                trial.metrics.get_best_value(self.objective) if trial.metrics.exists(self.objective) else None
            )
            values = values_of(self.spec.tune.entries, trial.hyperparameters.values)
            rows.append({"trial": trial_id, "status": trial.status, self.objective: best, **values})
        return rows


def tune(spec, output_dir, max_trials=None, overwrite=False, verbose=1):
    """Searches the spec's `tune:` space; resumes a search already in `output_dir`.

    Args:
        spec: Spec. With a `tune:` section.
        output_dir: str. The search folder (see the module docstring).
        max_trials: int or None. Overrides `tune.max_trials`.
        overwrite: bool. Start again, deleting a search already there.
        verbose: int. Keras's verbosity for each trial's training.

    Returns:
        TuneResult.
    """
    if spec.tune is None:
        raise SpecError("tune: the spec has no `tune:` section; add one with a `space:` to search.")
    check_space(spec)
    objective, direction = spec.tune.objective_for(spec.data.target.type if spec.data.target else None)
    tuner = SpecTuner(
        spec,
        output_dir,
        objective,
        direction,
        max_trials or spec.tune.max_trials,
        overwrite=overwrite,
        verbose=verbose,
    )
    tuner.search()
    rows = tuner.summary_rows()
    with open(os.path.join(tuner.output_dir, "trials.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    completed = [t for t in tuner.oracle.get_best_trials(len(rows) or 1) if t.status == "COMPLETED"]
    if not completed:
        raise SpecError(f"tune: no trial finished; see {tuner.output_dir}/trial_*/trial.json for why.")
    best = completed[0]
    best_spec = os.path.join(tuner.output_dir, BEST_SPEC)
    values = values_of(spec.tune.entries, best.hyperparameters.values)
    Spec.from_dict(with_values(spec.to_dict(), values), spec.base_dir).to_yaml(best_spec, absolute_paths=True)
    return TuneResult(tuner.output_dir, objective, direction, rows, best.trial_id, best_spec)
