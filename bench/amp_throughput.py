"""AMP training throughput: mlpipe's Trainer against a hand-written mixed-precision loop, on a ResNet-style CNN.

    python bench/amp_throughput.py [--device auto] [--amp bf16] [--rounds 5] [--steps 60] [--batch 256] [--compile]

Both sides train the same model (same seed, same data) on in-memory 3x32x32 images served by a DataLoader with
`pin_memory=True` (on CUDA), moving batches with `non_blocking=True`, under `torch.autocast(dtype=bfloat16)` (or
float16 with a GradScaler for --amp fp16), with the loss and accuracy accumulated on the device and read once per
pass, and a validation pass in eval mode. mlpipe's side is `Trainer(..., amp=..., compile=...)` with its default
callbacks (CSV log, best/last checkpoints) writing to a temp dir. After a warm-up of each (CUDA kernels, cuDNN
autotuning, compilation), the sides alternate for --rounds rounds; the table prints images/s (medians) and the ratio
mlpipe / hand-written (target >= 0.97 on a GPU).

It runs on the CPU too (bf16 autocast works there; pin_memory is then off): that checks the script, but the target
is about GPUs, where per-step Python and host-device syncs are what a framework can lose.
"""
import argparse, math, statistics, tempfile, time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlpipe.callbacks import Checkpoint, CsvLogger
from mlpipe.metrics import Accuracy
from mlpipe.trainer import Trainer, pick_device


class Block(nn.Module):
    "A basic residual block: two 3x3 convolutions with batch norm, and a projected shortcut when the shape changes."
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
    def forward(self, x): return torch.relu(self.body(x) + self.skip(x))


def resnet(width=64, n_classes=10) -> nn.Module:
    "A ResNet-18-shaped network for 32x32 inputs (about 11M parameters at width 64)."
    w = [width, width * 2, width * 4, width * 8]
    layers = [nn.Conv2d(3, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True)]
    c = w[0]
    for i, c_out in enumerate(w):
        layers += [Block(c, c_out, 1 if i == 0 else 2), Block(c_out, c_out, 1)]; c = c_out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_classes))


def data(n, seed):
    "n random images whose class is set by the mean of one channel patch: learnable, no download."
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = (x[:, 0, :8, :8].mean((1, 2)) * 20).long().clamp(-5, 4) + 5
    return TensorDataset(x, y)


def setup(a, device):
    torch.manual_seed(0)
    model = resnet(a.width).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    pin = device.type == "cuda"
    train = DataLoader(data(a.steps * a.batch, 1), batch_size=a.batch, shuffle=True, pin_memory=pin, drop_last=True,
                       generator=torch.Generator().manual_seed(2))
    val = DataLoader(data(a.batch * 8, 3), batch_size=a.batch, pin_memory=pin)
    return model, opt, train, val


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize(device)


def run_plain(a, device, epochs, run_dir) -> float:
    "The hand-written AMP loop. Returns the training images/s."
    model, opt, train, val = setup(a, device)
    if a.compile: model = torch.compile(model)
    dtype = torch.bfloat16 if a.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if a.amp == "fp16" else None
    loss_fn, acc, n = nn.CrossEntropyLoss(), Accuracy(), 0
    sync(device); start = time.perf_counter()
    for epoch in range(epochs):
        model.train(); acc.reset(); loss_sum = torch.zeros((), device=device)
        for x, y in train:
            x, y = x.to(device, non_blocking=True).to(memory_format=torch.channels_last), y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype):
                pred = model(x); loss = loss_fn(pred, y)
            if scaler: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            else: loss.backward(); opt.step()
            opt.zero_grad(set_to_none=True)
            loss_sum += loss.detach() * len(y); acc.update(pred.detach(), y); n += len(y)
        train_loss, train_acc = loss_sum.item(), acc.compute()
        model.eval(); acc.reset()
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype):
            for x, y in val:
                x, y = x.to(device, non_blocking=True).to(memory_format=torch.channels_last), y.to(device, non_blocking=True)
                acc.update(model(x), y)
        acc.compute()
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, run_dir/"last.pt")
    sync(device)
    return n / (time.perf_counter() - start)


class ChannelsLast(nn.Module):
    "The model, fed channels-last images like the hand-written side."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, x): return self.m(x.to(memory_format=torch.channels_last))


def run_mlpipe(a, device, epochs, run_dir) -> float:
    "mlpipe's Trainer with its default callbacks. Returns the training images/s."
    model, opt, train, val = setup(a, device)
    t = Trainer(ChannelsLast(model), opt, nn.CrossEntropyLoss(), metrics=[Accuracy()], device=device, amp=a.amp,
                compile=a.compile, callbacks=[CsvLogger(run_dir/"metrics.csv"), Checkpoint(run_dir)])
    sync(device); start = time.perf_counter()
    t.fit(train, val, epochs=epochs)
    sync(device)
    return epochs * len(train) * a.batch / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto"); ap.add_argument("--amp", choices=["bf16", "fp16"], default="bf16")
    ap.add_argument("--rounds", type=int, default=5); ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60, help="training steps per epoch")
    ap.add_argument("--batch", type=int, default=256); ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--compile", action="store_true", help="torch.compile both sides")
    a = ap.parse_args()
    device = pick_device(a.device)
    if device.type == "cuda": torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}; amp {a.amp}, compile {a.compile}, batch {a.batch}, "
          f"{a.steps} steps x {a.epochs} epochs per timing, width {a.width}")
    sides = {"hand-written": run_plain, "mlpipe": run_mlpipe}
    rates = {k: [] for k in sides}
    with tempfile.TemporaryDirectory() as tmp:
        def once(k):
            d = Path(tempfile.mkdtemp(dir=tmp))
            return sides[k](a, device, a.epochs, d)
        for k in sides: once(k)  # warm-up: kernels, autotuning, compilation
        for r in range(a.rounds):
            for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]): rates[k].append(once(k))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"| side | images/s (median) | runs |\n|---|---:|---|")
    for k, v in rates.items(): print(f"| {k} | {med[k]:,.0f} | {' '.join(f'{r:,.0f}' for r in v)} |")
    print(f"ratio mlpipe / hand-written = {med['mlpipe'] / med['hand-written']:.3f} (target >= 0.97 on a GPU)")


if __name__ == "__main__": main()
