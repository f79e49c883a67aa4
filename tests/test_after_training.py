"After training: `mlpipe predict`, `compare`, `register` and the monitoring loggers, as real subprocesses."
import hashlib, io, json, os, shutil, threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY, run_mlpipe, new_project, ok

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # for the mlflow imported here to read results back

@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_raw):
    "A project with the digits augmented once and two tiny runs that differ in their learning rate."
    project = tmp_path_factory.mktemp("project")
    new_project(project, digits_raw)
    ok(run_mlpipe("run", "config.yaml", *TINY, "run_name=a", cwd=project))
    ok(run_mlpipe("train", "config.yaml", *TINY, "run_name=b", "optim.lr=0.01", cwd=project))
    return project

def val_files(project: Path) -> list[str]:
    "The raw files of the validation split, from the manifest's source ids."
    m = pd.read_csv(project/"data/processed/v1/manifest.csv")
    return [f"data/raw/digits/{s}" for s in m[m.split == "val"].source_id]

def best_val_accuracy(run_dir: Path) -> float:
    "val_accuracy in metrics.csv at the epoch that best.pt holds."
    epoch = torch.load(run_dir/"best.pt", map_location="cpu", weights_only=True)["epoch"]
    return float(pd.read_csv(run_dir/"metrics.csv").set_index("epoch").loc[epoch, "val_accuracy"])

def test_predict_replays_validation(trained):
    run_dir, files = trained/"checkpoint/log_a", val_files(trained)
    r = ok(run_mlpipe("predict", run_dir, *files, cwd=trained))
    df = pd.read_csv(io.StringIO(r.stdout), dtype={"label": str})
    assert list(df.columns) == ["id", "label", *[f"p_{k}" for k in range(10)], "error"]
    assert df.id.tolist() == files and df.error.isna().all()
    assert abs(df.filter(like="p_").sum(axis=1) - 1).max() < 1e-4
    truth = [Path(f).parent.name for f in files]
    assert (df.label == truth).mean() == pytest.approx(best_val_accuracy(run_dir), abs=1e-9)

def test_predict_folder_to_file_with_a_bad_input(trained, tmp_path):
    folder = tmp_path/"new"; folder.mkdir()
    shutil.copy(trained/"data/raw/digits/3/0003.png", folder/"a.png")
    (folder/"b.png").write_bytes(b"not an image")
    r = ok(run_mlpipe("predict", trained/"checkpoint/log_a", folder, "--out", tmp_path/"p.csv", cwd=trained))
    assert r.stdout.strip() == str(tmp_path/"p.csv")
    assert "1 of 2 inputs could not be predicted" in r.stderr
    df = pd.read_csv(tmp_path/"p.csv", keep_default_na=False)
    assert [Path(i).name for i in df.id] == ["a.png", "b.png"]
    assert df.error.tolist() == ["", "not a recognised image file"] and df.label[1] == ""

def test_predict_errors_are_one_line(trained):
    r = run_mlpipe("predict", trained/"checkpoint/log_a", "missing.png", cwd=trained)
    assert (r.returncode, r.stderr) == (2, "error: input not found: missing.png\n")
    r = run_mlpipe("predict", "nothing_here", "x.png", cwd=trained)
    assert r.returncode == 2 and "not a run directory nor a registered model" in r.stderr

def test_runs_and_compare(trained, tmp_path):
    ls = ok(run_mlpipe("runs", cwd=trained)).stdout.splitlines()
    assert ls[0].split()[-3:] == ["best", "test", "status"] and all(l.split()[-1] == "finished" for l in ls[1:])
    out = tmp_path/"compare.png"
    r = ok(run_mlpipe("compare", "a", "b", "--out", out, cwd=trained))
    lines = r.stdout.splitlines()
    assert lines[-1] == str(out) and out.read_bytes()[:4] == b"\x89PNG"
    diff = [l.split()[0] for l in lines[lines.index("config differences:") + 2:-1]]
    assert diff == ["run_name", "optim.lr"]
    if os.environ.get("MLPIPE_KEEP_COMPARE"): shutil.copy(out, os.environ["MLPIPE_KEEP_COMPARE"])
    r = run_mlpipe("compare", "a", cwd=trained)
    assert (r.returncode, r.stderr) == (2, "error: compare needs at least two runs, got 1\n")

