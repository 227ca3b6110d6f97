"""`mmkeras explain`: integrated gradients per modality, and what it writes."""

import copy
import csv
import json
import os

import keras
import numpy as np
import pytest

from mmkeras.data.dataset import build_preprocessor, make_dataset
from mmkeras.errors import SpecError
from mmkeras.explain import complete_integrated_gradients, explain_run, integrated_gradients
from mmkeras.explain.integrated_gradients import ABSOLUTE_TOLERANCE, DEFAULT_STEPS, TOLERANCE
from mmkeras.run_folder import load_run
from mmkeras.tasks.task import build_task
from tests.training_helpers import run_cli


def _first_row(spec, preprocessor, split="test"):
    inputs, *_ = next(iter(make_dataset(spec, split, preprocessor=preprocessor, batch_size=1)))
    return inputs


def _assert_complete(attribution):
    difference = attribution.value - attribution.baseline_value
    assert abs(attribution.completeness_gap) <= max(TOLERANCE * abs(difference), ABSOLUTE_TOLERANCE), (
        attribution.totals,
        difference,
    )


def test_attributions_add_up_to_the_output_minus_its_baseline_value(gated_run):
    run = load_run(gated_run)
    inputs = _first_row(run.spec, run.task.preprocessor)
    unit = int(np.argmax(run.task(inputs)["prediction"][0]))
    coarse, fine = (integrated_gradients(run.task, inputs, unit, steps) for steps in (2, 512))
    _assert_complete(fine)
    # The gap comes from the step count: two steps leave a larger one.
    assert abs(coarse.completeness_gap) > abs(fine.completeness_gap)
    assert fine.value == pytest.approx(float(run.task(inputs)["prediction"][0, unit]), abs=1e-5)
    ids = inputs["caption"].numpy()[0]
    tokens = fine.features["caption"]
    assert tokens.shape == ids.shape
    assert np.all(tokens[ids == 0] == 0) and np.any(tokens[ids != 0] != 0)  # padding carries nothing
    assert fine.features["image"].shape == inputs["image"].shape[1:]
    assert fine.features["audio"].shape == inputs["audio"].shape[1:]
    # The embedding layer's own call is back once the attributions are computed.
    assert "call" not in vars(run.task.backbone.encoders["caption"].token_embedding)


@pytest.mark.long(40)
# Initialisations whose paths are steep enough to need more than the first 64 intervals.
@pytest.mark.parametrize("encoder, seed", [("transformer", 1), ("pretrained", 2)])
def test_every_text_encoder_attributes_its_tokens(encoder, seed, quickstart_spec, minilm_folder):
    spec = copy.deepcopy(quickstart_spec)
    spec.model.encoders = {
        "caption": {"type": encoder, "hidden_dim": 16, "num_layers": 1, "intermediate_dim": 16}
        if encoder == "transformer"
        else {"type": encoder},
        "image": {"type": "cnn", "filters": [8]},
        "audio": {"type": "spectrogram_cnn", "filters": [8]},
    }
    if encoder == "pretrained":
        spec.data.features[0].tokenizer = minilm_folder
    preprocessor = build_preprocessor(spec, progress=False)
    keras.utils.set_random_seed(seed)
    task = build_task(spec, preprocessor)
    inputs = _first_row(spec, preprocessor)
    attribution = complete_integrated_gradients(task, inputs, 0)
    _assert_complete(attribution)
    # The added points crowd where the path is steep: as many equal intervals fall short.
    assert attribution.steps > DEFAULT_STEPS
    uniform = integrated_gradients(task, inputs, 0, attribution.steps)
    assert abs(uniform.completeness_gap) > abs(attribution.completeness_gap)
    ids = inputs["caption"].numpy()[0]
    assert np.any(attribution.features["caption"][ids != 0] != 0)


def test_record_columns_are_attributed_one_number_each(ham_spec, tmp_path):
    preprocessor = build_preprocessor(ham_spec, progress=False)
    task = build_task(ham_spec, preprocessor)
    inputs = _first_row(ham_spec, preprocessor)
    attribution = complete_integrated_gradients(task, inputs, 0)
    _assert_complete(attribution)
    record = preprocessor.features["record"]
    assert attribution.features["record"].shape == (record.output_size,)


def _rows_file(run, folder):
    """The run's first test rows (the second with a blank caption) and a row whose picture is missing."""
    with open(run.spec.data.test, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))[:3]
    base = os.path.dirname(run.spec.data.test)
    for row in rows:
        row["image"], row["audio"] = (os.path.join(base, row[c]) for c in ("image", "audio"))
    rows[1]["caption"] = "   "
    rows.append({**rows[0], "image": os.path.join(base, "no_such_picture.png")})
    path = os.path.join(folder, "rows.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_explain_writes_pictures_a_page_and_the_numbers_and_skips_bad_rows(gated_run, tmp_path):
    run = load_run(gated_run)
    rows = _rows_file(run, tmp_path)
    output = tmp_path / "explained"
    result = run_cli("explain", gated_run, "--data", rows, "--output-dir", str(output), "--steps", "32")
    assert result.returncode == 0, result.stderr
    # Bad rows are named as everywhere else (this spec's caption may not be missing).
    assert f"skipped {rows}:3: caption: empty text" in result.stdout
    assert f"skipped {rows}:5: image: missing file" in result.stdout
    summary = json.loads((output / "attributions.json").read_text())
    assert [r["row"] for r in summary["rows"]] == ["rows.csv line 2", "rows.csv line 4"]
    for record in summary["rows"]:
        assert (output / record["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        modalities = record["modalities"]
        assert set(modalities) == {"caption", "image", "audio"}
        assert sum(m["share"] for m in modalities.values()) == pytest.approx(1.0)
        assert sum(record["gates"].values()) == pytest.approx(1.0, abs=1e-4)
        difference = record["value"] - record["baseline_value"]
        total = sum(m["attribution"] for m in modalities.values())
        assert total - difference == pytest.approx(record["completeness_gap"])
    words = [token for token, _ in summary["rows"][0]["text"]["caption"]]
    assert words
    page = (output / "explanations.html").read_text()
    assert all(f">{word}</span>" in page for word in words)
    events = os.listdir(os.path.join(gated_run, "logs", "explain"))
    assert any(name.startswith("events.out.tfevents") for name in events)


def test_explain_names_the_labels_when_asked_for_an_unknown_one(gated_run, tmp_path):
    run = load_run(gated_run)
    with pytest.raises(SpecError, match="circle_high"):
        explain_run(gated_run, _rows_file(run, tmp_path), output_dir=str(tmp_path), label="hexagon")
