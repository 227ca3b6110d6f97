"""`mmkeras export`: a run folder to a checked, versioned SavedModel for TF Serving."""

import dataclasses
import shutil

from mmkeras.errors import SpecError
from mmkeras.export.checks import check_ops, check_parity
from mmkeras.export.publish import next_version, publish, staging_dir
from mmkeras.export.saved_model import build_export_archive
from mmkeras.training.row_sample import collect_sample
from mmkeras.training.run import load_run

PARITY_ROWS = 32
OUTPUT_FOR_PARITY = {"categorical": "probabilities", "binary": "probability", "multilabel": "scores", "numeric": "prediction"}


@dataclasses.dataclass
class ExportResult:
    path: str
    version: int
    max_difference: float


def _parity_rows(spec, preprocessor, model):
    """Real validation rows as raw bytes, and the in-memory model's outputs."""
    split = "validation" if (spec.data.validation or spec.data.validation_split) else "train"
    sample = collect_sample(spec, preprocessor, split=split, max_rows=PARITY_ROWS)
    prediction = model.predict(sample.inputs, verbose=0)
    target = spec.data.target
    if target.type in ("binary", "numeric"):
        prediction = prediction[:, 0]
    if target.type == "numeric":
        prediction = prediction * preprocessor.target.std + preprocessor.target.mean
    return sample.raw, prediction


def export_run(run_dir, base_dir, version=None, force=False):
    """Exports a finished run as `base_dir/<version>/`, checked, published atomically.

    The SavedModel is written to a staging folder, its ops are checked
    against what TF Serving links, a fresh process serves real validation
    rows from it and must match the trained model to 1e-5, and only then is
    it renamed into place. A failed check publishes nothing.
    """
    spec, preprocessor, model = load_run(run_dir)
    if spec.data.target is None:
        raise SpecError("export: retrieval models are exported with their encoders; not supported yet.")
    version = next_version(base_dir, version, force)
    staged = staging_dir(base_dir, version)
    try:
        build_export_archive(spec, preprocessor, model).write_out(staged, verbose=False)
        offenders = check_ops(staged)
        if offenders:
            raise SpecError("the SavedModel uses ops TF Serving does not have:\n  " + "\n  ".join(offenders))
        raw, expected = _parity_rows(spec, preprocessor, model)
        difference = check_parity(staged, raw, expected, OUTPUT_FOR_PARITY[spec.data.target.type])
        path = publish(staged, base_dir, version)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return ExportResult(path, version, difference)
