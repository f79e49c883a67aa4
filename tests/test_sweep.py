"""`mlpipe sweep` as a user runs it, on real digits: trials are runs, best.yaml trains again to the same numbers,
a bad space writes nothing, kill -9 at random moments loses and repeats nothing, --jobs shares one study,
under torchrun every process trains the same trials."""
import json, os, random, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import yaml
from conftest import TINY, run_group, run_mlpipe

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
    r = run_group(cmd, cwd=project, env=env, timeout=600)
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

def test_jobs_under_torchrun_are_refused(project):
    "Under torchrun the processes train one trial at a time together: --jobs gets one error line, and nothing is written."
    (project/"space.yaml").write_text(SPACE)
    r = run_group([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "mlpipe", "sweep",
                   "config.yaml", "space.yaml", *BASE, "--jobs", "2"], cwd=project, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"})
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode != 0 and len(errors) == 1 and errors[0].startswith("error: --jobs 2: under torchrun"), r.stderr
    assert not (project/"checkpoint").exists() and not (project/"data/processed").exists()

def _torchrun(*args, cwd, timeout=300):
    "`torchrun --standalone --nproc_per_node=2 ARGS`: 2 gloo processes on the CPU."
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("MLPIPE_DEBUG", None)
    return run_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)],
                     cwd=cwd, timeout=timeout, env=env)

def test_a_ddp_sweep_trains_each_trial_on_both_ranks(project):
    "2 processes, 2 trials: each trial one run of world size 2 with its values; the best one trains again to the same weights."
    import optuna, torch
    (project/"space.yaml").write_text(SPACE + "pruner: {name: none}\n")
    r = _torchrun("-m", "mlpipe", "sweep", "config.yaml", "space.yaml", *BASE, "--trials", "2", "--name", "ddp", cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    out = project/"checkpoint/sweep_ddp"
    assert r.stdout.strip().splitlines() == [str(out.relative_to(project))], r.stdout  # printed once
    for n in (0, 1):  # sweep's own lines: rank 0 alone asks and says
        assert r.stderr.count(f"trial {n}: {{") == 1 and r.stderr.count(f"trial {n}: complete") == 1, r.stderr[-3000:]
    assert r.stderr.count("2 trials: 2 complete") == 1, r.stderr[-3000:]
    study = optuna.load_study(study_name="ddp", storage=f"sqlite:///{out/'study.db'}")
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE")]
    summary = json.loads((out/"summary.json").read_text())
    assert sorted(p.name for p in out.glob("log_trial_*")) == ["log_trial_0000", "log_trial_0001"]
    for t in summary["trials"]:
        run = project/t["run"]
        assert json.loads((run/"env.json").read_text())["world_size"] == 2
        snap = yaml.safe_load((run/"config.snapshot.yaml").read_text())
        assert snap["optim"]["lr"] == t["params"]["optim.lr"] and snap["model"]["backbone"]["channels"] == t["params"]["model.backbone.channels"]
        m = pd.read_csv(run/"metrics.csv")
        assert list(m.step) == [5, 10]  # 628 items / 2 processes / 64 a batch: each process trained its half
        assert t["value"] == m["val_accuracy"].max()
    # the other rank trained the same values: the best trial's weights are those of a DDP run of its config
    best = project/summary["best"]["run"]
    again = _torchrun("-m", "mlpipe", "train", out/"best.yaml", "run_name=again", cwd=project)
    assert again.returncode == 0, again.stderr[-3000:]
    pd.testing.assert_frame_equal(_metrics(project/"checkpoint/log_again"), _metrics(best))
    w0, w1 = (torch.load(d/"last.pt", weights_only=True)["model"] for d in (best, project/"checkpoint/log_again"))
    assert all(torch.equal(w0[k], w1[k]) for k in w0), "a trial's weights differ from the same config trained under DDP"

def test_a_ddp_sweep_prunes_on_every_rank_at_once(project):
    "Rank 0's pruner stops trial 1 after its first epoch; the other rank stops there too (else the job would hang)."
    # the random sampler with this seed draws lr 0.01, then 1e-9 (a model that does not move): trial 1 is worse at epoch 1
    (project/"space.yaml").write_text("optim.lr: {choices: [0.01, 1.0e-9]}\nsampler: {name: random, seed: 2}\n"
                                      "pruner: {name: percentile, percentile: 50.0, n_startup_trials: 1, n_warmup_steps: 0}\n")
    r = _torchrun("-m", "mlpipe", "sweep", "config.yaml", "space.yaml", *BASE, "--trials", "2", "--name", "ddp", cwd=project, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    out = project/"checkpoint/sweep_ddp"
    summary = json.loads((out/"summary.json").read_text())
    assert [(t["state"], t["params"]["optim.lr"]) for t in summary["trials"]] == [("complete", 0.01), ("pruned", 1e-9)], summary
    assert r.stderr.count("2 trials: 1 complete, 1 pruned") == 1 and r.stderr.count("trial 1: pruned") == 1, r.stderr[-3000:]
    pruned = project/summary["trials"][1]["run"]
    assert json.loads((pruned/"status.json").read_text())["status"] == "pruned"
    assert list(pd.read_csv(pruned/"metrics.csv").epoch) == [1] and (pruned/"last.pt").exists()  # its checkpoint kept
    assert json.loads((pruned/"env.json").read_text())["world_size"] == 2
