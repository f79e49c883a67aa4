"""How fast items reach the model: a hand-written PIL Dataset, ManifestDataset on PNG files, ManifestDataset on packed images.

    python bench/data_path.py [--sizes 64 224] [--workers 0 2] [--repeats 3] [--out DIR]

Real images: gnome-icon-theme's icons (tools/realdata.py), 16-256 px with transparency, brought by `mlpipe augment`
to each size (letterboxed RGB; smaller icons upscaled) twice from the same raw files: `augment.image.format: png`
and `packed`. Each reader then goes through a DataLoader (batch 64, shuffled, collated) over the train split, the
readers alternating within each repeat; samples/s is the median of the repeats. Prints a Markdown table with each
reader's ratio to ManifestDataset on PNG, and the disk size of each format.
"""
import argparse, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/"tools"))
import realdata  # noqa: E402
from mlpipe.dataset import ManifestDataset, make_loader  # noqa: E402

class PILDataset(Dataset):
    "What a user writes by hand: open the PNG, to float, to (C, H, W); the label from the manifest."
    def __init__(self, manifest: Path, split: str):
        m = pd.read_csv(manifest); m = m[m["split"] == split]
        self.paths = [manifest.parent/p for p in m["path"]]
        classes = sorted(m["target"].astype(str).unique()); self.y = [classes.index(str(t)) for t in m["target"]]
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        with Image.open(self.paths[i]) as im: a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(a.transpose(2, 0, 1).copy()), self.y[i]

def samples_per_s(loader, passes: int = 1) -> float:
    n, t0 = 0, time.perf_counter()
    for _ in range(passes):
        for batch in loader: n += len(batch[1] if isinstance(batch, (list, tuple)) else batch["y"])
    return n / (time.perf_counter() - t0)

def readers(png: Path, packed: Path, workers: int) -> dict:
    lc = {"batch_size": 64, "shuffle": True, "num_workers": workers}
    return {
        "PIL Dataset (hand-written)": lambda: DataLoader(PILDataset(png, "train"), batch_size=64, shuffle=True, num_workers=workers,
                                                         persistent_workers=workers > 0),
        "ManifestDataset, png": lambda: make_loader(ManifestDataset(png, "train"), lc, seed=0),
        "ManifestDataset, packed": lambda: make_loader(ManifestDataset(packed, "train"), lc, seed=0),
    }

def folder_bytes(manifest: Path) -> int:
    return sum(f.stat().st_size for f in (manifest.parent/"items").rglob("*") if f.is_file())

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="work folder (default: a new temporary one)")
    a = p.parse_args(argv)
    root = Path(a.out or tempfile.mkdtemp(prefix="mlpipe-datapath-")); root.mkdir(parents=True, exist_ok=True)
    raw = realdata.build(root/"raw", ["icons"])["icons"]["path"]
    (root/"image.yaml").write_text((REPO/"configs/image.yaml").read_text())
    table = []
    for size in a.sizes:
        manifests = {}
        for fmt in ("png", "packed"):
            version = f"icons-{size}-{fmt}"
            subprocess.run([sys.executable, "-m", "mlpipe", "augment", "image.yaml", f"data.raw_dir={raw}", f"augment.version={version}",
                            f"augment.image.size={size}", "augment.image.mode=RGB", f"augment.image.format={fmt}"],
                           cwd=root, check=True, capture_output=True)
            manifests[fmt] = root/"data/processed"/version/"manifest.csv"
        for workers in a.workers:
            made = {name: make() for name, make in readers(manifests["png"], manifests["packed"], workers).items()}
            for loader in made.values(): samples_per_s(loader)  # warm: workers started, files in the page cache
            speeds = {name: [] for name in made}
            for rep in range(a.repeats):
                for name in (list(made) if rep % 2 == 0 else list(reversed(made))): speeds[name].append(samples_per_s(made[name]))
            med = {n: statistics.median(s) for n, s in speeds.items()}
            table.append((size, workers, med))
            print(f"{size}x{size}, {workers} workers: " + ", ".join(f"{n} {v:.0f}/s" for n, v in med.items()), file=sys.stderr, flush=True)
        disk = {fmt: folder_bytes(m) for fmt, m in manifests.items()}
        print(f"{size}x{size}: processed files png {disk['png'] / 1e6:.1f} MB, packed {disk['packed'] / 1e6:.1f} MB", file=sys.stderr)
        table.append((size, "disk", disk))
    names = list(readers(Path(), Path(), 0))
    print(f"\ntrain split of the icons ({len(ManifestDataset(manifests['png'], 'train'))} items), batch 64; samples/s (ratio to ManifestDataset, png):\n")
    print("| size | workers | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for size, workers, v in table:
        if workers == "disk":
            print(f"| {size}×{size} | disk | | {v['png'] / 1e6:.1f} MB | {v['packed'] / 1e6:.1f} MB |"); continue
        base = v["ManifestDataset, png"]
        print(f"| {size}×{size} | {workers} | " + " | ".join(f"{v[n]:.0f} ({v[n] / base:.2f}×)" for n in names) + " |")

if __name__ == "__main__":
    main()
