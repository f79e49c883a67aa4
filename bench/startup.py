"""Start-up: `mlpipe --help` wall time, `mlpipe augment` of the digits with everything cached, and which heavy
modules `import mlpipe.augmentation` / the CLI pull in.

    python bench/startup.py [--rounds 7]

Targets: `mlpipe --help` <= 0.5 s; `import mlpipe.augmentation` does not import torch.
"""
import argparse, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

def timed(cmd) -> float:
    start = time.perf_counter(); subprocess.run(cmd, check=True, capture_output=True); return time.perf_counter() - start

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--rounds", type=int, default=7); a = ap.parse_args()
    exe = shutil.which("mlpipe") or sys.argv[0]
    rows = [("mlpipe --help", [exe, "--help"]),
            ("python -c pass (interpreter alone)", [sys.executable, "-c", "pass"]),
            ("python -c 'import torch' (for scale)", [sys.executable, "-c", "import torch"])]
    print(f"{'command':<40} {'median s':>9} {'min s':>7}")
    for name, cmd in rows:
        t = [timed(cmd) for _ in range(a.rounds)]
        print(f"{name:<40} {statistics.median(t):>9.3f} {min(t):>7.3f}")
    with tempfile.TemporaryDirectory() as tmp:  # a project with the digits, augmented once
        config = Path(__file__).resolve().parent.parent/"config.yaml"
        subprocess.run([exe, "demo"], cwd=tmp, check=True, capture_output=True)
        cmd = [exe, "augment", str(config), f"data.raw_dir={tmp}/data/raw/digits", f"data.processed_csv={tmp}/processed/manifest.csv"]
        subprocess.run(cmd, check=True, capture_output=True)
        t = [timed(cmd) for _ in range(a.rounds)]
        print(f"{'mlpipe augment (digits, all cached)':<40} {statistics.median(t):>9.3f} {min(t):>7.3f}")
    for mod in ("mlpipe.augmentation", "mlpipe.cli", "mlpipe.config", "mlpipe.runs"):
        out = subprocess.run([sys.executable, "-c", f"import sys, {mod}; print(sorted(m for m in ('torch', 'pandas', 'numpy', 'PIL', 'matplotlib') if m in sys.modules))"],
                             capture_output=True, text=True, check=True).stdout.strip()
        print(f"import {mod:<22} loads {out}")

if __name__ == "__main__": main()
