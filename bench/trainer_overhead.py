"""Overhead of mlpipe's Trainer against a plain hand-written PyTorch loop doing the same work.

    python bench/trainer_overhead.py [--rounds 5] [--epochs 5] [--workload cnn|mlp|all] [--threads N]

Both sides train the same model (same seed, same data, same shuffling) for the same epochs and, per epoch, do:
a training pass, a validation pass in eval mode under inference_mode, the mean loss and accuracy of both passes
(accumulated on the device, read once per epoch; the same `mlpipe.metrics.Accuracy` object on both sides), a CSV row,
`last.pt` every epoch and `best.pt` when the validation loss improves.
  (a) plain: the loop written out by hand, `torch.save` of {model, optimizer, epoch};
  (b) mlpipe: `Trainer` with its default callbacks ProgressBar (silent without a TTY), CsvLogger, Checkpoint
      (atomic writes with fsync, last.pt.bak, full state with RNG, per-epoch NaN/inf checks of loss and weights).
After one warm-up run of each, a and b alternate for --rounds rounds (the order flips every round); medians and the
ratio b/a are printed (and the ratio of the minima, which is less
sensitive to other processes on a shared machine). If `lightning` is importable, a LightningModule doing the same work is timed as well.

Workloads (CPU): `cnn`, a small CNN on scikit-learn's digits (8x8, 1797 images, batch 64, 5 epochs); `mlp`, a tiny
MLP on the same digits flattened, batch 16, where the per-step cost of the trainer matters most.
Timings on a shared machine are noisy: compare the ratio, not the absolute seconds.
"""
import argparse, csv, math, statistics, sys, tempfile, time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlpipe.trainer import Trainer
from mlpipe.callbacks import Checkpoint, CsvLogger, ProgressBar
from mlpipe.metrics import Accuracy


def digits(flat: bool):
    "scikit-learn digits as float tensors, split 80/20 (fixed permutation)."
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16
    x = x.reshape(len(x), -1) if flat else x[:, None]
    y = torch.tensor(d.target, dtype=torch.long)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(x))
    return (x[idx[:cut]], y[idx[:cut]]), (x[idx[cut:]], y[idx[cut:]])


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(32, 10))


def tiny_mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


WORKLOADS = {"cnn": dict(model=small_cnn, flat=False, bs=64, lr=0.1),
             "mlp": dict(model=tiny_mlp, flat=True, bs=16, lr=0.05)}


def setup(wl: dict):
    "Fresh model, optimizer and loaders, identical on every call."
    torch.manual_seed(0)
    model = wl["model"]()
    opt = torch.optim.SGD(model.parameters(), lr=wl["lr"], momentum=0.9)
    (tx, ty), (vx, vy) = DATA[wl["flat"]]
    train = DataLoader(TensorDataset(tx, ty), batch_size=wl["bs"], shuffle=True, generator=torch.Generator().manual_seed(1))
    val = DataLoader(TensorDataset(vx, vy), batch_size=wl["bs"])
    return model, opt, train, val


