"""augment.image.format: packed, on real images: gnome-icon-theme's icons (RGBA, palettes, 16-256 px, letterboxed)
and scikit-learn's digits (grey). The same items give the same tensors as from their PNGs; one file per split;
`--dry-run` prints both sizes; a run trains and is evaluated on packed data, as a user runs it."""
import sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, run_mlpipe

sys.path.insert(0, str(REPO/"tools"))
import realdata  # noqa: E402
from mlpipe.config import load_config
from mlpipe.augmentation import augment_data
from mlpipe.dataset import ManifestDataset

def _augment(cfg_path, raw, version, *more):
    cfg = load_config(cfg_path, [f"data.raw_dir={raw}", f"augment.version={version}", "augment.workers=1", *more])
    augment_data(cfg)
    return cfg.manifest

@pytest.mark.parametrize("images", ["icons", "digits"])
def test_packed_gives_the_png_tensors(images, tmp_path, digits_raw, monkeypatch):
    if images == "icons":
        try: raw = realdata.build(tmp_path/"raw", ["icons"])["icons"]["path"]
        except realdata.MissingSource as e: pytest.skip(f"a source package is missing: {e}")
    else: raw = digits_raw
    cfg_path = REPO/"configs/image.yaml"
    (tmp_path/"data").mkdir()
    monkeypatch.chdir(tmp_path)  # the config writes data/processed/<version> where it is run
    png = _augment(cfg_path, raw, "png", "augment.copies=1")
    packed = _augment(cfg_path, raw, "packed", "augment.copies=1", "augment.image.format=packed")
    folder = packed.parent
    npys = sorted(folder.glob("items/*/*.npy"))
    assert len(npys) == 3 and not list(folder.glob("items/*/*.png")), npys  # one pack per split, no PNG left
    m = pd.read_csv(packed)
    assert m["path"].str.fullmatch(r"items/[0-9a-f]{2}/[0-9a-f]{64}\.npy#\d+").all()
    assert {np.load(p, mmap_mode="r").dtype for p in npys} == {np.dtype(np.uint8)}
    for split in ("train", "val", "test"):
        a, b = ManifestDataset(png, split), ManifestDataset(packed, split)
        assert len(a) == len(b) > 0 and a.info["in_shape"] == b.info["in_shape"]
        by_id = {b.value("id", i): i for i in range(len(b))}
        for i in range(len(a)):
            ia, ib = a[i], b[by_id[a.value("id", i)]]
            assert ia["x"].dtype == ib["x"].dtype == torch.float32, a.value("id", i)
            assert torch.equal(ia["x"], ib["x"]) and torch.equal(ia["y"], ib["y"]), a.value("id", i)
    # a rerun with nothing changed writes no new pack (the PNGs are made again, packed into the same names, tidied)
    before = {p.name: p.stat().st_mtime_ns for p in npys}
    _augment(cfg_path, raw, "packed", "augment.copies=1", "augment.image.format=packed")
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("items/*/*.npy")} == before

def test_packed_from_the_command_line(project):
    "As a user: --dry-run names both sizes and writes nothing; augment, train and evaluate on packed images."
    dry = run_mlpipe("augment", "config.yaml", "augment.image.format=packed", *TINY, "--dry-run", cwd=project)
    assert dry.returncode == 0, dry.stderr
    assert "of processed files (png: " in dry.stdout + dry.stderr, dry.stdout + dry.stderr
    assert not (project/"data/processed").exists() or not any((project/"data/processed").rglob("manifest.csv"))
    r = run_mlpipe("run", "config.yaml", "augment.image.format=packed", *TINY, cwd=project)
    assert r.returncode == 0, r.stderr
    run_dir = project/r.stdout.strip().splitlines()[-1]
    assert len(pd.read_csv(run_dir/"metrics.csv")) == 2
    ev = run_mlpipe("evaluate", run_dir, cwd=project)
    assert ev.returncode == 0, ev.stderr
    assert (run_dir/"eval/test/top_losses.png").stat().st_size > 0
    bad = run_mlpipe("augment", "config.yaml", "augment.image.format=jpeg", cwd=project)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: augment.image.format"), bad.stderr
