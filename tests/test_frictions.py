"""Small frictions a new user meets, as real `mlpipe` subprocesses: --version, run names as `mlpipe runs` prints them
in every verb, NAME:best beside NAME:latest, a suggestion for a registry typo, compare printing values as written."""
import json, subprocess, sys
import pytest
from conftest import TINY, new_project, run_mlpipe, ok

@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    "Two runs: `good` (3 epochs at lr 0.02) and `poor` (1 epoch at a tiny lr), neither with a schedule."
    d = new_project(tmp_path_factory.mktemp("frictions"), digits_raw)
    ok(run_mlpipe("augment", "config.yaml", *TINY, cwd=d))
    ok(run_mlpipe("train", "config.yaml", *TINY, "run_name=good", "optim.lr=0.02", "train.epochs=3", "scheduler=null", cwd=d))
    ok(run_mlpipe("train", "config.yaml", *TINY, "run_name=poor", "train.epochs=1", "optim.lr=1.0e-06", "scheduler=null", cwd=d))
    return d


def test_version_is_instant():
    r = subprocess.run([sys.executable, "-c", "import sys; from mlpipe.cli import main\ntry: main(['--version'])\n"
                        "except SystemExit: pass\nassert 'torch' not in sys.modules"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().startswith("mlpipe "), (r.stdout, r.stderr)


def test_run_names_work_in_every_verb(work):
    image = next((work/"data/raw/digits/4").glob("*.png"))
    assert ok(run_mlpipe("predict", "good", image, cwd=work)).stdout.splitlines()[0].startswith("id,label")
    assert ok(run_mlpipe("plot", "good", cwd=work)).stdout.strip() == "checkpoint/log_good/metrics.png"
    r = ok(run_mlpipe("train", "--resume", "good", cwd=work))
    assert "already finished (3/3 epochs)" in r.stderr
    r = run_mlpipe("plot", "nothing", cwd=work)
    assert r.returncode == 2 and "run not found: nothing" in r.stderr


def test_best_beside_latest_and_a_suggestion_for_a_typo(work):
    ok(run_mlpipe("register", "good", "--name", "digits", cwd=work))
    r = ok(run_mlpipe("register", "poor", "--name", "digits", cwd=work))  # newer, worse: latest, not best
    assert r.stdout.strip() == "digits:v2"
    assert "digits:v2 has val_accuracy " in r.stderr and "; digits:best is v1 (" in r.stderr, r.stderr
    ok(run_mlpipe("evaluate", "digits:best", "--top", "0", cwd=work))
    assert (work/"registry/digits/v1/eval/test/metrics.json").is_file() and not (work/"registry/digits/v2/eval").exists()
    r = run_mlpipe("predict", "digts:latest", next((work/"data/raw/digits/4").glob("*.png")), cwd=work)
    assert r.returncode == 2 and r.stderr.strip().endswith("did you mean 'digits'?"), r.stderr


def test_compare_prints_values_as_written(work):
    r = ok(run_mlpipe("compare", "good", "poor", "--out", "cmp.png", cwd=work))
    diff = r.stdout.split("config differences:")[1]
    rows = {line.split()[0]: line.split()[1:] for line in diff.strip().splitlines()[1:-1]}
    assert rows["optim.lr"] == ["0.02", "1e-06"] and rows["train.epochs"] == ["3", "1"], diff
    assert "NaN" not in r.stdout and ".000" not in diff


def test_a_pipe_gets_one_line_per_epoch(work):
    "`mlpipe train … 2>&1 | cat`: no terminal, no bar, but a line per epoch with its values, time and ETA."
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m mlpipe train config.yaml {' '.join(repr(a) for a in TINY)} run_name=piped train.epochs=3 2>&1 | cat"],
                       cwd=work, capture_output=True, text=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stdout
    epochs = [l for l in r.stdout.splitlines() if l.startswith("epoch ")]
    assert [l.split("  ")[0] for l in epochs] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], r.stdout
    assert all("train_loss " in l and "val_accuracy " in l and "ETA " in l for l in epochs) and epochs[-1].endswith("ETA 0:00)")
    assert "\r" not in r.stdout
