"""Distributed training through the real `torchrun`: 2 processes on the CPU (gloo), the whole pipeline.
No GPU here: the nccl path is not exercised."""
import json, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, child_pids, kill_group, run_group, run_mlpipe, new_project

# Validation in batches of 8 over 43 samples: the two processes see 22 and 21 (3 batches each), so a padded
# sampler would count one sample twice.
DDP = [*TINY, "loader.val={batch_size: 8}", "scheduler=null"]  # resumed with more epochs below: no schedule over the run's length

def torchrun(*args, cwd, nproc=2, timeout=240, env=None):
    "`torchrun --standalone --nproc_per_node=N -m mlpipe ARGS`, as a user would type it (standalone: a free port)."
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    env.pop("MLPIPE_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "mlpipe", *map(str, args)]
    return run_group(cmd, cwd=cwd, timeout=timeout, env=env)

def last_line(r): return r.stdout.strip().splitlines()[-1]

@pytest.fixture(scope="module")
def augmented(tmp_path_factory, digits_raw):
    "A project with the digits augmented once (628 train, 43 val rows) for all the tests of this file."
    root = tmp_path_factory.mktemp("ddp")
    new_project(root, digits_raw)
    r = run_mlpipe("augment", "config.yaml", *TINY, cwd=root)
    assert r.returncode == 0, r.stderr
    return root

@pytest.fixture(scope="module")
def ddp_run(augmented):
    "Two processes, two epochs: the run directory."
    r = torchrun("train", "config.yaml", *DDP, "run_name=ddp", cwd=augmented)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines() == ["checkpoint/log_ddp"], r.stdout  # printed once, by rank 0
    # the run as it ended, for the tests that train it again: a test below resumes it with more epochs
    shutil.copy(augmented/"checkpoint/log_ddp/last.pt", augmented/"ddp_last_after_2_epochs.pt")
    return augmented/"checkpoint/log_ddp"

def test_ddp_writes_one_run(ddp_run):
    assert sorted(p.name for p in ddp_run.parent.iterdir()) == ["log_ddp"]
    files = {p.name for p in ddp_run.iterdir()}
    assert {"best.pt", "last.pt", "last.pt.bak", "metrics.csv", "metrics.png", "config.snapshot.yaml", "env.json",
            "status.json"} <= files
    assert not [f for f in files if ".tmp" in f]
    m = pd.read_csv(ddp_run/"metrics.csv")
    assert list(m.epoch) == [1, 2]
    assert list(m.step) == [5, 10]  # 628 items / 2 processes = 314 per process = 5 batches of 64
    assert json.loads((ddp_run/"env.json").read_text())["world_size"] == 2
    assert json.loads((ddp_run/"status.json").read_text())["status"] == "finished"

def evaluate(project: Path, run_dir: Path, ckpt: str) -> tuple[dict, int]:
    "The validation loss and metrics of a checkpoint's weights, computed in this one process over the whole val split."
    from mlpipe.config import load_config
    from mlpipe.dataset import ManifestDataset, build_transforms, make_loader
    from mlpipe.metrics import build_loss, build_metrics
    from mlpipe.model import build_model
    from mlpipe.trainer import load_checkpoint
    cfg = load_config(run_dir/"config.snapshot.yaml")
    train_ds = ManifestDataset(project/cfg.manifest, "train")
    val_ds = ManifestDataset(project/cfg.manifest, "val", build_transforms(cfg.tf.val))
    model = build_model({"backbone": cfg.model.backbone, "head": cfg.model.head}, train_ds.info["n_outputs"], train_ds.info)
    state = load_checkpoint(run_dir/ckpt)
    model.load_state_dict(state["model"])  # the plain module's keys: no "module." prefix
    model.eval()
    loss_fn, metrics = build_loss(cfg.loss), build_metrics(cfg.metrics)
    total, n = 0.0, 0
    with torch.inference_mode():
        for b in make_loader(val_ds, {"batch_size": 1000}, seed=0):  # one batch: other batching than the run's
            pred = model(b["x"])
            total += float(loss_fn(pred, b["y"])) * len(b["y"]); n += len(b["y"])
            for m in metrics: m.update(pred, b["y"])
    return {"epoch": state["epoch"], "val_loss": total / n, **{f"val_{m.name}": m.compute() for m in metrics}}, n

def test_ddp_validation_equals_one_process_evaluating_best_pt(ddp_run):
    values, n = evaluate(ddp_run.parent.parent, ddp_run, "best.pt")
    assert n == 43
    row = pd.read_csv(ddp_run/"metrics.csv").set_index("epoch").loc[values["epoch"]]
    assert row["val_accuracy"] == pytest.approx(values["val_accuracy"], abs=1e-12)  # counts: exact
    assert row["val_macro_f1"] == pytest.approx(values["val_macro_f1"], abs=1e-12)
    assert row["val_loss"] == pytest.approx(values["val_loss"], rel=1e-5)  # float32 losses summed in another order

def test_ddp_resume_continues_and_loads_in_one_process(ddp_run):
    project = ddp_run.parent.parent
    r = torchrun("train", "--resume", ddp_run, "train.epochs=3", cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    assert last_line(r) == str(ddp_run)
    assert list(pd.read_csv(ddp_run/"metrics.csv").epoch) == [1, 2, 3]
    # the DDP checkpoint goes on in a single process
    r = run_mlpipe("train", "--resume", ddp_run, "train.epochs=4", cwd=project)
    assert r.returncode == 0, r.stderr
    m = pd.read_csv(ddp_run/"metrics.csv")
    assert list(m.epoch) == [1, 2, 3, 4] and list(m.step) == [5, 10, 15, 25]  # 10 steps per epoch alone
    assert sorted(p.name for p in ddp_run.parent.iterdir()) == ["log_ddp"]

# One epoch of plain SGD (no momentum), the data in file order, no dropout, no BatchNorm, no schedule.
SGD = [*TINY, "train.epochs=1", "model.backbone={name: mlp, hidden: [32]}", "model.head={name: classifier, dropout: 0.0}",
       "optim={name: sgd, lr: 0.2}", "scheduler=null", "train.grad_clip=null", "loss={name: cross_entropy}"]
TOL = 1e-5  # largest |difference| allowed in any weight; measured: ~1e-7 (the order of float additions)

def test_two_processes_with_half_batches_match_one_with_full_batches(augmented):
    n_train = int((pd.read_csv(augmented/"data/processed/v1/manifest.csv").split == "train").sum())
    B = 16
    assert n_train % 2 == 0 and n_train % B % 2 == 0  # so the last batches split evenly too (628 = 39*16 + 4)
    one = run_mlpipe("train", "config.yaml", *SGD, f"loader.train={{batch_size: {B}, shuffle: false}}", "run_name=one", cwd=augmented)
    assert one.returncode == 0, one.stderr
    two = run_mlpipe("train", "config.yaml", *SGD, f"loader.train={{batch_size: {B // 2}, shuffle: false}}", "run_name=two",
                     "--nproc", "2", cwd=augmented)  # through the CLI's launcher
    assert two.returncode == 0, two.stderr[-3000:]
    assert last_line(two) == "checkpoint/log_two"
    a = torch.load(augmented/"checkpoint/log_one/last.pt", weights_only=True)["model"]
    b = torch.load(augmented/"checkpoint/log_two/last.pt", weights_only=True)["model"]
    assert list(a) == list(b)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff < TOL, diff
    print(f"max |w_ddp - w_single| = {diff:.2e} over {sum(v.numel() for v in a.values())} weights")

BAD_LOSS = '''
import os, torch
class FailOnRank1(torch.nn.CrossEntropyLoss):
    "Cross entropy that raises on rank 1 at its third call: a bug that only one process hits, mid-epoch."
    calls = 0
    def forward(self, pred, target):
        self.calls += 1
        if os.environ.get("RANK") == "1" and self.calls == 3: raise RuntimeError("rank 1 failed on purpose")
        return super().forward(pred, target)
'''

def test_a_failing_rank_ends_the_job(augmented, monkeypatch):
    (augmented/"badloss.py").write_text(BAD_LOSS)  # importable: the workers run in the project folder
    monkeypatch.setenv("MLPIPE_DIST_TIMEOUT", "90")  # the backstop; torchrun should end the job long before
    start = time.monotonic()
    r = run_mlpipe("train", "config.yaml", *DDP, "run_name=bad", "loss={name: 'badloss:FailOnRank1'}", "--nproc", "2",
                   cwd=augmented, timeout=150)
    took = time.monotonic() - start
    assert r.returncode == 1, r.returncode  # torchrun's status, passed on by `mlpipe train --nproc`
    assert "RuntimeError: rank 1 failed on purpose" in r.stderr
    assert took < 80, took  # rank 0 did not sit in a collective until the timeout
    status = json.loads((augmented/"checkpoint/log_bad/status.json").read_text())
    assert status["status"] == "failed", status  # rank 0's gradient all-reduce failed when rank 1 went away
    print(f"failed job ended in {took:.1f}s with exit status {r.returncode}")


# ---- restarts and several machines -------------------------------------------------------------------------------

def workers_of(agent: subprocess.Popen) -> dict:
    "{RANK: pid} of the worker processes a torchrun agent has started (its children, from /proc)."
    out = {}
    for pid in child_pids().get(agent.pid, []):
        try: env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        except OSError: continue
        if "RANK" in env: out[int(env["RANK"])] = pid
    return out

def same_weights(a: Path, b: Path) -> float:
    "The largest |difference| between two checkpoints' weights (0.0: bit for bit)."
    wa, wb = (torch.load(p, weights_only=True)["model"] for p in (a, b))
    assert list(wa) == list(wb)
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)

def test_max_restarts_with_resume_auto_finishes_as_a_run_never_interrupted(augmented, ddp_run):
    """`torchrun --max-restarts 1 … mlpipe train CONFIG --resume auto`: rank 1 is killed (SIGKILL) once epoch 1 is saved;
    the elastic agent restarts both processes, which continue the run from its newest checkpoint: the same weights,
    bit for bit, as the run of the same config never interrupted."""
    run_dir = augmented/"checkpoint/log_elastic"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("MLPIPE_DEBUG", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=1",
           "-m", "mlpipe", "train", "config.yaml", *DDP, "run_name=elastic", "--resume", "auto"]
    agent = subprocess.Popen(cmd, cwd=augmented, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir/"last.pt").exists():
            assert agent.poll() is None and time.monotonic() < deadline, agent.stderr.read()[-3000:]
            time.sleep(0.02)
        killed = workers_of(agent)[1]
        os.kill(killed, signal.SIGKILL)
        try: out, err = agent.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # say where the job stood: the agent's and both ranks' last lines
            kill_group(agent); out, err = agent.communicate(timeout=30)
            raise AssertionError(f"the restarted job did not end within 180 s:\n{err[-6000:]}") from None
    finally:
        kill_group(agent)
    assert agent.returncode == 0, err[-12000:]
    assert out.strip().splitlines()[-1] == "checkpoint/log_elastic", out
    assert sorted(p.name for p in augmented.glob("checkpoint/log_elastic*")) == ["log_elastic"]  # continued, not begun again
    resumed = [json.loads(l) for l in (run_dir/"resumes.jsonl").read_text().splitlines()]
    assert len(resumed) == 1 and resumed[0]["from_epoch"] >= 1, resumed
    assert list(pd.read_csv(run_dir/"metrics.csv").epoch) == [1, 2]
    assert same_weights(run_dir/"last.pt", augmented/"ddp_last_after_2_epochs.pt") == 0.0
    print(f"rank 1 (pid {killed}) killed after epoch 1 was saved; restarted from epoch {resumed[0]['from_epoch']}; weights identical")

def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def test_two_nodes_train_the_run_of_one_node_with_two_processes(augmented, ddp_run):
    """Two `torchrun --nnodes 2` launches (as on two machines: one process each, c10d rendezvous on 127.0.0.1) train
    the run `--nproc 2` trains on one node: one run directory, written by rank 0 alone, the same weights."""
    port, env = free_port(), {**os.environ, "MPLBACKEND": "Agg"}
    env.pop("MLPIPE_DEBUG", None)
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               f"--node-rank={rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                               "--rdzv-id=two-nodes", "-m", "mlpipe", "train", "config.yaml", *DDP, "run_name=nodes"],
                              cwd=augmented, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)
             for rank in (0, 1)]
    try: results = [(n.communicate(timeout=240), n.returncode) for n in nodes]
    finally:
        for n in nodes:
            kill_group(n)
    for (out, err), code in results: assert code == 0, err[-3000:]
    printed = [out.strip() for (out, _), _ in results]
    assert sorted(printed) == ["", "checkpoint/log_nodes"], printed  # the run directory, from rank 0 only
    run_dir = augmented/"checkpoint/log_nodes"
    assert sorted(p.name for p in augmented.glob("checkpoint/log_nodes*")) == ["log_nodes"]
    assert json.loads((run_dir/"env.json").read_text())["world_size"] == 2
    assert list(pd.read_csv(run_dir/"metrics.csv").epoch) == [1, 2]
    diff = same_weights(run_dir/"last.pt", augmented/"ddp_last_after_2_epochs.pt")
    assert diff < TOL, diff
    print(f"two nodes vs one node with two processes: max |Δw| = {diff:.1e}")

