import json
import math
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_gpu_benchmark_runs_every_section_in_smoke_mode(tmp_path):
    # On CI's CPU: the script the GPU machine runs must keep working in between.
    out = tmp_path / "gpu.json"
    env = {**os.environ, "MMKERAS_CPU_DEVICES": "2"}
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "gpu.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["samples_per_s"]) == {"float32", "mixed_float16", "mixed_bfloat16"}
    assert all(rate > 0 for rate in results["samples_per_s"].values())
    assert results["devices"] == 2 and results["scaling_efficiency"] > 0  # two logical CPUs mirrored
    assert 0.0 <= results["stall_fraction"] <= 1.0 and results["pipeline_images_per_s"] > 0
    assert results["auto_policy"] == "float32"  # auto keeps float32 without a GPU
    assert math.isfinite(results["auto_train_loss"])
