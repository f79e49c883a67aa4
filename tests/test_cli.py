"The `mlpipe` command end to end, as real subprocesses in a fresh project folder."
import hashlib, sys, subprocess
from pathlib import Path
import pandas as pd
import pytest
from conftest import TINY, run_mlpipe

def digest(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}

def test_help_is_fast_and_does_not_import_torch():
    code = "import sys; import mlpipe.cli as c; c.build_parser(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run([sys.executable, "-m", "mlpipe", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "augment" in r.stdout

def test_run_end_to_end(project):
    r = run_mlpipe("run", "config.yaml", *TINY, "run_name=first", cwd=project)
    assert r.returncode == 0, r.stderr
    run_dir = project/r.stdout.strip().splitlines()[-1]
    assert run_dir == project/"checkpoint/log_first"
    for f in ["best.pt", "last.pt", "metrics.csv", "metrics.png", "config.snapshot.yaml", "env.json", "status.json"]:
        assert (run_dir/f).is_file(), f
    m = pd.read_csv(run_dir/"metrics.csv")
    assert list(m.epoch) == [1, 2]
    assert {"train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "seconds"} <= set(m.columns)
    manifest = pd.read_csv(project/"data/processed/v1/manifest.csv")
    assert set(manifest.split) == {"train", "val", "test"}
    # the listing and the plot verbs read the run back
    ls = run_mlpipe("runs", cwd=project)
    assert ls.returncode == 0 and "first" in ls.stdout and "finished" in ls.stdout
    (run_dir/"metrics.png").unlink()
    assert run_mlpipe("plot", run_dir, cwd=project).returncode == 0 and (run_dir/"metrics.png").exists()

@pytest.fixture
def augmented(project):
    r = run_mlpipe("augment", "config.yaml", *TINY, cwd=project)
    assert r.returncode == 0, r.stderr
    return project

def test_second_run_never_overwrites_the_first(augmented):
    r1 = run_mlpipe("train", "config.yaml", *TINY, "run_name=same", cwd=augmented)
    first = augmented/"checkpoint/log_same"
    before = digest(first)
    r2 = run_mlpipe("train", "config.yaml", *TINY, "run_name=same", cwd=augmented)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    assert r2.stdout.strip().splitlines()[-1].endswith("log_same-2")
    assert digest(first) == before

def test_resume_continues_at_the_next_epoch(augmented):
    # no schedule planned over the run's length: more epochs can follow (a cosine run's would be refused)
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=res", "scheduler=null", cwd=augmented)
    run_dir = augmented/"checkpoint/log_res"
    assert r.returncode == 0, r.stderr
    r = run_mlpipe("train", "--resume", run_dir, "train.epochs=3", cwd=augmented)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(run_dir)
    assert list(pd.read_csv(run_dir/"metrics.csv").epoch) == [1, 2, 3]
    assert sorted(p.name for p in (augmented/"checkpoint").iterdir()) == ["log_res"]

@pytest.mark.parametrize("args, message", [
    (["train", "config.yaml", "train.epoch=3"], "error: train.epoch: unknown key; did you mean train.epochs?"),
    (["train", "config.yaml", "train.grad_clip=big"], "error: train.grad_clip: expected float or null, got str ('big')"),
    (["train", "missing.yaml"], "error: config file not found: missing.yaml"),
    (["run", "config.yaml", "data.raw_dir=data/raw/nothing"], "error: raw_dir not found: data/raw/nothing"),
    (["train", "config.yaml", "augment.version=never-made"], "error: manifest not found: data/processed/never-made/manifest.csv"),
    (["train", "config.yaml", "model.head={name: no_such_head}"], "error: model.head: unknown name 'no_such_head'"),
    (["train", "--resume", "checkpoint/log_nope"], "error: run not found: checkpoint/log_nope"),
])
def test_user_errors_are_one_line_exit_2_and_write_nothing(augmented, args, message):
    project = augmented
    before = sorted(str(p.relative_to(project)) for p in project.rglob("*"))
    r = run_mlpipe(*args, *TINY, cwd=project)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(str(p.relative_to(project)) for p in project.rglob("*")) == before
