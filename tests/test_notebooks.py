"""Notebooks as a user runs them: in a fresh Jupyter (IPython) kernel, not only in nbdev-test's in-process shell.

Each notebook in nbs/ already runs top to bottom in its own kernel in the docs build (`tools/docs.py`, a step of
`tools/test.sh` before pytest), started in the scratch folder `_proc/` that holds nbs/'s assets but no notebook,
without the cells nbdev-test skips; a failing cell fails the build. Running them all a second time here cost CI minutes and found
nothing the build does not. What is left: a new notebook outside the repository imports mlpipe, trains and shows
its run with no sys.path edits (mlpipe is an installed package)."""
import base64, importlib.util, os, shutil
from pathlib import Path
import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from conftest import TINY, write_digit_pngs

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("docs_tool", REPO/"tools/docs.py")
docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(docs)  # tools/ is not a package

def test_a_new_notebook_outside_the_repo_trains_and_shows_its_run(tmp_path):
    "A user's own notebook: `train(load_config(...))` draws live curves and returns the run; `Run(run_dir)` shows it."
    shutil.copy(REPO/"config.yaml", tmp_path/"config.yaml")
    write_digit_pngs(tmp_path/"data/raw/digits", 12)
    overrides = ["train.epochs=3", *(o for o in TINY if not o.startswith("train.epochs="))]
    cell = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        cell("import mlpipe\nfrom mlpipe.config import load_config\nfrom mlpipe.augmentation import augment_data\nfrom mlpipe.train import train\nfrom mlpipe.runs import Run"),
        cell(f"cfg = load_config('config.yaml', {overrides!r})\naugment_data(cfg);"),
        cell("run_dir = train(cfg)\nrun_dir"),
        cell("Run(run_dir)"),
        cell("mlpipe.__file__"),
    ], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    path = tmp_path/"my_experiment.ipynb"
    nbformat.write(nb, path)
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "PYTHONPATH")}  # as a fresh Jupyter has it
    NotebookClient(nb, timeout=300, kernel_name="python3", config=docs.KERNEL, resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    train_out, run_out, file_out = nb.cells[2].outputs, nb.cells[3].outputs, nb.cells[4].outputs
    # LivePlot: one image, redrawn in place after each epoch (update_display), not one image per epoch
    pngs = [o for o in train_out if o.output_type == "display_data" and "image/png" in o.data]
    assert len(pngs) == 1, train_out
    assert base64.b64decode(pngs[0].data["image/png"]).startswith(b"\x89PNG")
    # beside it, a table of the epochs that grew to all three (nbclient folds each update into the output it updates)
    page = pngs[0].data["text/html"]
    assert page.count("<tr>") == 1 + 3 and "epoch 3/3, ETA 0:00" in page, page
    # no epoch lines on stderr in a notebook: the table holds them
    assert not [o for o in train_out if o.output_type == "stream" and "epoch 1/3  " in o.text], train_out
    result = next(o for o in train_out if o.output_type == "execute_result").data["text/plain"]
    run_dir = tmp_path/"checkpoint"/Path(result.split("'")[1]).name
    assert run_dir.name.startswith("log_") and len(pd.read_csv(run_dir/"metrics.csv")) == 3
    # Run(run_dir) displays as HTML: status, the metrics table, the curves
    page = next(o for o in run_out if o.output_type == "execute_result").data["text/html"]
    assert run_dir.name in page and "<table" in page and "finished" in page and '<img src="data:image/png;base64,' in page
    # the mlpipe it imported is the installed package (editable: the repo's mlpipe/), reached without sys.path edits
    assert Path(eval(file_out[0].data["text/plain"])).parent == REPO/"mlpipe"
