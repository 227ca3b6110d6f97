"""Every tutorial runs top to bottom, in small-data mode, on the real data."""

import glob
import os
import signal
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from tensorboard import manager

from tests.conftest import REPO_ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(REPO_ROOT, "notebooks", "*.ipynb")))
SMALL_ENV = "MMKERAS_NOTEBOOK_SMALL"


def test_there_are_nine_tutorials():
    assert [os.path.basename(path)[:2] for path in NOTEBOOKS] == [f"{n:02d}" for n in range(1, 10)]


@pytest.mark.long(250)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs(path, data_root, monkeypatch):
    monkeypatch.setenv(SMALL_ENV, "1")
    monkeypatch.setenv("MMKERAS_DATA", data_root)
    # The kernel is started as `python`: make it this interpreter, with its packages.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit notebooks without outputs"
    )
    running_before = {info.pid for info in manager.get_all()}
    try:
        NotebookClient(
            notebook,
            timeout=900,
            kernel_name="python3",
            resources={"metadata": {"path": os.path.dirname(path)}},
        ).execute()
    finally:
        # `%tensorboard` leaves its server running after the kernel exits.
        for info in manager.get_all():
            if info.pid not in running_before:
                os.kill(info.pid, signal.SIGTERM)
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert not errors
