"""Real data nobody prepared for mlpipe (tools/realdata.py: icon themes, fonts, espeak-ng, R's data sets, fortunes).

Each set goes through the repository's example config with only the data named, as a user would:
`mlpipe augment --dry-run` writes nothing and prints the profile; `mlpipe augment` says the truth about the data
(checked here against the raw files, read independently of mlpipe); nothing is dropped silently; training starts.
"""
import csv, io, json, sys
from collections import Counter
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from PIL import Image
from conftest import REPO, run_mlpipe

sys.path.insert(0, str(REPO/"tools"))
import realdata  # noqa: E402

# set -> (example config, overrides that name the data); nothing else is changed
DATA = {
    "icons": ("image", []),
    "grey_colour": ("image", []),
    "speech": ("audio", []),
    "titanic": ("tabular", ["data.scanner_args.target_col=survived"]),
    "default": ("tabular", ["data.scanner_args.target_col=default"]),
    "diamonds": ("tabular", ["data.scanner_args.target_col=price"]),
    "gapminder": ("tabular", ["data.scanner_args.target_col=lifeExp"]),
    "fortunes_csv": ("text", ["data.scanner=table", "data.scanner_args={target_col: category, text_col: text}"]),
}

@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    "The real data sets, built once, and a project folder holding the example configs."
    root = tmp_path_factory.mktemp("realdata")
    try: sets = realdata.build(root/"raw")
    except realdata.MissingSource as e: pytest.skip(f"a source package is missing: {e}")
    (root/"project").mkdir()
    for name in ("image", "audio", "tabular", "text"): (root/"project"/f"{name}.yaml").write_text((REPO/"configs"/f"{name}.yaml").read_text())
    return root/"project", sets

def args_for(sets, name, *extra):
    config, overrides = DATA[name]
    return [f"{config}.yaml", f"data.raw_dir={sets[name]['path']}", *overrides, f"augment.version={name}", *extra]

def augmented(suite, name):
    "Run `mlpipe augment` on a set (once per module); its output folder, stdout and profile.json."
    project, sets = suite
    out = project/"data"/"processed"/name
    if not (out/"profile.json").is_file():
        r = run_mlpipe("augment", *args_for(sets, name), cwd=project, timeout=600)
        assert r.returncode == 0, r.stderr
        (out/"stdout.txt").write_text(r.stdout)
    return out, (out/"stdout.txt").read_text(), json.loads((out/"profile.json").read_text())

def manifest(out):
    with open(out/"manifest.csv", newline="") as f: return list(csv.DictReader(f))

def originals(out): return [r for r in manifest(out) if r["aug_tag"].endswith("/orig")]

