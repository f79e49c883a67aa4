"""Benchmark of the augmentation stage on 5,000 real images.

    python bench/augment_bench.py [--n 5000] [--copies 1] [--repeat 2] [--keep DIR]

Builds a class-folder tree of 5,000 PNGs (scikit-learn's digits upscaled to 32x32, repeated shifted by a pixel) in a temp
dir, then times `augment` three ways: a first run with workers=1, a first run with workers=2 (fresh out dirs), and a
cached rerun with nothing changed (best of several, as the machine may be shared). It prints items/s, the 2-vs-1 speed-up, the rerun/first ratio (target <= 10%) and
how much of the rerun is reading + hashing the raw files (the part a (path, size, mtime) index could save).
"""
import argparse, hashlib, shutil, sys, tempfile, time, warnings
from pathlib import Path

import numpy as np
from PIL import Image

from mlpipe.augmentation import augment, scan_raw_data

RECIPE = {"image": [{"name": "whiten"}, {"name": "rotate", "degrees": 10}, {"name": "flip"},
                    {"name": "color_jitter", "brightness": 0.2, "contrast": 0.2}]}

def build_tree(root: Path, n: int) -> Path:
    "n distinct 32x32 grey PNGs under root/<digit>/r<rep>_<index>.png."
    from sklearn.datasets import load_digits
    d = load_digits()
    imgs = np.round(d.images * (255 / 16)).astype(np.uint8)
    for k in range(n):
        i, rep = k % len(imgs), k // len(imgs)
        path = root / str(d.target[i]) / f"r{rep}_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        img = np.roll(imgs[i], rep, axis=1)  # each repetition shifted: distinct files, no cache hits on a first run
        Image.fromarray(img).resize((32, 32), Image.Resampling.BILINEAR).save(path)
    return root

def timed(repeat=1, fresh=False, **kw):
    "Run augment `repeat` times; return the last report and the best wall and main-process CPU seconds."
    walls, cpus = [], []
    for _ in range(repeat):
        if fresh: shutil.rmtree(kw["out_dir"], ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = augment(**kw)
        walls.append(time.perf_counter() - t0); cpus.append(time.process_time() - c0)
    return rep, min(walls), min(cpus)

def sha(p: Path) -> str: return hashlib.sha256(p.read_bytes()).hexdigest()

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="raw images")
    ap.add_argument("--copies", type=int, default=1, help="augmented copies per train item")
    ap.add_argument("--repeat", type=int, default=2, help="first runs per setting (best is reported)")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it (default: a temp dir, removed)")
    a = ap.parse_args(argv)
    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="augment_bench_"))
    try:
        t0 = time.perf_counter(); raw = build_tree(work / "raw", a.n)
        print(f"built {a.n} raw 32x32 PNGs in {time.perf_counter() - t0:.1f} s")
        common = dict(raw_dir=raw, recipe=RECIPE, copies=a.copies, seed=0, version="bench", progress=False)
        r1, t1, c1 = timed(a.repeat, True, out_dir=work / "out_w1", workers=1, **common)
        r2, t2, _ = timed(a.repeat, True, out_dir=work / "out_w2", workers=2, **common)
        r3, t3, _ = timed(3, out_dir=work / "out_w2", workers=2, **common)
        r4, t4, c4 = timed(3, out_dir=work / "out_w1", workers=1, **common)
        same = sha(work / "out_w1" / "manifest.csv") == sha(work / "out_w2" / "manifest.csv")
        t0 = time.perf_counter()
        for it in scan_raw_data(raw): hashlib.sha256(it.path.read_bytes()).hexdigest()
        t_hash = time.perf_counter() - t0
        print(f"rows: {r1.n_rows} ({r1.rows}); processed files + metadata: {r1.bytes_written / 1e6:.1f} MB")
        print(f"(best of {a.repeat} first runs, best of 3 reruns; wall seconds, CPU seconds of the main process)")
        print(f"first run, workers=1: {t1:6.2f} s  {a.n / t1:7.0f} items/s  {r1.n_rows / t1:7.0f} rows/s  (cpu {c1:.2f} s)")
        print(f"first run, workers=2: {t2:6.2f} s  {a.n / t2:7.0f} items/s  {r2.n_rows / t2:7.0f} rows/s")
        print(f"speed-up workers 2 vs 1: {t1 / t2:.2f}x")
        print(f"cached rerun, workers=2: {t3:6.2f} s  ({r3.n_cached}/{r3.n_rows} cached)  rerun/first = {t3 / t2:.1%}")
        print(f"cached rerun, workers=1: {t4:6.2f} s  ({r4.n_cached}/{r4.n_rows} cached)  rerun/first = {t4 / t1:.1%}"
              f"  (cpu {c4:.2f} s, {c4 / c1:.1%})")
        print(f"scan + read + sha256 of all raw files (what the hash index saves): {t_hash:.2f} s")
        print(f"manifests identical for workers=1 and workers=2: {same}")
        return 0 if same and r3.n_cached == r3.n_rows else 1
    finally:
        if not a.keep: shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    sys.exit(main())
