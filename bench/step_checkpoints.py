"""What `checkpoint.every_steps` costs the training loop, measured side by side on the digits demo.

    python bench/step_checkpoints.py [--epochs 3] [--repeats 3] [--every 1,10] [--out DIR]

The digits demo with the repository's config.yaml (its model, 1 compute thread), trained `--epochs` epochs with no
step checkpoints and with each `--every` value, in an order that rotates between repeats. The training time is the
sum of metrics.csv's `seconds` (start-up excluded); the cost of one step checkpoint is the extra time over the
number of step checkpoints written (read from the step counts). Prints each setting's median time, its ratio to
no step checkpoints, and the cost per checkpoint against the size of last.pt.
"""
import argparse, csv, os, statistics, subprocess, sys, tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--every", default="1,10", help="comma-separated every_steps values to compare with none")
    p.add_argument("--out")
    a = p.parse_args(argv)
    project = Path(a.out or tempfile.mkdtemp(prefix="mlpipe-stepckpt-")); project.mkdir(parents=True, exist_ok=True)
    (project/"config.yaml").write_text((REPO/"config.yaml").read_text())
    run = lambda *args: subprocess.run([sys.executable, "-m", "mlpipe", *args], cwd=project, check=True, capture_output=True, env=ENV)
    run("demo"); run("augment", "config.yaml")
    settings = [None, *(int(v) for v in a.every.split(","))]
    times, steps, size = {s: [] for s in settings}, None, None
    for rep in range(a.repeats):
        order = settings[rep % len(settings):] + settings[:rep % len(settings)]
        for every in order:
            name = f"every{every}_{rep}"
            run("train", "config.yaml", f"train.epochs={a.epochs}", "train.progress=false", "early_stop.patience=null",
                f"checkpoint.every_steps={'null' if every is None else every}", f"run_name={name}")
            rows = list(csv.DictReader(open(project/f"checkpoint/log_{name}/metrics.csv")))
            times[every].append(sum(float(r["seconds"]) for r in rows))
            steps, size = [int(r["step"]) for r in rows], (project/f"checkpoint/log_{name}/last.pt").stat().st_size
            print(f"repeat {rep + 1}, every_steps {every}: {times[every][-1]:.2f} s", file=sys.stderr, flush=True)
    per_epoch = steps[0]
    base = statistics.median(times[None])
    print(f"digits, config.yaml's model, {a.epochs} epochs of {per_epoch} steps, 1 thread, last.pt {size / 1e6:.2f} MB, "
          f"median of {a.repeats}:")
    print(f"no step checkpoints: {base:.2f} s")
    for every in settings[1:]:
        t = statistics.median(times[every])
        saves = sum(1 for s in range(1, steps[-1]) if s % every == 0 and s not in steps)  # none at an epoch's last step
        print(f"every_steps={every}: {t:.2f} s, {t / base:.3f}x; {saves} step checkpoints, "
              f"{(t - base) / saves * 1000:.1f} ms each")

if __name__ == "__main__": main()
