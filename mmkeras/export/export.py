"""`mmkeras export`: a run folder to a checked, versioned SavedModel for TF Serving."""

import concurrent.futures
import dataclasses
import os
import shutil

from mmkeras.errors import SpecError
from mmkeras.export.checks import ParityCase, check_listing, check_ops, check_parity
from mmkeras.export.publish import next_version, publish, staging_dir
from mmkeras.export.saved_model import build_export_archive, retrieval_towers
from mmkeras.export.server_config import BatchingParameters, default_label, record_version
from mmkeras.export.warmup import write_warmup_requests
from mmkeras.training.row_sample import collect_sample
from mmkeras.training.run import load_run

PARITY_ROWS = 32
OUTPUT_FOR_PARITY = {
    "categorical": "probabilities",
    "binary": "probability",
    "multilabel": "scores",
    "numeric": "prediction",
}
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


def _sample(spec, preprocessor):
    split = "validation" if (spec.data.validation or spec.data.validation_split) else "train"
    return collect_sample(spec, preprocessor, split=split, max_rows=PARITY_ROWS)


def _parity_cases(spec, preprocessor, model, sample):
    """What the fresh process must reproduce: each raw-input signature on real rows."""
    if spec.data.target is None:
        return [
            ParityCase(
                signature,
                {feature: sample.raw[feature]},
                "embedding",
                tower.predict(sample.inputs[feature], verbose=0),
            )
            for signature, (feature, tower) in retrieval_towers(model).items()
        ]
    prediction = model.predict(sample.inputs, verbose=0)
    target = spec.data.target
    if target.type in ("binary", "numeric"):
        prediction = prediction[:, 0]
    if target.type == "numeric":
        prediction = prediction * preprocessor.target.std + preprocessor.target.mean
    return [ParityCase("serving_default", sample.raw, OUTPUT_FOR_PARITY[target.type], prediction)]


def _documented_inputs(spec, model):
    """The raw-input signatures and the inputs `saved_model_cli` must list for them."""
    if spec.data.target is None:
        towers = retrieval_towers(model)
        listing = {signature: {feature: RAW_INPUT} for signature, (feature, _) in towers.items()}
        listing["serving_default"] = listing["encode_text"]
        return listing
    raw = {f.name: RAW_INPUT for f in spec.data.features}
    return {"serving_default": raw, "embed": raw}


def export_run(run_dir, base_dir, version=None, force=False, label=None):
    """Exports a finished run as `base_dir/<version>/`, checked, published atomically.

    The SavedModel and its warmup requests are written to a staging folder;
    its ops are checked against what TF Serving links, a fresh process
    serves real validation rows from it and must match the trained model to
    1e-5, `saved_model_cli` must list the documented signatures, and only
    then is it renamed into place and recorded in the models.config beside
    `base_dir` under `label` (default: `stable` first, then `canary`). A
    failed check publishes nothing.
    """
    spec, preprocessor, model = load_run(run_dir)
    version = next_version(base_dir, version, force)
    label = label or default_label(base_dir)
    staged = staging_dir(base_dir, version)
    try:
        build_export_archive(spec, preprocessor, model).write_out(staged, verbose=False)
        sample = _sample(spec, preprocessor)
        cases = _parity_cases(spec, preprocessor, model, sample)
        warmup = write_warmup_requests(
            staged,
            os.path.basename(os.path.abspath(base_dir)),
            "serving_default",
            cases[0].raw,
            BatchingParameters().max_batch_size,
        )
        # Each check is a fresh process; running them side by side halves the wait.
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            ops = pool.submit(check_ops, staged)
            parity = pool.submit(check_parity, staged, cases)
            listing = pool.submit(check_listing, staged, _documented_inputs(spec, model))
            if offenders := ops.result():
                raise SpecError(
                    "the SavedModel uses ops TF Serving does not have:\n  " + "\n  ".join(offenders)
                )
            difference = parity.result()
            listing.result()
        path = publish(staged, base_dir, version)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    config = record_version(base_dir, version, label)
    return ExportResult(path, version, label, difference, config, warmup)
