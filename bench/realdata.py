"""The example configs on real data nobody prepared for mlpipe, beside a plain scikit-learn baseline on the same split.

    python bench/realdata.py [--out DIR] [--only NAME ...] [--set key=value ...]

Builds the suite of tools/realdata.py, then for each set runs `mlpipe run configs/<example>.yaml` with only the data
named (as tests/test_realdata.py does, but with the examples' full epochs), reads the best monitored value from the
run's metrics.csv, scores best.pt on the test split with `mlpipe evaluate`, and runs tools/baseline.py on the same
processed manifest (train originals -> val, and -> test). Prints a Markdown table. `--set` adds overrides to every run (e.g. `--set train.epochs=3` for a quick look).
"""
import argparse, json, os, subprocess, sys, tempfile, time
from pathlib import Path
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/"tools"))
import realdata, baseline  # noqa: E402

EXAMPLE = {"icons": "image", "grey_colour": "image", "speech": "audio", "titanic": "tabular", "default": "tabular",
           "diamonds": "tabular", "gapminder": "tabular", "fortunes_csv": "text"}

def data_overrides(info: dict) -> list[str]:
    "The overrides that name a set's data, and nothing else."
    out = [f"data.raw_dir={info['path']}"]
    if info["layout"] == "table" and info.get("text_col"):
        out += ["data.scanner=table", f"data.scanner_args={{target_col: {info['target']}, text_col: {info['text_col']}}}"]
    elif info["layout"] == "table": out.append(f"data.scanner_args.target_col={info['target']}")
    return out

def run_set(project: Path, name: str, info: dict, extra: list[str]) -> dict:
    args = [f"{EXAMPLE[name]}.yaml", *data_overrides(info), f"augment.version={name}", "train.progress=false", *extra]
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "mlpipe", "run", *args], cwd=project, capture_output=True, text=True,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    if r.returncode: return {"set": name, "error": r.stderr.strip().splitlines()[-1]}
    run_dir = project/r.stdout.strip().splitlines()[-1]
    snap = yaml.safe_load((run_dir/"config.snapshot.yaml").read_text())
    key, mode = snap["monitor"]["key"], snap["monitor"]["mode"]
    m = pd.read_csv(run_dir/"metrics.csv")
    best = m.loc[m[key].idxmax() if mode == "max" else m[key].idxmin()]
    seconds = round(time.perf_counter() - t0, 1)
    ev = subprocess.run([sys.executable, "-m", "mlpipe", "evaluate", str(run_dir)], cwd=project, capture_output=True, text=True,
                        env={**os.environ, "MPLBACKEND": "Agg"})
    if ev.returncode: return {"set": name, "error": ev.stderr.strip().splitlines()[-1]}
    test = json.loads((run_dir/"eval/test/metrics.json").read_text())["metrics"][key.removeprefix("val_")]
    base = baseline.baseline(project/"data"/"processed"/name, info["path"], name, "val")
    base_test = baseline.baseline(project/"data"/"processed"/name, info["path"], name, "test")
    return {"set": name, "config": EXAMPLE[name], "monitor": key, "mlpipe": float(best[key]), "epoch": int(best["epoch"]),
            "test": float(test), "baseline": base, "baseline_test": base_test, "run": str(run_dir), "seconds": seconds}

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="work folder (default: a new temporary one)")
    p.add_argument("--only", nargs="+", choices=list(EXAMPLE))
    p.add_argument("--set", nargs="*", default=[], dest="extra", help="overrides for every run")
    a = p.parse_args(argv)
    root = Path(a.out or tempfile.mkdtemp(prefix="mlpipe-realdata-"))
    sets = realdata.build(root/"raw", a.only)
    project = root/"project"; project.mkdir(exist_ok=True)
    for name in set(EXAMPLE.values()): (project/f"{name}.yaml").write_text((REPO/"configs"/f"{name}.yaml").read_text())
    rows = [run_set(project, n, sets[n], a.extra) for n in sets]
    print("| set | example config | monitored | mlpipe val (best epoch) | baseline val | mlpipe test | baseline test | run s |")
    print("|---|---|---|---|---|---|---|---|")
    scores = lambda b: ", ".join(f"{k} {v:.3f}" for k, v in b.items() if isinstance(v, float))
    for r in rows:
        if "error" in r: print(f"| {r['set']} | | | error: {r['error']} | | | | |"); continue
        print(f"| {r['set']} | {r['config']} | {r['monitor']} | {r['mlpipe']:.3f} ({r['epoch']}) | {scores(r['baseline'])} | "
              f"{r['test']:.3f} | {scores(r['baseline_test'])} | {r['seconds']} |")
    print(json.dumps(rows), file=sys.stderr)

if __name__ == "__main__":
    main()
