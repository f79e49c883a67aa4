"""Checkpoint: saving a 100M-parameter model with mlpipe's atomic, fsynced `save_checkpoint` against a bare `torch.save`.

    python bench/checkpoint_save.py [--rounds 5] [--params 100_000_000]

Both write the same state dict (~400 MB of float32) into the same directory; mlpipe writes a temp file, fsyncs it,
keeps the previous file as .bak and renames. The bare side is `torch.save(state, path)` followed by nothing (so
its data may still sit in the page cache: that is the point of the comparison). Target ratio <= 1.3.
"""
import argparse, statistics, tempfile, time
from pathlib import Path
import torch
from mlpipe.trainer import save_checkpoint

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--rounds", type=int, default=5); ap.add_argument("--params", type=int, default=100_000_000)
    a = ap.parse_args()
    side = int(a.params ** 0.5)
    model = torch.nn.Sequential(torch.nn.Linear(side, side, bias=False))
    state = {"model": model.state_dict(), "epoch": 1, "config": {"seed": 0}}
    n = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        bare, mine = [], []
        for r in range(a.rounds + 1):
            for name in (("bare", "mine") if r % 2 == 0 else ("mine", "bare")):
                start = time.perf_counter()
                if name == "bare": torch.save(state, Path(tmp)/"bare.pt")
                else: save_checkpoint(state, Path(tmp)/"last.pt", backup=True)
                (bare if name == "bare" else mine).append(time.perf_counter() - start)
        bare, mine = bare[1:], mine[1:]  # the first round allocates the files
    b, m = statistics.median(bare), statistics.median(mine)
    print(f"{n/1e6:.0f}M parameters ({n*4/1e6:.0f} MB): torch.save {b:.3f} s, mlpipe save_checkpoint {m:.3f} s, ratio {m/b:.2f}")

if __name__ == "__main__": main()
