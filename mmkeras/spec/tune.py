"""The `tune:` section: what `mmkeras tune` searches, how, and for which metric.

```yaml
tune:
  algorithm: bayesian          # bayesian, hyperband or random
  max_trials: 12
  objective: accuracy          # a validation metric of the run (metrics.json)
  space:
    train.learning_rate: {min: 0.0001, max: 0.01, log: true}
    model.fusion.type: {choice: [concat, gated, cross_attention]}
    model.fusion.modality_dropout: {min: 0.0, max: 0.3, step: 0.1}
    model.encoders.image.filters: {choice: [[16, 32], [32, 64]]}
```

Each key of `space` is a dotted path into the spec (`data.`, `model.` or
`train.`; a number picks a list item, `data.features.0.augment.flip`), and
its value a `choice` of values or a range from `min` to `max` (`step`,
`log`; whole numbers throughout give whole-number values).
"""

import dataclasses

from mmkeras.spec.fields import positive_number, require

ALGORITHMS = ("bayesian", "hyperband", "random")
DIRECTIONS = ("min", "max")
SECTIONS = ("data", "model", "train")
# Metrics where lower is better; any other objective is maximised.
LOWER_IS_BETTER = ("loss", "mae", "rmse", "mse")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SearchEntry:
    """One dimension of the search space.

    Args:
        path: str. The dotted path into the spec.
        choices: list or None. The values to choose from.
        low, high: numbers or None. The range, both ends included.
        step: number or None. The range's step.
        log: bool. Sample the range on a log scale.
    """

    path: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def whole(self):
        """Whether the range holds whole numbers only."""
        return self.choices is None and all(_is_whole(v) for v in (self.low, self.high, self.step or 1))

    def candidates(self):
        """The values a spec is checked with before any trial: every choice, or both ends."""
        return list(self.choices) if self.choices is not None else [self.low, self.high]

    def holds(self, value):
        """Whether `value` is one of this entry's values."""
        if self.choices is not None:
            return value in self.choices
        return _is_number(value) and self.low <= value <= self.high

    @classmethod
    def parse(cls, path, value, where):
        where = f"{where}.{path}"
        parts = str(path).split(".")
        require(
            len(parts) > 1 and parts[0] in SECTIONS and all(parts),
            where,
            f"a search path starts with {', '.join(SECTIONS)} and names a field, e.g. train.learning_rate.",
        )
        require(isinstance(value, dict), where, "write {choice: [...]} or {min: ..., max: ...}.")
        if "choice" in value:
            choices = value["choice"]
            extra = set(value) - {"choice"}
            require(not extra, where, f"a choice takes no {', '.join(sorted(extra))}.")
            require(isinstance(choices, list) and choices, where, "`choice` must be a non-empty list.")
            unique = [c for i, c in enumerate(choices) if c not in choices[:i]]
            require(len(unique) == len(choices), where, "`choice` lists a value twice.")
            return cls(path, choices=choices)
        unknown = set(value) - {"min", "max", "step", "log"}
        require(
            not unknown,
            where,
            f"unknown key(s) {', '.join(sorted(unknown))}; use choice, or min/max/step/log.",
        )
        require("min" in value and "max" in value, where, "a range needs both `min` and `max`.")
        low, high, step, log = value["min"], value["max"], value.get("step"), value.get("log", False)
        require(_is_number(low) and _is_number(high), where, "`min` and `max` must be numbers.")
        require(low < high, where, f"`min` ({low}) must be below `max` ({high}).")
        require(isinstance(log, bool), where, "`log` must be true or false.")
        require(not log or low > 0, where, "a log-scale range needs `min` > 0.")
        if step is not None:
            positive_number(step, where, "step")
            require(not log, where, "give `step` or `log`, not both.")
            require(step <= high - low, where, f"`step` ({step}) is wider than the range.")
        return cls(path, low=low, high=high, step=step, log=log)


@dataclasses.dataclass
class TuneSpec:
    """How `mmkeras tune` searches.

    Args:
        space: dict. Dotted spec path to its choice or range (see above).
        algorithm: str. "bayesian" (Gaussian-process Bayesian optimisation),
            "hyperband" (many short trainings, the best trained longer, up
            to `train.epochs`) or "random".
        max_trials: int. Trainings at most (bayesian and random; hyperband
            sets its own from `train.epochs` and `hyperband_factor`).
        objective: str or None. The validation metric to optimise, a key of
            the run's metrics.json; None is accuracy for a classifier and
            rmse for a regressor.
        direction: str or None. "min" or "max"; None is min for losses and
            errors, max otherwise.
        hyperband_factor: int. Hyperband keeps 1 in this many trials per round.
        seed: int or None. The search's seed (None: `train.seed`).
    """

    space: dict
    algorithm: str = "bayesian"
    max_trials: int = 10
    objective: str | None = None
    direction: str | None = None
    hyperband_factor: int = 3
    seed: int | None = None
    where: str = dataclasses.field(default="tune", repr=False, compare=False)

    def __post_init__(self):
        require(
            isinstance(self.space, dict) and self.space,
            self.where,
            "`space` is empty: name at least one spec path to search, e.g. "
            "`train.learning_rate: {min: 0.0001, max: 0.01, log: true}`.",
        )
        require(
            self.algorithm in ALGORITHMS, self.where, f"`algorithm` must be one of {', '.join(ALGORITHMS)}."
        )
        require(_is_whole(self.max_trials), self.where, "`max_trials` must be a whole number.")
        positive_number(self.max_trials, self.where, "max_trials")
        require(
            self.direction in (None, *DIRECTIONS), self.where, "`direction` must be min, max or left out."
        )
        require(
            _is_whole(self.hyperband_factor) and self.hyperband_factor >= 2,
            self.where,
            "`hyperband_factor` must be a whole number >= 2.",
        )
        self.entries = [
            SearchEntry.parse(path, value, f"{self.where}.space") for path, value in self.space.items()
        ]

    def objective_for(self, target_type):
        """(metric name, "min" or "max") for a spec whose target has this type."""
        name = self.objective or ("rmse" if target_type == "numeric" else "accuracy")
        direction = self.direction or ("min" if name.split("_")[-1] in LOWER_IS_BETTER else "max")
        return name, direction
