"""torch's thread count on a shared machine: the digits demo's training time under each policy, idle and beside busy processes.

    python bench/threads.py [--repeats 3] [--epochs 4] [--busy 0 1 2] [--config configs/image.yaml]

For each condition (0, 1 and 2 other processes each spinning a core), trains the digits demo with `--config` for
`--epochs` epochs under each policy, the policies alternating within each repeat, and reads the training time from
the run's metrics.csv (the sum of its epoch seconds: start-up and data loading are left out). Prints the median time
of each policy and its ratio to the fastest policy in that condition, as a Markdown table.

Policies: torch's default (a thread per core), 1 thread, torch's default with OpenMP's passive waiting
(`OMP_WAIT_POLICY=PASSIVE`), and mlpipe's `train.threads: auto`.
"""
import argparse, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CLEAN = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
POLICIES = {  # name: (overrides, extra environment)
    "torch default": (["train.threads=null"], {}),
    "1 thread": (["train.threads=1"], {}),
    "default + passive wait": (["train.threads=null"], {"OMP_WAIT_POLICY": "PASSIVE"}),
    "auto (mlpipe)": ([], {}),
}

def train_seconds(project: Path, config: str, epochs: int, overrides: list, env: dict) -> tuple[float, int]:
    "Train once; the sum of the epochs' seconds and the thread count the run recorded."
    r = subprocess.run([sys.executable, "-m", "mlpipe", "train", config, f"train.epochs={epochs}", "early_stop.patience=null",
                        "train.progress=false", *overrides], cwd=project, capture_output=True, text=True,
                       env={**CLEAN, **env, "MPLBACKEND": "Agg"})
    if r.returncode: raise SystemExit(f"mlpipe train failed:\n{r.stderr}")
    run = project/r.stdout.strip().splitlines()[-1]
    threads = pd.read_json(run/"env.json", typ="series").get("threads")
    return float(pd.read_csv(run/"metrics.csv")["seconds"].sum()), threads

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--config", default="configs/image.yaml")
    p.add_argument("--out", help="work folder (default: a new temporary one)")
    a = p.parse_args(argv)
    project = Path(a.out or tempfile.mkdtemp(prefix="mlpipe-threads-")); project.mkdir(parents=True, exist_ok=True)
    (project/"configs").mkdir(exist_ok=True)
    (project/a.config).write_text((REPO/a.config).read_text())
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlpipe", *args], cwd=project, check=True, capture_output=True, env=CLEAN)
    run("demo"); run("augment", a.config)
    rows = []
    for busy in a.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(1)
            times = {name: [] for name in POLICIES}; threads = {}
            for rep in range(a.repeats):
                for name, (overrides, env) in (POLICIES.items() if rep % 2 == 0 else reversed(POLICIES.items())):
                    s, threads[name] = train_seconds(project, a.config, a.epochs, overrides, env)
                    times[name].append(s)
                    print(f"busy {busy} repeat {rep + 1}: {name}: {s:.1f} s ({threads[name]} threads)", file=sys.stderr, flush=True)
        finally:
            for sp in spinners: sp.kill(); sp.wait()
        medians = {n: statistics.median(t) for n, t in times.items()}
        best = min(medians.values())
        rows.append((busy, {n: (m, m / best, threads[n]) for n, m in medians.items()}))
    print(f"\n{os.cpu_count()} CPUs, {a.config}, {a.epochs} epochs, median of {a.repeats}; time (threads) and ratio to the fastest:\n")
    print("| other busy processes | " + " | ".join(POLICIES) + " |")
    print("|---|" + "---|" * len(POLICIES))
    for busy, cells in rows:
        print(f"| {busy} | " + " | ".join(f"{m:.1f} s ({t}) **{r:.2f}×**" for m, r, t in cells.values()) + " |")

if __name__ == "__main__":
    main()
