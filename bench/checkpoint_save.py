"""Checkpoint: saving a 100M-parameter model with mlpipe's atomic, fsynced `save_checkpoint` against a bare `torch.save`.

    python bench/checkpoint_save.py [--rounds 5] [--params 100_000_000]

Both write the same state dict (~400 MB of float32) into the same directory, alternately, with the page cache flushed
(`os.sync`, not timed) before each, so neither pays for the other's writeback. The bare side is `torch.save(state,
path)` and nothing more: its bytes may still sit in the page cache when it returns. mlpipe's side is what the
`Checkpoint` callback does: a temp file, then fsync, `.bak` link and rename, which run in a background thread while
training goes on. Printed: what the training loop waits for (the call returning; target ratio <= 1.3) and the time
until the new file is durable under its name (the future done), both against the bare save.

On a virtual machine the first writes into fresh page-cache pages can be several times slower than later ones (the
host backs guest memory lazily), which hits whichever side allocates new pages; the minima show the steady cost.
"""
import argparse, os, statistics, tempfile, time
from concurrent.futures import ThreadPoolExecutor
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
    times = {"bare": [], "waits": [], "durable": []}
    with tempfile.TemporaryDirectory(dir=".") as tmp, ThreadPoolExecutor(1) as disk:
        for r in range(a.rounds + 1):  # the first round allocates the files and is dropped
            for side_ in (("bare", "mine") if r % 2 == 0 else ("mine", "bare")):
                os.sync()
                start = time.perf_counter()
                if side_ == "bare": torch.save(state, Path(tmp)/"bare.pt"); times["bare"].append(time.perf_counter() - start)
                else:
                    done = save_checkpoint(state, Path(tmp)/"last.pt", backup=True, executor=disk)
                    times["waits"].append(time.perf_counter() - start)
                    done.result(); times["durable"].append(time.perf_counter() - start)
    times = {k: v[1:] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{n/1e6:.0f}M parameters ({n*4/1e6:.0f} MB), {a.rounds} rounds each, alternating:")
    print(f"| {'':38} | median s | min–max s   | ratio of medians | ratio of minima |")
    print(f"|{'-'*40}|---------:|-------------|-----------------:|----------------:|")
    for key, label in (("bare", "bare torch.save"), ("waits", "mlpipe: the training loop waits"),
                       ("durable", "mlpipe: durable (fsync, .bak, rename)")):
        print(f"| {label:38} | {med[key]:8.3f} | {min(times[key]):.2f}–{max(times[key]):.2f}   | {med[key]/med['bare']:16.2f} | {min(times[key])/min(times['bare']):15.2f} |")

if __name__ == "__main__": main()
