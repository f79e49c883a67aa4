"Fine-tuning as a user does it: train on one data set, start another (other classes) from it with `model.init`."
import json, shutil
from pathlib import Path
import numpy as np
import pytest
import torch
from conftest import REPO, run_mlpipe, ok

SMALL = ["augment.workers=1", "augment.copies=0", "train.progress=false", "early_stop.patience=null",
         "model.backbone={name: resnet, widths: [8, 16]}", "train.epochs=2"]

def write_letters(dest: Path):
    "Another real data set with other classes: the digits 7, 8 and 9 of scikit-learn's second half, named as words."
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    for label, word in [(7, "seven"), (8, "eight"), (9, "nine")]:
        (dest/word).mkdir(parents=True)
        for i in np.flatnonzero(d.target == label)[-60:]:
            Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(dest/word/f"{i:04d}.png")

def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]

@pytest.fixture(scope="module")
def source(tmp_path_factory, digits_raw):
    "A project with a 10-class digits run (`log_src`) and the 3-class data set beside it."
    project = tmp_path_factory.mktemp("transfer")
    shutil.copy(REPO/"config.yaml", project/"config.yaml")
    shutil.copytree(digits_raw, project/"data/raw/digits")
    write_letters(project/"data/raw/words")
    ok(run_mlpipe("run", "config.yaml", *SMALL, "run_name=src", cwd=project))
    ok(run_mlpipe("augment", "config.yaml", *SMALL, "data.raw_dir=data/raw/words", "augment.version=words", cwd=project))
    return project

WORDS = ["data.raw_dir=data/raw/words", "augment.version=words"]

def runs(project: Path) -> list[str]: return sorted(p.name for p in (project/"checkpoint").iterdir())

def test_init_reports_loaded_and_new_tensors_and_the_frozen_backbone_stays(source):
    src = weights(source/"checkpoint/log_src/best.pt")
    r = ok(run_mlpipe("train", "config.yaml", *SMALL, *WORDS, "run_name=frozen", "model.init=checkpoint/log_src",
                      "train.freeze_backbone=2", cwd=source))
    run = source/"checkpoint/log_frozen"
    init = json.loads((run/"init.json").read_text())
    backbone = [k for k in src if k.startswith("backbone.")]
    assert init["loaded"] == backbone  # every backbone tensor, BatchNorm statistics included
    assert init["new"] == ["head.1.weight", "head.1.bias"]
    assert init["mismatched"] == {"head.1.weight": [[10, 16], [3, 16]], "head.1.bias": [[10], [3]]}
    assert init["unused"] == [] and init["file"] == str((source/"checkpoint/log_src/best.pt").resolve())
    assert f"model.init: loaded {len(backbone)} tensor(s) from" in r.stderr
    assert "model.init: new (initialised here) 2: head.1.weight [3, 16] (source [10, 16]), head.1.bias [3] (source [10])" in r.stderr
    new = weights(run/"last.pt")
    assert all(torch.equal(new[k], src[k]) for k in backbone)  # two frozen epochs: weights and running stats as loaded
    assert new["head.1.weight"].shape == (3, 16)
    # frozen for one epoch only: the second trains the backbone too; by name through the registry
    assert ok(run_mlpipe("register", "checkpoint/log_src", "--name", "digits", cwd=source)).stdout.strip() == "digits:v1"
    ok(run_mlpipe("train", "config.yaml", *SMALL, *WORDS, "run_name=thawed", "model.init=digits:v1",
                  "train.freeze_backbone=1", "optim.backbone_lr_mult=0.1", cwd=source))
    thawed = weights(source/"checkpoint/log_thawed/last.pt")
    assert json.loads((source/"checkpoint/log_thawed/init.json").read_text())["loaded"] == backbone
    assert not all(torch.equal(thawed[k], src[k]) for k in backbone)

def test_init_errors_write_no_run(source):
    before = runs(source)
    r = run_mlpipe("train", "config.yaml", *SMALL, *WORDS, "model.init=checkpoint/log_src", "model.init_strict=true", cwd=source)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: model.init_strict: the weights do not fit this model: 2 of another shape")
    r = run_mlpipe("train", "config.yaml", *SMALL, *WORDS, "model.init=nope/best.pt", cwd=source)
    assert r.returncode == 2 and "model.init: nope/best.pt not found" in r.stderr.strip().splitlines()[-1]
    r = run_mlpipe("train", "config.yaml", *SMALL, *WORDS, "model.init=checkpoint/log_src", "train.freeze_backbone=-1", cwd=source)
    assert r.returncode == 2 and "train.freeze_backbone" in r.stderr
    assert runs(source) == before
