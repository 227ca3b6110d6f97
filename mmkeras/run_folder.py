"""The run folder: what `mmkeras train` writes and every other command reads.

```
RUN/
  spec.yaml            the spec as used (absolute paths)
  model.keras          the trained Task, its preprocessor (vocabularies, labels) inside
  checkpoints/best.keras, checkpoints/last.keras
  backup/              BackupAndRestore state: a killed run resumes from here
  history.csv          one row per finished epoch
  metrics.json         the final model's validation metrics: the run is finished
  logs/                TensorBoard
  evaluation/<split>/  what `mmkeras evaluate` writes
```
"""

import csv
import dataclasses
import json
import math
import os
import shutil

import keras

from mmkeras.errors import RunFolderError
from mmkeras.spec import Spec
from mmkeras.tasks import Task

# Written by mmkeras before Tasks: the preprocessor lived beside the model.
_OLD_LAYOUT_FILE = "preprocessor.json"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder.

    Args:
        root: str. The folder (made absolute).
    """

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(self.root))

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    @property
    def spec(self):
        return self._path("spec.yaml")

    @property
    def model(self):
        return self._path("model.keras")

    @property
    def best(self):
        return self._path("checkpoints", "best.keras")

    @property
    def last(self):
        return self._path("checkpoints", "last.keras")

    @property
    def backup(self):
        return self._path("backup")

    @property
    def history(self):
        return self._path("history.csv")

    @property
    def metrics(self):
        return self._path("metrics.json")

    @property
    def logs(self):
        return self._path("logs")

    def evaluation(self, name):
        """Where `mmkeras evaluate` writes the evaluation called `name`."""
        return self._path("evaluation", name)

    @property
    def finished(self):
        return os.path.exists(self.metrics)

    def prepare(self, overwrite=False):
        """Creates the folder, or reopens an unfinished run there to resume it.

        Raises RunFolderError when a finished run is there, unless
        `overwrite`, which deletes it first.
        """
        if self.finished:
            if not overwrite:
                raise RunFolderError(
                    f"{self.root} holds a finished run; pass a new --output-dir, "
                    "or --overwrite to replace it."
                )
            shutil.rmtree(self.root)
        os.makedirs(os.path.dirname(self.best), exist_ok=True)
        return self

    def write_metrics(self, metrics):
        """Records the final metrics; from then on the run counts as finished."""
        with open(self.metrics, "w") as f:
            json.dump(metrics, f, indent=2)

    def read_metrics(self):
        with open(self.metrics) as f:
            return json.load(f)

    def read_history(self):
        """{column: [value per finished epoch]} from history.csv ({} before the
        first epoch); NaN where an epoch did not log the column (Keras's CSV
        logger writes "NA" there)."""
        if not os.path.exists(self.history):
            return {}
        with open(self.history, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = [name for name in (rows[0] if rows else {}) if name != "epoch"]
        return {
            name: [math.nan if row[name] == "NA" else float(row[name]) for row in rows if row.get(name)]
            for name in columns
        }


@dataclasses.dataclass
class Run:
    """A finished run, loaded: its folder, the spec it was trained on, the Task."""

    folder: RunFolder
    spec: Spec
    task: Task


def load_task(path: str) -> Task:
    """Loads a Task saved as `.keras` (a run's model or one of its checkpoints)."""
    return keras.saving.load_model(path, safe_mode=True)


def load_run(run_dir: str) -> Run:
    """The spec and trained Task of a finished run folder, in one call.

    Raises RunFolderError naming what is missing, or saying that the folder
    was written by an older version of mmkeras.
    """
    folder = RunFolder(run_dir)
    if os.path.exists(os.path.join(folder.root, _OLD_LAYOUT_FILE)):
        raise RunFolderError(
            f"{run_dir} was written by an older version of mmkeras (its preprocessor is a separate "
            f"{_OLD_LAYOUT_FILE}); this version keeps it inside model.keras. Train the run again: "
            f"mmkeras train {folder.spec} --output-dir NEW_FOLDER"
        )
    for required in (folder.spec, folder.model):
        if not os.path.exists(required):
            raise RunFolderError(f"{run_dir} is not a finished run: {os.path.basename(required)} is missing.")
    task = load_task(folder.model)
    if not isinstance(task, Task):
        raise RunFolderError(
            f"{folder.model} holds a {type(task).__name__}, not an mmkeras Task: it was written by an "
            f"older version of mmkeras. Train the run again: mmkeras train {folder.spec}"
        )
    return Run(folder, Spec.from_yaml(folder.spec), task)