def mlpipe_nodes(cwd: Path, port: int, *args, join=10):
    "`mlpipe train … --nnodes 2 --master 127.0.0.1:PORT` started in `cwd`, as on one machine of two."
    env = {**os.environ, "MPLBACKEND": "Agg", "MLPIPE_JOIN_TIMEOUT": str(join)}
    env.pop("MLPIPE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "mlpipe", "train", "config.yaml", *DDP, *args, "--nnodes", "2",
                             "--master", f"127.0.0.1:{port}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

def test_a_machine_without_the_data_is_named_by_the_others(augmented, tmp_path):
    "One machine lacks the processed data: it says so; the other, waiting for it, ends within the join timeout naming it."
    shutil.copy(augmented/"config.yaml", tmp_path/"config.yaml")  # the same config, no data/processed/ there
    import socket
    port, start = free_port(), time.monotonic()
    nodes = [mlpipe_nodes(augmented, port, "run_name=nodata")]
    while socket.socket().connect_ex(("127.0.0.1", port)):  # the machine with the data listens at --master: it hosts the rendezvous
        assert nodes[0].poll() is None and time.monotonic() - start < 60, nodes[0].stderr.read()
        time.sleep(0.05)
    nodes.append(mlpipe_nodes(tmp_path, port, "run_name=nodata"))
    try: (out0, err0), (out1, err1) = (n.communicate(timeout=120) for n in nodes)
    finally:
        for n in nodes: kill_group(n)
    took = time.monotonic() - start
    assert nodes[0].returncode != 0 and nodes[1].returncode != 0
    assert "error: manifest not found: data/processed/v1/manifest.csv" in err1, err1[-2000:]
    named = re.search(r"error: the distributed job did not start: rank (\d) \(node (\d)\) did not join within 10 s "
                      r"\(rank \d on [^ ]+ did\)", err0)
    assert named and named.group(1) == named.group(2), err0[-3000:]
    assert took < 60, took  # not the 10-minute collective timeout
    print(f"the machine with the data ended after {took:.0f} s: {named.group(0)}")

def test_a_machine_that_never_joins_gives_one_error_line(augmented):
    "Alone of two machines: after the join timeout, one error line naming --master (no traceback), no run directory."
    port = free_port()
    node = mlpipe_nodes(augmented, port, "run_name=alone", join=5)
    try: out, err = node.communicate(timeout=120)
    finally: kill_group(node)
    assert node.returncode == 1, err[-3000:]
    assert "Traceback" not in err and "RendezvousTimeoutError" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"error: --master 127.0.0.1:{port}: the 2 machines did not all join within 5 s"), err
    assert not (augmented/"checkpoint/log_alone").exists()

def test_a_port_in_use_is_refused_before_anything_starts(augmented):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); s.listen()
        port = s.getsockname()[1]
        node = mlpipe_nodes(augmented, port, "run_name=port")
        try: out, err = node.communicate(timeout=60)
        finally: kill_group(node)
    assert node.returncode == 2, err
    assert err.strip().splitlines() == [f"error: --master 127.0.0.1:{port}: port {port} is in use "
                                        "on this machine (another program, or an earlier job still running): choose "
                                        "another port, the same on every machine"], err
    assert not (augmented/"checkpoint/log_port").exists()
