"""`mlpipe evaluate` and `mlpipe lr-find` as a user runs them: real subprocesses on real digits.

The run is trained while every file of the test split is moved away, so training (best epoch, early stopping) cannot
have read it; evaluate then counts each test item once, from sources that no other split has.
"""
import csv, json, os, re
from pathlib import Path
import pandas as pd
import pytest
from conftest import TINY, new_project, run_mlpipe, ok

def manifest(work: Path) -> pd.DataFrame: return pd.read_csv(work/"data/processed/v1/manifest.csv")

@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    "A project whose run `ev` was trained with the test split's files out of reach."
    d = new_project(tmp_path_factory.mktemp("evaluate"), digits_raw)
    ok(run_mlpipe("augment", "config.yaml", *TINY, cwd=d))
    m = manifest(d)
    root = d/"data/processed/v1"
    others = set(m[m.split != "test"].path)
    hidden = [root/p for p in set(m[m.split == "test"].path) - others]  # content-addressed: a shared file stays
    assert len(hidden) > 20
    for p in hidden: p.rename(p.with_name(p.name + ".away"))
    try: ok(run_mlpipe("train", "config.yaml", *TINY, "train.threads=1", "run_name=ev", cwd=d))  # a count fixed: runs compared bit for bit
    finally:
        for p in hidden: p.with_name(p.name + ".away").rename(p)
    return d


def test_evaluate_counts_each_test_item_once_and_writes_the_report(work):
    r = ok(run_mlpipe("evaluate", "ev", cwd=work))  # the name `mlpipe runs` prints
    m = manifest(work)
    test = m[m.split == "test"]
    assert f"on the test split, {len(test)} items" in r.stdout, r.stdout
    assert re.search(r"^accuracy\s+[\d.]+\s+[\d.]+$", r.stdout, re.M), r.stdout  # model and baseline side by side
    out = work/"checkpoint/log_ev/eval/test"
    assert r.stdout.strip().endswith(f"wrote {Path('checkpoint/log_ev/eval/test')}")
    record = json.loads((out/"metrics.json").read_text())
    assert record["items"] == len(test) and record["checkpoint"] == "best.pt" and record["split"] == "test"
    assert set(record["metrics"]) == set(record["baseline"]) == {"loss", "accuracy", "macro_f1"}
    # the baseline is the majority class of the train split
    train_counts = m[m.split == "train"].target.value_counts()
    assert record["baseline"]["accuracy"] == pytest.approx((test.target == train_counts.idxmax()).mean())
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"]
    pred = pd.read_csv(out/"predictions.csv")
    assert sorted(pred.id) == sorted(test.id) and pred.id.is_unique  # every test item, once
    assert not set(pred.source_id) & set(m[m.split != "test"].source_id)  # no source seen in training or validation
    assert (pred.true.astype(str) == pred.id.str.split("/").str[0]).all()  # the class folder it came from
    assert record["metrics"]["accuracy"] == pytest.approx((pred.true == pred.predicted).mean())
    cm = pd.read_csv(out/"confusion.csv", index_col=0)
    assert int(cm.values.sum()) == len(test) and cm.values.trace() == (pred.true == pred.predicted).sum()
    per_class = pd.read_csv(out/"per_class.csv")
    assert per_class.support.sum() == len(test) and list(per_class["class"].astype(str)) == [str(c) for c in range(10)]
    top = pd.read_csv(out/"top_losses.csv")
    assert len(top) == 16 and top.loss.is_monotonic_decreasing and top.loss.iloc[0] == pytest.approx(pred.loss.max(), rel=1e-5)
    assert all((work/s).is_file() for s in top.source) and all((work/p).is_file() for p in top.path)  # the user can open them
    for png in ("confusion.png", "calibration.png", "top_losses.png"): assert (out/png).read_bytes()[:4] == b"\x89PNG"
    runs = ok(run_mlpipe("runs", cwd=work)).stdout.splitlines()
    assert runs[0].split()[-2:] == ["test", "status"] and f"{record['metrics']['accuracy']:.4f}" in runs[1], runs


