"""`mlpipe sweep --jobs 2` vs `--jobs 1`: trials per hour on this machine, measured side by side.

    python bench/sweep_jobs.py [--trials 4] [--epochs 4] [--repeats 2] [--out DIR]

The digits demo with the repository's config.yaml and configs/sweep_space.yaml (pruning off, so every trial trains
the same number of epochs), `--epochs` per trial; each repeat runs a fresh sweep of `--trials` with 1 job, then one
with 2 (the order alternating between repeats). The wall time of the whole command, start-up and augment (cached)
included. Prints trials per hour of each, and the ratio.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out")
    a = p.parse_args(argv)
    project = Path(a.out or tempfile.mkdtemp(prefix="mlpipe-sweepjobs-")); project.mkdir(parents=True, exist_ok=True)
    (project/"config.yaml").write_text((REPO/"config.yaml").read_text())
    (project/"space.yaml").write_text((REPO/"configs/sweep_space.yaml").read_text().replace("pruner: {name: median", "pruner: {name: none} #"))
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlpipe", *args], cwd=project, check=True, capture_output=True, env=CLEAN)
    run("demo"); run("augment", "config.yaml")
    rates = {1: [], 2: []}
    for rep in range(a.repeats):
        for jobs in ((1, 2) if rep % 2 == 0 else (2, 1)):
            t0 = time.perf_counter()
            run("sweep", "config.yaml", "space.yaml", f"train.epochs={a.epochs}", "train.progress=false",
                "--trials", str(a.trials), "--jobs", str(jobs), "--name", f"j{jobs}_{rep}")
            s = time.perf_counter() - t0
            rates[jobs].append(a.trials / s * 3600)
            print(f"repeat {rep + 1}, --jobs {jobs}: {a.trials} trials in {s:.1f} s", file=sys.stderr, flush=True)
    med = {j: statistics.median(r) for j, r in rates.items()}
    print(f"{os.cpu_count()} CPUs, {a.trials} trials of {a.epochs} epochs (digits, config.yaml), median of {a.repeats}:")
    print(f"--jobs 1: {med[1]:.0f} trials/hour; --jobs 2: {med[2]:.0f} trials/hour; ratio {med[2] / med[1]:.2f}x")

if __name__ == "__main__":
    main()