def predicted(stdout: str) -> pd.DataFrame:
    "The CSV that `mlpipe predict` printed."
    return pd.read_csv(io.StringIO(stdout), dtype={"label": str}, keep_default_na=False)

def assert_same_predictions(cli: pd.DataFrame, expected: pd.DataFrame):
    "Same ids, labels and errors; probabilities equal to the 6 significant digits the CSV keeps."
    assert cli.id.tolist() == expected.id.tolist() and cli.label.tolist() == expected.label.tolist()
    assert (cli.filter(like="p_") - expected.filter(like="p_")).abs().max().max() < 1e-5

def test_register_versions_and_predict_by_name(trained):
    from mlpipe.predict import Predictor
    files = val_files(trained)[:20]
    a, b = trained/"checkpoint/log_a", trained/"checkpoint/log_b"
    assert ok(run_mlpipe("register", a, "--name", "digits", cwd=trained)).stdout.strip() == "digits:v1"
    assert ok(run_mlpipe("register", b, "--name", "digits", cwd=trained)).stdout.strip() == "digits:v2"
    assert sorted(p.name for p in (trained/"registry/digits").iterdir()) == ["v1", "v2"]
    v1 = trained/"registry/digits/v1"
    for line in (v1/"SHA256SUMS").read_text().splitlines():  # what `sha256sum -c SHA256SUMS` checks
        digest, name = line.split("  ")
        assert hashlib.sha256((v1/name).read_bytes()).hexdigest() == digest
    cwd = os.getcwd(); os.chdir(trained)  # the inputs are relative to the project, as on the command line
    try: from_a, from_b = Predictor.from_run(a).predict(files), Predictor.from_run(b).predict(files)
    finally: os.chdir(cwd)
    assert_same_predictions(predicted(ok(run_mlpipe("predict", "digits:latest", *files, cwd=trained)).stdout), from_b)
    shutil.move(trained/"data/processed", trained/"processed.away")  # the registry copy needs no processed data
    try: assert_same_predictions(predicted(ok(run_mlpipe("predict", "digits:v1", *files, cwd=trained)).stdout), from_a)
    finally: shutil.move(trained/"processed.away", trained/"data/processed")
    r = run_mlpipe("predict", "digits:v9", *files, cwd=trained)
    assert r.returncode == 2 and "has no version v9" in r.stderr
    r = run_mlpipe("register", a, "--name", "../x", cwd=trained)
    assert r.returncode == 2 and "model name '../x'" in r.stderr

@pytest.mark.slow  # MLflow creates its SQLite tables: ~15 s on an idle machine
def test_mlflow_registry_round_trip(trained, tmp_path):
    pytest.importorskip("mlflow")
    from mlpipe.predict import Predictor
    (tmp_path/"config.yaml").write_text("registry:\n  uri: sqlite:///mlflow.db\n")  # the registry named by config
    run_dir, files = trained/"checkpoint/log_a", [str(trained/f) for f in val_files(trained)[:20]]
    assert ok(run_mlpipe("register", run_dir, "--name", "digits", cwd=tmp_path)).stdout.strip() == "digits:v1"
    expected = Predictor.from_run(run_dir).predict(files)
    assert_same_predictions(predicted(ok(run_mlpipe("predict", "digits:latest", *files, cwd=tmp_path)).stdout), expected)
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    [v] = mlflow.MlflowClient().search_model_versions("name='digits'")
    assert int(v.version) == 1 and mlflow.get_run(v.run_id).data.params["optim.lr"] == "0.003"
    df = mlflow.pyfunc.load_model("models:/digits/1").predict(files)  # an ordinary MLflow model too
    assert df.label.tolist() == expected.label.tolist()

