"""How ManifestDataset construction scales with the manifest size (a benchmark, not a test).

    python bench/manifest_scale.py                      # 10k, 100k, 1M rows; splits train and val
    python bench/manifest_scale.py --sizes 10000 --dir /tmp/mlpipe_bench

Writes contract-shaped manifests (80% train with augmented copies, 10% val, 10% test; fake content-addressed paths,
since loading is lazy) and a labels.json, then builds `ManifestDataset(csv, split)` in a fresh subprocess per case
and reports the construction time (wall and CPU: on a shared machine CPU time is the steadier figure) and the
peak RSS of that process (Python + torch + pandas included) next to the RSS after the imports alone.
Target for 1M rows: <= 3 s and <= 500 MB peak RSS."""
import argparse, json, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd

CHILD = r"""
import json, resource, sys, time
from mlpipe.dataset import ManifestDataset

def rss():
    "Peak RSS of this process so far, MiB."
    try:  # VmHWM belongs to this process's memory map; ru_maxrss would carry over the parent's peak across exec
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
base = rss()
t, cpu = time.perf_counter(), time.process_time()
ds = ManifestDataset(sys.argv[1], sys.argv[2])
secs, cpu = time.perf_counter() - t, time.process_time() - cpu
print(json.dumps({"rows": len(ds), "seconds": secs, "cpu": cpu, "peak_mb": rss(), "import_mb": base}))
"""

def make_manifest(path, n, seed=0):
    "Write an n-row manifest.csv (and labels.json) following the data contract; paths need not exist."
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    label = (k % 10).astype(str)
    split = np.select([k % 10 < 8, k % 10 == 8], ["train", "val"], "test")
    copy = np.where(split == "train", k % 3, 0)  # augmented copies only in train
    hexlut = np.array([f"{i:02x}" for i in range(256)], dtype="S2")
    sha = hexlut[rng.integers(0, 256, (n, 32), dtype=np.uint8)].view("S64").ravel().astype(str)
    src = pd.Series(label, dtype=object) + "/img_" + pd.Series(k).astype(str).str.zfill(7) + ".png"
    df = pd.DataFrame({
        "id": src + "#" + pd.Series(copy).astype(str),
        "source_id": src,
        "path": "items/" + pd.Series(sha).str[:2] + "/" + pd.Series(sha) + ".png",
        "target": label, "split": split,
        "aug_tag": np.where(copy == 0, "v1/orig", "v1/aug" + pd.Series(copy).astype(str)),
        "modality": "image",
        "meta": '{"src": "' + src + '"}'})
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    (path.parent / "labels.json").write_text(json.dumps({"task": "classification", "classes": [str(c) for c in range(10)]}))

def measure(csv, split):
    "Build the dataset in a fresh process; return its figures."
    out = subprocess.run([sys.executable, "-c", CHILD, str(csv), split], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--splits", nargs="+", default=["train", "val"])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/mlpipe_bench"), help="where the manifests are cached")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest is reported")
    args = ap.parse_args()
    print(f"{'rows':>9} {'MB on disk':>10} {'split':>6} {'kept':>8} {'seconds':>8} {'cpu s':>6} {'peak RSS MB':>12} {'after imports':>14} {'delta MB':>9}")
    for n in args.sizes:
        csv = args.dir / f"m{n}" / "manifest.csv"
        if not csv.is_file():
            t = time.perf_counter(); make_manifest(csv, n)
            print(f"(wrote {csv} in {time.perf_counter() - t:.1f} s)", file=sys.stderr)
        for split in args.splits:
            r = min((measure(csv, split) for _ in range(args.repeat)), key=lambda r: r["seconds"])
            print(f"{n:>9} {csv.stat().st_size / 2**20:>10.0f} {split:>6} {r['rows']:>8} {r['seconds']:>8.2f} {r['cpu']:>6.2f} "
                  f"{r['peak_mb']:>12.0f} {r['import_mb']:>14.0f} {r['peak_mb'] - r['import_mb']:>9.0f}", flush=True)

if __name__ == "__main__": main()