def run_plain(wl: dict, epochs: int, run_dir: Path) -> float:
    "(a) The hand-written loop. Returns the final validation loss."
    model, opt, train, val = setup(wl)
    loss_fn, acc, best = nn.CrossEntropyLoss(), Accuracy(), math.inf
    with open(run_dir/"metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "lr", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "seconds"])
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train(); acc.reset()
            loss_sum, n = torch.zeros(()), 0
            for x, y in train:
                pred = model(x)
                loss = loss_fn(pred, y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss_sum += loss.detach() * len(y); n += len(y)
                acc.update(pred.detach(), y)
            train_loss, train_acc = loss_sum.item() / n, acc.compute()
            model.eval(); acc.reset()
            loss_sum, n = torch.zeros(()), 0
            with torch.inference_mode():
                for x, y in val:
                    pred = model(x)
                    loss_sum += loss_fn(pred, y) * len(y); n += len(y)
                    acc.update(pred, y)
            val_loss, val_acc = loss_sum.item() / n, acc.compute()
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}
            torch.save(state, run_dir/"last.pt")
            if val_loss < best: best = val_loss; torch.save(state, run_dir/"best.pt")
            w.writerow([epoch, opt.param_groups[0]["lr"], train_loss, val_loss, train_acc, val_acc, time.perf_counter() - t0])
            f.flush()
    return val_loss


def run_mlpipe(wl: dict, epochs: int, run_dir: Path) -> float:
    "(b) mlpipe's Trainer with its default callbacks. Returns the final validation loss."
    model, opt, train, val = setup(wl)
    bar = ProgressBar()
    t = Trainer(model, opt, nn.CrossEntropyLoss(), metrics=[Accuracy()],
                callbacks=[bar, CsvLogger(run_dir/"metrics.csv"), Checkpoint(run_dir)])
    t.fit(train, val, epochs=epochs)
    RUN_INFO["progress_bar_on"] = bar.on
    return t.log["val_loss"]


def run_lightning(wl: dict, epochs: int, run_dir: Path) -> float:
    "(c) The same work in Lightning (only when it is installed)."
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger
    model, opt, train, val = setup(wl)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__(); self.net, self.loss_fn = model, nn.CrossEntropyLoss()
            self.acc = {"train": Accuracy(), "val": Accuracy()}
        def configure_optimizers(self): return opt
        def _shared(self, batch, split):
            x, y = batch
            pred = self.net(x); loss = self.loss_fn(pred, y)
            self.acc[split].update(pred.detach(), y)
            self.log(f"{split}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
            return loss
        def training_step(self, batch, i): return self._shared(batch, "train")
        def validation_step(self, batch, i): self._shared(batch, "val")
        def on_train_epoch_start(self): self.acc["train"].reset()
        def on_validation_epoch_start(self): self.acc["val"].reset()
        def on_validation_epoch_end(self): self.log("val_accuracy", self.acc["val"].compute())
        def on_train_epoch_end(self): self.log("train_accuracy", self.acc["train"].compute())

    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, logger=CSVLogger(run_dir),
                        callbacks=[ModelCheckpoint(dirpath=run_dir, monitor="val_loss", save_last=True)])
    trainer.fit(Module(), train, val)
    return float(trainer.callback_metrics["val_loss"])


def timed(fn, wl, epochs) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        val_loss = fn(wl, epochs, Path(tmp))
        return time.perf_counter() - t0, val_loss


def bench(name: str, epochs: int, rounds: int, runners: dict):
    wl = WORKLOADS[name]
    n_train = len(DATA[wl["flat"]][0][1])
    steps = epochs * math.ceil(n_train / wl["bs"])
    for fn in runners.values(): timed(fn, wl, epochs)  # warm-up
    times = {k: [] for k in runners}
    losses = {}
    for r in range(rounds):
        order = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for k in order:
            sec, losses[k] = timed(runners[k], wl, epochs)
            times[k].append(sec)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n{name}: {epochs} epochs, batch {wl['bs']}, {steps} optimizer steps, {rounds} rounds after a warm-up")
    for k, v in times.items():
        print(f"  {k:9s} median {med[k]:.3f}s  ({' '.join(f'{s:.3f}' for s in v)})  final val_loss {losses[k]:.5f}"
              f"  {1e6 * med[k] / steps:.0f} us/step")
    low = {k: min(v) for k, v in times.items()}
    for k in runners:
        if k != "plain": print(f"  ratio {k}/plain = {med[k] / med['plain']:.3f} (medians; "
                               f"{1e6 * (med[k] - med['plain']) / steps:+.0f} us/step), {low[k] / low['plain']:.3f} (minima)")
    spread = max(max(v) / min(v) for v in times.values())
    if spread > 1.5: print(f"  (unstable: the slowest run took {spread:.1f}x the fastest; the machine is busy. "
                           "--threads 1 is steadier on a shared machine)")
    return med


DATA, RUN_INFO = {}, {}

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--workload", choices=["cnn", "mlp", "all"], default="all")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    DATA.update({flat: digits(flat) for flat in (False, True)})
    runners = {"plain": run_plain, "mlpipe": run_mlpipe}
    try:
        import lightning  # noqa: F401
        runners["lightning"] = run_lightning
        import logging, warnings
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # its per-fit banners would bury the table
        warnings.filterwarnings("ignore", module="lightning")
    except ImportError:
        print("lightning is not installed: its ratio is skipped")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, python {sys.version.split()[0]}")
    for name in (["cnn", "mlp"] if args.workload == "all" else [args.workload]):
        bench(name, args.epochs, args.rounds, runners)
    print(f"\nmlpipe's progress bar was {'on' if RUN_INFO.get('progress_bar_on') else 'off'} (stderr is "
          f"{'a' if sys.stderr.isatty() else 'not a'} TTY)")