class Hook(BaseHTTPRequestHandler):
    received = []
    def do_POST(self):
        Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204); self.end_headers()
    def log_message(self, *args): pass

@pytest.fixture
def webhook():
    "A local HTTP server on 127.0.0.1 recording the JSON POSTed to it."
    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hook.received.clear()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown(); server.server_close()

BOOM = '''import torch.nn as nn, torch.nn.functional as F
class Boom(nn.Module):
    "Cross-entropy that fails after `after` calls: a bug that shows up in epoch 2."
    def __init__(self, after=12): super().__init__(); self.after, self.calls = after, 0
    def forward(self, pred, y):
        self.calls += 1
        if self.calls > self.after: raise RuntimeError("boom in epoch 2")
        return F.cross_entropy(pred, y)
'''

@pytest.mark.slow  # MLflow creates its SQLite tables: ~15 s on an idle machine
def test_loggers_and_notifications(trained, webhook):
    pytest.importorskip("mlflow"); pytest.importorskip("tensorboard")
    monitor = [*TINY, "scheduler=null", "log.tensorboard=true", "log.mlflow=sqlite:///track.db", f"notify.webhook={webhook}",
               'notify.command=echo "$MLPIPE_RUN $MLPIPE_STATUS $MLPIPE_EPOCHS" >> notes.txt']
    ok(run_mlpipe("train", "config.yaml", *monitor, "run_name=mon", cwd=trained))
    (trained/"boom_loss.py").write_text(BOOM)
    r = run_mlpipe("train", "config.yaml", *monitor, "run_name=fail", "loss={name: 'boom_loss:Boom', after: 12}", cwd=trained)
    assert r.returncode == 1 and "boom in epoch 2" in r.stderr
    # the notifications: the command's output and the webhook's JSON, for the finished and the failed run
    assert (trained/"notes.txt").read_text().splitlines() == ["mon finished 2", "fail failed 1"]
    [done, failed] = Hook.received
    assert (done["status"], done["epochs"], done["error"]) == ("finished", 2, None)
    assert done["best"] == pytest.approx(pd.read_csv(trained/"checkpoint/log_mon/metrics.csv").val_accuracy.max())
    assert (failed["run"], failed["status"], failed["error"]) == ("fail", "failed", "RuntimeError: boom in epoch 2")
    assert json.loads((trained/"checkpoint/log_fail/status.json").read_text())["status"] == "failed"
    # TensorBoard event files, read with TensorBoard's own reader
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(trained/"checkpoint/log_mon/tb")); ea.Reload()
    assert {"loss/train", "loss/val", "accuracy/val", "macro_f1/val", "lr"} <= set(ea.Tags()["scalars"])
    assert [e.step for e in ea.Scalars("accuracy/val")] == [1, 2]
    # MLflow tracking: one run per training run, with its status, params and curves
    import mlflow
    client = mlflow.MlflowClient(f"sqlite:///{trained}/track.db")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("mlpipe").experiment_id])}
    assert (runs["mon"].info.status, runs["fail"].info.status) == ("FINISHED", "FAILED")
    assert runs["mon"].data.params["model.backbone.channels"] == "[8, 16]"
    assert [m.step for m in client.get_metric_history(runs["mon"].info.run_id, "val_accuracy")] == [1, 2]
    # a resumed run goes on in the same MLflow run (its id is in the checkpoint)
    ok(run_mlpipe("train", "--resume", trained/"checkpoint/log_mon", "train.epochs=3", cwd=trained))
    again = client.search_runs([client.get_experiment_by_name("mlpipe").experiment_id])
    assert sorted(r.info.run_name for r in again) == ["fail", "mon"]
    assert [m.step for m in client.get_metric_history(runs["mon"].info.run_id, "val_accuracy")] == [1, 2, 3]
    assert client.get_run(runs["mon"].info.run_id).info.status == "FINISHED"
    assert (trained/"notes.txt").read_text().splitlines()[-1] == "mon finished 3"
