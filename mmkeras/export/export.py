"""`mmkeras export`: a run folder to a checked, versioned SavedModel for TF Serving."""

import dataclasses
import os
import shutil

from mmkeras.data.sample import collect_sample
from mmkeras.errors import ExportError
from mmkeras.export.checks import check_in_fresh_process, check_listing
from mmkeras.export.publish import next_version, publish, staging_dir
from mmkeras.export.server_config import BatchingParameters, default_label, record_version
from mmkeras.export.warmup import write_warmup_requests
from mmkeras.run_folder import load_run

PARITY_ROWS = 32
RAW_INPUT = ("DT_STRING", "(-1)")


@dataclasses.dataclass
class ExportResult:
    """Where a version went and how it checked out."""

    path: str
    version: int
    label: str
    max_difference: float
    models_config: str
    warmup_requests: int


def _parity_cases(spec, task):
    """What the fresh process must reproduce: the task's outputs on real rows."""
    split = "validation" if (spec.data.validation or spec.data.validation_split) else "train"
    sample = collect_sample(spec, task.preprocessor, split=split, max_rows=PARITY_ROWS)
    return task.parity_cases(sample)


def export_run(
    run_dir: str, base_dir: str, version: int | None = None, force: bool = False, label: str | None = None
) -> ExportResult:
    """Exports a finished run as `base_dir/<version>/`, checked, published atomically.

    The SavedModel (the Task's serving signatures) and its warmup requests
    are written to a staging folder; its ops are checked against what TF
    Serving links, a fresh process serves real validation rows from it and
    must match the trained model to 1e-5, its signatures must take the
    documented inputs (as `saved_model_cli show` lists them), and only then
    is it renamed into place and recorded in the models.config beside
    `base_dir` under `label` (default: `stable` first, then `canary`). A
    failed check publishes nothing.
    """
    run = load_run(run_dir)
    version = next_version(base_dir, version, force)
    label = label or default_label(base_dir)
    staged = staging_dir(base_dir, version)
    try:
        run.task.export_archive().write_out(staged, verbose=False)
        cases = _parity_cases(run.spec, run.task)
        warmup = write_warmup_requests(
            staged,
            os.path.basename(os.path.abspath(base_dir)),
            "serving_default",
            cases[0].raw,
            BatchingParameters().max_batch_size,
        )
        listing = {
            signature: dict.fromkeys(features, RAW_INPUT)
            for signature, features in run.task.documented_inputs().items()
        }
        check_listing(staged, listing)
        offenders, difference = check_in_fresh_process(staged, cases)
        if offenders:
            raise ExportError(
                "the SavedModel uses ops TF Serving does not have:\n  " + "\n  ".join(offenders)
            )
        path = publish(staged, base_dir, version)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    config = record_version(base_dir, version, label)
    return ExportResult(path, version, label, difference, config, warmup)
