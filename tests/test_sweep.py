"""`mlpipe sweep` as a user runs it, on real digits: trials are runs, best.yaml trains again to the same numbers,
a bad space writes nothing, kill -9 at random moments loses and repeats nothing, --jobs shares one study."""
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import yaml
from conftest import TINY, run_mlpipe

SPACE = "optim.lr: {low: 1.0e-3, high: 3.0e-2, log: true}\noptim.weight_decay: {low: 1.0e-5, high: 1.0e-1, log: true}\n" \
        "model.backbone.channels: {choices: [[8], [8, 16]]}\n"
BASE = [o for o in TINY if not o.startswith("model.backbone=")] + ["model.backbone={name: small_cnn, channels: [8, 16]}", "scheduler=null"]

def _sweep(project, *args, **kw):
    return run_mlpipe("sweep", "config.yaml", "space.yaml", *BASE, *args, cwd=project, **kw)  # options after the overrides

def _metrics(run_dir):
    return pd.read_csv(Path(run_dir)/"metrics.csv").drop(columns=["seconds"])

def test_sweep_best_yaml_trains_the_best_trial_again(project):
    (project/"space.yaml").write_text(SPACE + "pruner: {name: none}\n")
    r = _sweep(project, "--trials", "4", "--name", "t")
    assert r.returncode == 0, r.stderr
    out = project/r.stdout.strip().splitlines()[-1]
    assert out == project/"checkpoint/sweep_t" and "4 trials: 4 complete" in r.stderr and "best: trial" in r.stderr, r.stderr
    summary = json.loads((out/"summary.json").read_text())
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    for t in summary["trials"]:  # each trial's run was trained with exactly its values
        snap = yaml.safe_load((project/t["run"]/"config.snapshot.yaml").read_text())
        assert snap["optim"]["lr"] == t["params"]["optim.lr"] and snap["model"]["backbone"]["channels"] == t["params"]["model.backbone.channels"]
    again = run_mlpipe("train", out/"best.yaml", cwd=project)
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(_metrics(project/again.stdout.strip().splitlines()[-1]), _metrics(project/best["run"]))
    listed = run_mlpipe("runs", "--root", out, cwd=project)
    assert listed.returncode == 0 and all(f"trial_{i:04d}" in listed.stdout for i in range(4)), listed.stdout

def test_a_bad_space_writes_nothing(project):
    for text, words in [("optim.lrr: {low: 1.0e-4, high: 1.0e-1}\n", "optim.lrr: the config does not set this key; did you mean optim.lr?"),
                        ("augment.copies: {low: 1, high: 3}\n", "augment.copies: cannot be searched"),
                        ("optim.lr: {low: 0.1, high: 0.01}\n", "optim.lr: needs numbers low < high"),
                        ("optim.lr: {low: 1.0e-3, high: 0.1}\npruner: {name: medain}\n", "pruner.name: median, percentile")]:
        (project/"space.yaml").write_text(text)
        r = _sweep(project, "--trials", "2")
        assert r.returncode == 2 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not (project/"checkpoint").exists() and not (project/"data/processed").exists()

def test_kill_9_at_random_moments_then_the_same_command(project):
    "Three SIGKILLs at random moments; the study ends with exactly 12 trials, none lost, none trained twice."
    (project/"space.yaml").write_text(SPACE)
    n, rng, moments = 12, random.Random(), []
    cmd = [sys.executable, "-m", "mlpipe", "sweep", "config.yaml", "space.yaml", *BASE, "--trials", str(n), "--name", "k"]
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for _ in range(3):
        p = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        t = rng.uniform(3, 14); moments.append(round(t, 1))
        try: p.wait(t)
        except subprocess.TimeoutExpired: p.send_signal(signal.SIGKILL); p.wait()
    print(f"killed at {moments} s after each start")
    r = subprocess.run(cmd, cwd=project, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((project/"checkpoint/sweep_k/summary.json").read_text())
    trials = summary["trials"]
    assert sorted(t["number"] for t in trials) == list(range(n)), [t["number"] for t in trials]
    assert {t["state"] for t in trials} <= {"complete", "pruned"}, trials
    runs = sorted((project/"checkpoint/sweep_k").glob("log_trial_*"))
    assert [d.name for d in runs] == [f"log_trial_{i:04d}" for i in range(n)]  # one run per trial: none retried into a second folder
    keys = [json.dumps(t["params"], sort_keys=True) for t in trials]
    assert len(set(keys)) == n  # no values trained twice
    for t in trials:
        m = pd.read_csv(project/t["run"]/"metrics.csv")
        assert list(m["epoch"]) == list(range(1, len(m) + 1)), (t["number"], list(m["epoch"]))  # no epoch twice, none lost
        if t["state"] == "complete": assert len(m) == 2 and t["value"] == m["val_accuracy"].max()

def test_jobs_share_one_study(project):
    (project/"space.yaml").write_text(SPACE + "pruner: {name: none}\n")
    r = _sweep(project, "--trials", "4", "--jobs", "2", "--name", "j")
    assert r.returncode == 0, r.stderr
    summary = json.loads((project/"checkpoint/sweep_j/summary.json").read_text())
    assert sorted(t["number"] for t in summary["trials"]) == [0, 1, 2, 3] and summary["states"]["complete"] == 4
    threads = {json.loads((project/t["run"]/"env.json").read_text())["threads"] for t in summary["trials"]}
    assert threads == {max(1, len(os.sched_getaffinity(0)) // 2)}, threads  # each process its share of the cores

def test_under_torchrun_it_is_refused(project):
    "Trials under DDP are not built yet: a sweep in every process would be wrong, so torchrun gets one line, exit 2."
    (project/"space.yaml").write_text(SPACE)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "mlpipe", "sweep",
                        "config.yaml", "space.yaml", *BASE], cwd=project, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    assert r.returncode != 0 and "error: mlpipe sweep under torchrun would run a separate search in every process" in r.stderr, r.stderr
    assert not (project/"checkpoint").exists()
