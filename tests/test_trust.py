"""No code runs from a file the user did not write: a checkpoint's or a registered model's stored config may name
only mlpipe's built-ins, unless the user passes --trust or trusts the module in MLPIPE_TRUSTED_MODULES.

Each attack is a real file edited as an attacker would (the config inside best.pt / model.pt, SHA256SUMS regenerated
or deleted), and each command is a real `mlpipe` subprocess."""
import hashlib, os, shutil
from pathlib import Path
import pytest
import torch
from conftest import TINY, new_project, run_mlpipe, ok

@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    d = new_project(tmp_path_factory.mktemp("trust"), digits_raw)
    ok(run_mlpipe("augment", "config.yaml", *TINY, cwd=d))
    ok(run_mlpipe("train", "config.yaml", *TINY, "run_name=clean", cwd=d))
    return d

def poison(weights: Path, marker: Path, where: str):
    "Rewrite the config stored in a checkpoint so that building the model (or its val transforms) runs `touch marker`."
    state = torch.load(weights, weights_only=True)
    evil = {"name": "os:system", "command": f"touch {marker}"}
    if where == "backbone": state["config"]["model"]["backbone"] = evil
    else: state["config"]["tf"]["val"] = [evil]
    torch.save(state, weights)

def refused(r, marker: Path, what="'os:system' is an import path in "):
    assert r.returncode == 2 and r.stderr.startswith("error: ") and what in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not marker.exists(), "the command ran"

def an_image(work: Path) -> Path: return next((work/"data/raw/digits/3").glob("*.png"))


@pytest.mark.parametrize("where", ["backbone", "tf.val"])
def test_a_poisoned_checkpoint_runs_nothing_unless_trusted(work, where):
    run = work/f"checkpoint/log_evil_{where.replace('.', '_')}"
    shutil.copytree(work/"checkpoint/log_clean", run)
    marker = work/f"ran_{where}"
    poison(run/"best.pt", marker, where)
    refused(run_mlpipe("predict", run, an_image(work), cwd=work), marker)
    refused(run_mlpipe("evaluate", run, cwd=work), marker)
    refused(run_mlpipe("register", run, "--name", "evil", cwd=work), marker)
    assert not (work/"registry/evil").exists() or not any((work/"registry/evil").glob("v*"))
    # the user vouches for the file: then it is their code, and it runs
    run_mlpipe("predict", run, an_image(work), "--trust", cwd=work)
    assert marker.exists(); marker.unlink()
    run_mlpipe("predict", run, an_image(work), cwd=work, env={"MLPIPE_TRUSTED_MODULES": "os"})
    assert marker.exists(); marker.unlink()


def test_a_registered_model_is_checked_and_its_config_distrusted(work):
    ok(run_mlpipe("register", "checkpoint/log_clean", "--name", "digits", cwd=work))
    version = work/"registry/digits/v1"
    ok(run_mlpipe("predict", "digits:v1", an_image(work), cwd=work))  # the clean copy predicts
    marker = work/"ran_registry"
    poison(version/"model.pt", marker, "backbone")
    r = run_mlpipe("predict", "digits:v1", an_image(work), cwd=work)
    assert r.returncode == 2 and "model.pt: sha256 differs from SHA256SUMS" in r.stderr, r.stderr
    # an attacker who rewrites SHA256SUMS too still gets no code run
    sums = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n" for f in sorted(version.iterdir())
                   if f.is_file() and f.name != "SHA256SUMS")
    (version/"SHA256SUMS").write_text(sums)
    refused(run_mlpipe("predict", "digits:v1", an_image(work), cwd=work), marker)
    refused(run_mlpipe("evaluate", "digits:v1", cwd=work), marker)
    # and deleting SHA256SUMS does not turn the check off
    (version/"SHA256SUMS").unlink()
    refused(run_mlpipe("predict", "digits:v1", an_image(work), cwd=work), marker, what="no SHA256SUMS")
