"""Data path: mlpipe's ManifestDataset + make_loader against a hand-written Dataset over the same processed files.

    python bench/data_path.py [--rounds 5] [--epochs 2]

Both sides read the same manifest split (the digits, augmented: PNG files), decode each PNG with Pillow into a float
CHW tensor in [0, 1], parse the class index, and batch 64 items with shuffling; the hand-written side is the
Dataset one would write in a notebook (pandas rows, PIL, numpy, torch.stack). Throughput is samples/s over whole
epochs, with num_workers 0 and 2, sides alternating; the table shows medians and the ratio mlpipe/hand-written
(target >= 0.95).
"""
import argparse, json, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np, pandas as pd, torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from mlpipe.augmentation import augment
from mlpipe.dataset import ManifestDataset, make_loader
from mlpipe.demo_data import write_digits


class HandWritten(Dataset):
    "The Dataset a user writes by hand over the manifest."
    def __init__(self, csv_path, split):
        df = pd.read_csv(csv_path)
        df = df[df.split == split].reset_index(drop=True)
        self.root, self.paths = Path(csv_path).parent, df.path.tolist()
        classes = json.loads((self.root/"labels.json").read_text())["classes"]
        idx = {c: i for i, c in enumerate(classes)}
        self.targets = [idx[str(t)] for t in df.target]
    def __len__(self): return len(self.paths)
    def __getitem__(self, i):
        a = np.asarray(Image.open(self.root/self.paths[i]), dtype=np.float32) / 255
        return {"x": torch.from_numpy(a)[None], "y": torch.tensor(self.targets[i])}


def epoch_rate(loader, epochs) -> float:
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for b in loader: n += len(b["y"])
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5); ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = write_digits(Path(tmp)/"raw")
        augment(raw, Path(tmp)/"processed", copies=2, recipe={"image": [{"name": "rotate", "degrees": 10}]}, workers=2)
        csv = Path(tmp)/"processed/manifest.csv"
        n_train = int((pd.read_csv(csv, usecols=["split"]).split == "train").sum())
        print(f"{n_train} train items (8x8 PNG), batch 64, {a.epochs} epochs per timing\n")
        print(f"{'num_workers':>11} {'hand-written/s':>15} {'mlpipe/s':>10} {'ratio':>6}")
        for workers in (0, 2):
            cfg = {"batch_size": 64, "shuffle": True, "num_workers": workers}
            mine = make_loader(ManifestDataset(csv, "train"), cfg, seed=0)
            g = torch.Generator().manual_seed(0)
            hand = DataLoader(HandWritten(csv, "train"), batch_size=64, shuffle=True, num_workers=workers, generator=g,
                              persistent_workers=workers > 0)
            epoch_rate(mine, 1); epoch_rate(hand, 1)  # warm-up: worker start, page cache
            rm, rh = [], []
            for r in range(a.rounds):
                for side in ((mine, rm), (hand, rh))[:: 1 if r % 2 == 0 else -1]: side[1].append(epoch_rate(side[0], a.epochs))
            m, h = statistics.median(rm), statistics.median(rh)
            print(f"{workers:>11} {h:>15,.0f} {m:>10,.0f} {m / h:>6.2f}")

if __name__ == "__main__": main()