def test_val_split_of_best_pt_is_the_best_epochs_row(work):
    "The same processing as validation: evaluate --split val gives back metrics.csv's best epoch."
    ok(run_mlpipe("evaluate", "checkpoint/log_ev", "--split", "val", cwd=work))
    record = json.loads((work/"checkpoint/log_ev/eval/val/metrics.json").read_text())
    rows = pd.read_csv(work/"checkpoint/log_ev/metrics.csv")
    best = rows.loc[rows.val_accuracy.idxmax()]  # config.yaml monitors val_accuracy (max); first best wins
    assert record["epoch"] == best.epoch
    assert record["metrics"]["accuracy"] == pytest.approx(best.val_accuracy, abs=1e-9)
    assert record["metrics"]["loss"] == pytest.approx(best.val_loss, rel=1e-5)
    last = ok(run_mlpipe("evaluate", "ev", "--split", "val", "--checkpoint", "last", "--top", "0", cwd=work))
    record = json.loads((work/"checkpoint/log_ev/eval/val/metrics.json").read_text())
    assert record["checkpoint"] == "last.pt" and record["epoch"] == rows.epoch.max(), last.stdout
    assert record["metrics"]["accuracy"] == pytest.approx(rows.val_accuracy.iloc[-1], abs=1e-9)
    assert not (work/"checkpoint/log_ev/eval/val/top_losses.png").exists()  # replaced whole, --top 0


def test_reevaluation_replaces_the_folder_and_errors_write_nothing(work):
    out = work/"checkpoint/log_ev/eval/test"
    ok(run_mlpipe("evaluate", "ev", cwd=work))
    (out/"stale.txt").write_text("from an older evaluation")
    ok(run_mlpipe("evaluate", "ev", cwd=work))
    assert not (out/"stale.txt").exists()
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(["test", *(["val"] if (out.parent/"val").exists() else [])])
    before = sorted(str(p) for p in work.rglob("*"))
    for args, says in [(["nope"], "error: run not found: nope"),
                       (["ev", "--top", "-1"], "error: top: a number of items >= 0"),
                       (["nope:v3"], "error: no model named 'nope'")]:
        r = run_mlpipe("evaluate", *args, cwd=work)
        assert r.returncode == 2 and r.stderr.startswith(says) and len(r.stderr.splitlines()) == 1, r.stderr
    r = run_mlpipe("evaluate", work/"checkpoint/log_ev", cwd=work/"checkpoint")  # not in the project folder
    assert r.returncode == 2 and "the run's processed data is not here" in r.stderr, r.stderr
    assert sorted(str(p) for p in work.rglob("*")) == before


def test_a_registered_model_is_evaluated_in_its_version_folder(work):
    ok(run_mlpipe("register", "checkpoint/log_ev", "--name", "digits", cwd=work))
    ok(run_mlpipe("evaluate", "digits:v1", cwd=work))
    ok(run_mlpipe("evaluate", "ev", cwd=work))
    a, b = (json.loads((d/"eval/test/metrics.json").read_text()) for d in (work/"registry/digits/v1", work/"checkpoint/log_ev"))
    assert a["metrics"] == b["metrics"] and a["checkpoint"] == "model.pt"


def test_lr_find_prints_the_override_writes_only_its_plot_and_changes_no_later_run(work):
    before = {p for p in work.rglob("*") if p.is_file()}
    r = ok(run_mlpipe("lr-find", "config.yaml", *TINY, "run_name=lf", cwd=work))
    override, plot = r.stdout.strip().splitlines()[-2:]
    assert re.fullmatch(r"optim\.lr=\d\.\de[-+]\d\d", override) and "suggested: " + override in r.stderr, r.stdout
    assert plot == str(Path("checkpoint/lr-find_lf.png"))
    assert {p for p in work.rglob("*") if p.is_file()} - before == {work/plot}
    lr = float(override.split("=")[1])
    assert 1e-5 < lr < 1, lr
    ok(run_mlpipe("train", "config.yaml", *TINY, "train.threads=1", "run_name=after", cwd=work))
    rows = lambda d: [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(open(d/"metrics.csv"))]
    assert rows(work/"checkpoint/log_after") == rows(work/"checkpoint/log_ev")  # and as if the test split was never hidden
    r = run_mlpipe("lr-find", "config.yaml", *TINY, "--start", "1", "--end", "0.1", cwd=work)
    assert r.returncode == 2 and r.stderr.startswith("error: lr-find: needs 0 < start < end"), r.stderr