@pytest.mark.parametrize("name", list(DATA))
def test_dry_run_prints_the_profile_and_writes_nothing(suite, name):
    project, sets = suite
    before = sorted(p.relative_to(project) for p in project.rglob("*"))
    r = run_mlpipe("augment", "--dry-run", *args_for(sets, name, f"augment.version=dry_{name}"), cwd=project, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "nothing was written" in r.stdout and "target:" in r.stdout, r.stdout
    assert sorted(p.relative_to(project) for p in project.rglob("*")) == before

def test_icons_transparent_mixed_sizes_and_modes(suite):
    out, stdout, p = augmented(suite, "icons")
    raw = Path(suite[1]["icons"]["path"])
    files = sorted(f for f in raw.rglob("*.png"))
    sizes, modes = Counter(), Counter()
    for f in files:
        with Image.open(f) as im: sizes[im.size] += 1; modes[im.mode] += 1
    assert p["image"]["items"] == len(files) == len(originals(out))  # nothing dropped
    assert p["image"]["distinct_sizes"] == len(sizes) >= 3
    assert p["image"]["modes"] == dict(modes)
    h, w = p["image"]["size"]
    assert p["image"]["resized"] == sum(c for s, c in sizes.items() if s != (w, h))
    assert p["image"]["with_alpha"] > 0.9 * len(files) and p["conversions"]["alpha composited"] == p["image"]["with_alpha"]
    assert f"letterbox to {w}x{h}" in stdout
    processed = Counter()
    for r in manifest(out):
        with Image.open(out/r["path"]) as im: processed[(im.size, im.mode)] += 1
    assert list(processed) == [((w, h), "RGB")]  # one size and mode: batches can be made

def test_grey_and_colour_images_mixed(suite):
    out, stdout, p = augmented(suite, "grey_colour")
    raw = Path(suite[1]["grey_colour"]["path"])
    modes = Counter(Image.open(f).mode for f in raw.rglob("*.png"))
    assert set(modes) == {"L", "RGB"} and p["image"]["modes"] == dict(modes)
    assert p["image"]["mode"] == "RGB" and p["conversions"]["mode converted"] == modes["L"]
    assert {Image.open(out/r["path"]).mode for r in originals(out)} == {"RGB"}

def test_stereo_audio_at_mixed_rates(suite):
    out, stdout, p = augmented(suite, "speech")
    raw = Path(suite[1]["speech"]["path"])
    infos = [sf.info(str(f)) for f in sorted(raw.rglob("*")) if f.suffix in (".wav", ".flac")]
    assert p["audio"]["sample_rates"] == {str(r): c for r, c in sorted(Counter(i.samplerate for i in infos).items())}
    assert len(p["audio"]["sample_rates"]) == 4 and set(p["audio"]["formats"]) == {"WAV", "FLAC"}
    assert p["audio"]["mixed_to_mono"] == sum(i.channels > 1 for i in infos) == len(infos)
    rates = {sf.info(str(out/r["path"])).samplerate for r in manifest(out)}
    assert rates == {8000}  # configs/audio.yaml's own resample step decides, and the profile says so
    assert p["audio"]["sample_rate"] == "set by the recipe's resample step"

def test_table_with_missing_values_and_categories_and_no_id(suite):
    out, stdout, p = augmented(suite, "titanic")
    df = pd.read_csv(suite[1]["titanic"]["path"])
    assert "id" not in df.columns and df.isna().any().any()
    assert len(originals(out)) == len(df) == p["usable"]  # no row dropped for a missing feature
    cols = p["table"]["columns"]
    train = df.iloc[sorted(int(r["source_id"]) for r in originals(out) if r["split"] == "train")]  # profiled on train only
    for c in df.columns.drop("survived"):
        assert cols[c]["missing"] == round(train[c].isna().mean(), 4), c
        assert cols[c]["kind"] == ("numeric" if pd.api.types.is_numeric_dtype(df[c]) else "categorical"), c
    assert p["conversions"]["cells filled"] == int(df.drop(columns="survived").isna().sum().sum())
    assert [r["source_id"] for r in originals(out)][:3] == ["0", "1", "10"]  # row numbers as ids
    assert "263 cells filled" in stdout

def test_imbalanced_binary_table(suite):
    out, stdout, p = augmented(suite, "default")
    df = pd.read_csv(suite[1]["default"]["path"])
    share = df["default"].value_counts(normalize=True)
    assert share.min() < 0.05
    assert p["target"]["rarest"] == share.idxmin() and p["target"]["rarest_share"] == round(share.min(), 4)
    assert any("imbalanced target" in w for w in p["warnings"]) and "warning: imbalanced target" in stdout

def test_regression_table_of_50000_rows_packed(suite):
    out, stdout, p = augmented(suite, "diamonds")
    df = pd.read_csv(suite[1]["diamonds"]["path"])
    assert len(df) >= 50_000 and p["task"] == "regression" and p["target"]["task"] == "regression"
    labels = json.loads((out/"labels.json").read_text())
    train_ids = {int(r["source_id"]) for r in originals(out) if r["split"] == "train"}
    y = df["price"].to_numpy()[sorted(train_ids)]
    assert np.isclose(labels["target"]["mean"], y.mean()) and np.isclose(labels["target"]["std"], y.std())
    packs = list((out/"items").rglob("*.npy"))
    assert len(packs) == 3  # one file per split, not one per row
    rows = manifest(out)
    assert len(rows) == sum(len(np.load(f, mmap_mode="r")) for f in packs)
    assert {c: k["kind"] for c, k in p["table"]["columns"].items() if k["kind"] == "categorical"} == \
        {c: "categorical" for c in ("cut", "color", "clarity")}

def test_text_in_a_csv_column(suite):
    out, stdout, p = augmented(suite, "fortunes_csv")
    df = pd.read_csv(suite[1]["fortunes_csv"]["path"])
    assert p["text"]["items"] == len(df) == len(originals(out))
    assert p["target"]["counts"] == df["category"].value_counts().to_dict()

@pytest.mark.parametrize("name", list(DATA))
def test_training_starts(suite, name):
    "One epoch of each example config on its real data set (the augment is the one checked above)."
    project, sets = suite
    augmented(suite, name)
    r = run_mlpipe("train", *args_for(sets, name, "train.epochs=1", "train.progress=false"), cwd=project, timeout=900)
    assert r.returncode == 0, r.stderr
    run_dir = project/r.stdout.strip().splitlines()[-1]
    m = pd.read_csv(run_dir/"metrics.csv")
    snap = yaml.safe_load((run_dir/"config.snapshot.yaml").read_text())
    assert len(m) == 1 and np.isfinite(m[snap["monitor"]["key"]]).all()
    if name == "diamonds":
        assert (snap["model"]["head"]["name"], snap["loss"]["name"], snap["monitor"]["key"]) == ("regression", "mse", "val_r2")
        assert m["val_r2"].iloc[0] > 0.5  # one epoch on the standardised target already explains most of the price
    if name == "default":  # 3.3 % defaults: auto weighs the classes and picks the best epoch by macro-F1
        assert (snap["loss"], snap["monitor"]["key"]) == ({"name": "cross_entropy", "class_weight": "sqrt"}, "val_macro_f1")
    if name == "gapminder":  # country has 142 categories: integer codes, embedded by the mlp
        info = json.loads((run_dir/"info.json").read_text())
        assert [n for _, n in info["codes"]] == [len(set(pd.read_csv(sets[name]["path"])["country"].iloc[
            sorted(int(r["source_id"]) for r in originals(project/"data/processed/gapminder") if r["split"] == "train")])) + 1]

def test_a_registered_table_model_predicts_raw_rows_as_training_did(suite, tmp_path):
    "The registry keeps profile.json: predicting from elsewhere encodes raw rows as training did; a missing column is refused."
    project, sets = suite
    augmented(suite, "titanic")
    r = run_mlpipe("train", *args_for(sets, "titanic", "train.epochs=1", "train.progress=false", "run_name=reg"), cwd=project, timeout=900)
    assert r.returncode == 0, r.stderr
    reg = tmp_path/"registry"
    r = run_mlpipe("register", project/r.stdout.strip().splitlines()[-1], "--name", "titanic", "--registry", reg, cwd=project)
    assert r.returncode == 0, r.stderr
    assert (reg/"titanic"/"v1"/"profile.json").is_file()
    df = pd.read_csv(sets["titanic"]["path"])
    df.drop(columns="survived").head(20).to_csv(tmp_path/"new.csv", index=False)
    df.drop(columns=["survived", "age"]).head(3).to_csv(tmp_path/"no_age.csv", index=False)
    elsewhere = tmp_path/"elsewhere"; elsewhere.mkdir()  # no data/processed here: everything comes from the registry
    r = run_mlpipe("predict", "titanic:v1", tmp_path/"new.csv", "--registry", reg, cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    pred = pd.read_csv(io.StringIO(r.stdout), keep_default_na=False)
    assert len(pred) == 20 and (pred["error"] == "").all() and set(pred["label"]) <= {"yes", "no"}
    r = run_mlpipe("predict", "titanic:v1", tmp_path/"no_age.csv", "--registry", reg, cwd=elsewhere)
    bad = pd.read_csv(io.StringIO(r.stdout), keep_default_na=False)
    assert (bad["error"].str.contains("no column 'age'")).all(), bad
