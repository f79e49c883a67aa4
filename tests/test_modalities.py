"""Every modality on real data: `mlpipe demo NAME`, then `mlpipe run configs/NAME.yaml`, as real subprocesses.

The runs are shortened (fewer epochs and copies) but otherwise the examples' own configs; each must beat chance by a
wide margin. A user's own data in the same layout needs only `data.raw_dir`: classes, input shape and vocabulary are
discovered. Broken raw files are skipped, listed in errors.csv, and the run still trains.
"""
import csv, json, shutil
from pathlib import Path
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, TINY, run_mlpipe

EXAMPLES = ["image", "tabular", "text", "audio"]
DEMO = {"image": "digits", "tabular": "tabular", "text": "text", "audio": "audio"}  # config name -> `mlpipe demo` NAME
SHORT = {  # config -> overrides that keep the run short; every other setting is the example's own
    "image": ["augment.copies=1", "train.epochs=3", "model.backbone={name: small_cnn, channels: [16, 32]}"],
    "tabular": ["train.epochs=10"],
    "text": ["augment.copies=2", "train.epochs=10"],
    "audio": ["augment.copies=1", "train.epochs=4"],
}
# Chance is 1/classes (image 0.10, tabular 0.33, text 0.25, audio 0.10); the majority class is at most 0.40 (wine).
MIN_VAL_ACCURACY = {"image": 0.7, "tabular": 0.8, "text": 0.6, "audio": 0.7}
QUIET = ["train.progress=false", "augment.workers=1", "early_stop.patience=null"]

@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    "These models are tiny: on shared CPU cores one thread trains several times faster than two fighting for them."
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

def example_project(tmp_path: Path, name: str) -> Path:
    "A project folder holding the repository's example configs and the example's demo data."
    shutil.copytree(REPO/"configs", tmp_path/"configs")
    r = run_mlpipe("demo", DEMO[name], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(tmp_path/r.stdout.strip()).exists()
    return tmp_path

def run_example(project: Path, name: str, *overrides) -> Path:
    "`mlpipe run configs/<name>.yaml` with quiet settings; the run directory."
    r = run_mlpipe("run", f"configs/{name}.yaml", *QUIET, *overrides, "run_name=t", cwd=project, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return project/r.stdout.strip().splitlines()[-1]

def state(run_dir: Path) -> dict:
    "The model weights of a run's best checkpoint."
    return torch.load(run_dir/"best.pt", weights_only=True, map_location="cpu")["model"]

def head_outputs(sd: dict) -> int:
    "Rows of the head's last weight matrix: the number of outputs the model was built with."
    return [v for k, v in sd.items() if k.startswith("head") and k.endswith("weight")][-1].shape[0]

@pytest.mark.slow  # 10-30 s each: the demo data, then augment and train
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_trains_well_above_chance(tmp_path, name):
    project = example_project(tmp_path, name)
    run_dir = run_example(project, name, *SHORT[name])
    m = pd.read_csv(run_dir/"metrics.csv")
    assert m.val_accuracy.max() >= MIN_VAL_ACCURACY[name], m[["epoch", "train_loss", "val_loss", "val_accuracy"]]
    assert m.train_loss.iloc[-1] < m.train_loss.iloc[0]

def test_configs_state_no_sizes():
    "Classes, input sizes and vocabulary come from the data: no example config states them."
    for name in EXAMPLES:
        cfg = yaml.safe_load((REPO/"configs"/f"{name}.yaml").read_text())
        assert cfg["model"].get("n_outputs") is None, name
        text = (REPO/"configs"/f"{name}.yaml").read_text()
        for key in ("n_outputs", "n_classes", "num_classes", "vocab_size", "in_features", "in_shape", "in_channels"):
            assert key not in text, (name, key)
        r = run_mlpipe("config", f"configs/{name}.yaml", cwd=REPO)  # and each is a valid config
        assert r.returncode == 0, r.stderr

def own_images(dest: Path) -> Path:
    "A user's images: three digit classes as 12x12 colour PNGs (the demo's are 8x8 grey, ten classes)."
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    for label in (3, 5, 8):
        (dest/f"digit{label}").mkdir(parents=True)
        for i in (d.target == label).nonzero()[0][:40]:
            grey = Image.fromarray((d.images[i] * 255 / 16).astype("uint8")).resize((12, 12))
            Image.merge("RGB", [grey, grey.point(lambda v: 255 - v), grey]).save(dest/f"digit{label}/{i}.png")
    return dest

def own_data(name: str, root: Path) -> tuple[str, int]:
    "Write a user's own data set of modality `name` under `root`: (its data.raw_dir, its number of classes)."
    from mlpipe.demo_data import write_breast_cancer, write_fortunes, write_spoken_words
    if name == "image": return str(own_images(root/"mine")), 3
    if name == "tabular": return str(write_breast_cancer(root/"mine")), 2
    if name == "text": return str(write_fortunes(root/"mine", categories=("love", "medicine", "pets"))), 3
    return str(write_spoken_words(root/"mine", words=("yes", "no", "stop"), per_word=16)), 3

@pytest.mark.parametrize("name", EXAMPLES)
def test_own_data_needs_only_raw_dir(tmp_path, name):
    shutil.copytree(REPO/"configs", tmp_path/"configs")
    raw_dir, n_classes = own_data(name, tmp_path)
    run_dir = run_example(tmp_path, name, f"data.raw_dir={raw_dir}", "augment.copies=0", "train.epochs=2")
    processed = tmp_path/"data/processed"/yaml.safe_load((tmp_path/"configs"/f"{name}.yaml").read_text())["augment"]["version"]
    assert len(json.loads((processed/"labels.json").read_text())["classes"]) == n_classes
    sd = state(run_dir)
    assert head_outputs(sd) == n_classes
    first = next(v for k, v in sd.items() if k.endswith("weight"))  # the first layer sees the discovered input
    if name == "image": assert first.shape[1] == 3  # colour
    if name == "tabular": assert first.shape == (30,)  # input_norm over 30 features (wine has 13)
    if name == "text": assert first.shape[0] == len(json.loads((processed/"vocab.json").read_text())["itos"])
    if name == "audio": assert first.shape[1] == 40  # 40 mel bands, whatever the files' sample rate

def test_corrupt_files_are_skipped_listed_and_training_goes_on(tmp_path, digits_raw):
    from mlpipe.demo_data import write_corrupt_examples
    shutil.copy(REPO/"config.yaml", tmp_path/"config.yaml")
    raw = shutil.copytree(digits_raw, tmp_path/"data/raw/digits")
    bad = write_corrupt_examples(raw)
    r = run_mlpipe("run", "config.yaml", *TINY, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path/r.stdout.strip().splitlines()[-1]/"best.pt").is_file()
    with open(tmp_path/"data/processed/v1/errors.csv", newline="") as f: errors = list(csv.DictReader(f))
    assert sorted(e["source_id"] for e in errors) == sorted(f"0/{p.name}" for p in bad)
    assert all(e["reason"] for e in errors)
    manifest = pd.read_csv(tmp_path/"data/processed/v1/manifest.csv")
    assert not manifest.source_id.str.contains("bad_").any()
    assert manifest.source_id.nunique() == 400  # every good image is there
    assert r.stderr.count("skipped raw item") == len(bad)  # one warning each

def test_demo_names_the_missing_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no espeak-ng on this PATH (python itself is started by its full path)
    r = run_mlpipe("demo", "audio", "--dest", tmp_path/"spoken", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == "error: espeak-ng not found: the audio demo speaks its words with it; install it with `apt-get install espeak-ng`\n"
    assert not (tmp_path/"spoken").exists()
