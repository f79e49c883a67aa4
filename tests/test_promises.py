"""The README's promises under attack, each as a user (or an attacker) would break it, with real subprocesses:
a user error is one `error:` line naming the key, exit 2, and no run directory; a run name cannot leave its folder."""
import pytest
from pathlib import Path
from conftest import TINY, new_project, run_mlpipe


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    d = new_project(tmp_path_factory.mktemp("promises"), digits_raw)
    r = run_mlpipe("augment", "config.yaml", *TINY, cwd=d)
    assert r.returncode == 0, r.stderr
    return d

def everything(work) -> set: return {p.relative_to(work) for p in work.rglob("*")}


@pytest.mark.parametrize("override, says", [
    ("scheduler={name: cosinee}", "scheduler: unknown kind 'cosinee'"),
    ("scheduler={name: cosine, warmup: 2}", "scheduler.warmup: 2 must be shorter than the run (2 epochs)"),
    ("notify.webhook=ftp://example.org/hook", "notify.webhook: expected an http:// or https:// URL"),
    ("train.amp=fp16", "train.amp: fp16 needs a CUDA device"),  # device: auto, on a machine without one
    ("train.accum_steps=0", "train.accum_steps: expected an integer >= 1, got 0"),
    ("train.epochs=0", "train.epochs: expected an integer >= 1, got 0"),
    ("train.epochs=-3", "train.epochs: expected an integer >= 1, got -3"),
    ("loader.train.batch_size=0", "loader.train.batch_size: expected an integer >= 1, got 0"),
    ("monitor.key=val_nope", "monitor.key: 'val_nope' is not a column this run writes to metrics.csv"),
    ("train.grad_clip=-1", "train.grad_clip: expected a norm > 0"),
    ("early_stop.patience=-1", "early_stop.patience: expected epochs >= 0"),
    ("optim.lr=-0.1", "optim.lr: expected a learning rate > 0"),
    ("run_name=../../escaped", "run_name: expected a plain name"),
    ("run_name=log_ref/inside", "run_name: expected a plain name"),
], ids=lambda v: v.split("=")[0] if "=" in v else None)
def test_a_user_error_is_one_line_exit_2_and_writes_nothing(work, override, says):
    import torch
    if "fp16" in override and torch.cuda.is_available(): pytest.skip("this machine has CUDA: fp16 is allowed")
    before = everything(work)
    r = run_mlpipe("train", "config.yaml", *TINY, override, cwd=work)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {says}"), r.stderr
    assert everything(work) == before  # no checkpoint/log_*, nothing anywhere else


def test_links_leading_out_of_raw_dir_are_skipped_and_listed(tmp_path):
    "A text tree with a file and a whole label folder linked from outside: neither reaches the items or vocab.json."
    import csv, json
    outside = tmp_path/"outside"; outside.mkdir()
    (outside/"secret.txt").write_text("swordfish hunter2 swordfish")
    raw = tmp_path/"data/raw/texts"
    for label, words in (("cats", "purr meow whiskers"), ("dogs", "bark woof fetch")):
        (raw/label).mkdir(parents=True)
        for i in range(12): (raw/label/f"{i}.txt").write_text(f"{words} {i}")
    (raw/"cats/leak.txt").symlink_to(outside/"secret.txt")
    (raw/"secrets").symlink_to(outside, target_is_directory=True)
    (raw/"dogs/alias.txt").symlink_to(raw/"dogs/0.txt")  # a link inside raw_dir is fine
    args = ["augment", f"data.raw_dir={raw}", "augment.workers=1", "augment.copies=0", "augment.recipe={text: [{name: tokenize}]}"]
    r = run_mlpipe(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path/"data/processed/v1"
    errors = {row["source_id"]: row["reason"] for row in csv.DictReader(open(out/"errors.csv"))}
    assert set(errors) == {"cats/leak.txt", "secrets/secret.txt"}, errors
    assert all("a link leading out of raw_dir" in e and str(outside.resolve()) in e for e in errors.values())
    vocab = (out/"vocab.json").read_text()
    assert "swordfish" not in vocab and "purr" in vocab
    manifest = (out/"manifest.csv").read_text()
    assert "leak" not in manifest and "secret" not in manifest and "dogs/alias.txt" in manifest
    r = run_mlpipe(*args, "data.scanner_args={follow_links: true}", "augment.version=v2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "swordfish" in (tmp_path/"data/processed/v2/vocab.json").read_text()  # asked for: taken


# ---- locks: a processed folder has one writer, a run one process ----------------------------------------------

def held(lock) -> bool:
    "Does another process hold an OS lock on the file `lock`?"
    import fcntl, os
    try: fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError: return False
    try: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB); return False  # the kind of lock hold_lock takes
    except (BlockingIOError, PermissionError): return True
    finally: os.close(fd)

def stopped_while_holding(p, lock, ready=lambda: True):
    "SIGSTOP `p` at a moment it holds `lock` and `ready()` is true (it stays stopped, lock held, until SIGCONT)."
    import os, signal, time
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert p.poll() is None, f"ended ({p.returncode}) before it held {lock}: {p.stderr.read()}"
        if held(lock) and ready():
            os.kill(p.pid, signal.SIGSTOP)
            if held(lock): return
            os.kill(p.pid, signal.SIGCONT)
        time.sleep(0.005)
    raise AssertionError(f"{lock} was never held")

def start(work, *args):
    import os, subprocess, sys
    return subprocess.Popen([sys.executable, "-m", "mlpipe", *map(str, args)], cwd=work, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "MPLBACKEND": "Agg"})

def test_a_processed_folder_has_one_writer_and_no_writer_while_a_run_reads_it(work):
    import os, signal
    import pandas as pd
    lock = work/"data/processed/v1/.lock"
    a = start(work, "augment", "config.yaml", *TINY, "augment.copies=2")
    stopped_while_holding(a, lock, ready=lambda: f"process {a.pid} " in lock.read_text())  # and has said who it is
    try:
        before = everything(work)
        b = run_mlpipe("augment", "config.yaml", *TINY, cwd=work)
        assert b.returncode == 2 and b.stderr.startswith(f"error: the processed folder data/processed/v1 is in use by process {a.pid} on "), b.stderr
        assert "(mlpipe augment config.yaml" in b.stderr or "(__main__.py augment config.yaml" in b.stderr, b.stderr
        t = run_mlpipe("train", "config.yaml", *TINY, cwd=work)
        assert t.returncode == 2 and "data/processed/v1 is in use by process" in t.stderr, t.stderr
        assert everything(work) == before  # neither wrote anything: no run directory either
    finally: os.kill(a.pid, signal.SIGCONT)
    assert a.wait(120) == 0, a.stderr.read()
    m = pd.read_csv(work/"data/processed/v1/manifest.csv")
    assert all((work/"data/processed/v1"/p.partition("#")[0]).is_file() for p in m.path)  # nothing deleted under it


def test_a_run_has_one_process(work):
    import os, signal
    import pandas as pd
    run_dir = work/"checkpoint/log_locked"
    t = start(work, "train", "config.yaml", *TINY, "train.epochs=4", "run_name=locked")
    stopped_while_holding(t, run_dir/".lock", ready=lambda: (run_dir/"metrics.csv").exists()  # training, a record written
                          and f"process {t.pid} " in (run_dir/".lock").read_text())
    try:
        r = run_mlpipe("train", "--resume", run_dir, cwd=work)
        assert r.returncode == 2 and r.stderr.startswith(f"error: the run {run_dir} is in use by process {t.pid} on "), r.stderr
        aug = run_mlpipe("augment", "config.yaml", *TINY, cwd=work)  # the run reads data/processed/v1
        assert aug.returncode == 2 and "data/processed/v1 is in use by process" in aug.stderr, aug.stderr
    finally: os.kill(t.pid, signal.SIGCONT)
    assert t.wait(120) == 0, t.stderr.read()
    assert list(pd.read_csv(run_dir/"metrics.csv").epoch) == [1, 2, 3, 4]


def test_a_full_disk_in_augment_stops_it_and_keeps_the_previous_manifest(work):
    "Writes past a file size limit fail as on a full disk (EFBIG like ENOSPC): one error line, exit 1, nothing lost."
    import hashlib, os, resource, signal
    import pandas as pd
    out = work/"data/processed/v1"
    digest = lambda: hashlib.sha256((out/"manifest.csv").read_bytes()).hexdigest()
    before = digest()
    a = start(work, "augment", "config.yaml", *TINY, "augment.copies=3")  # new copies to write
    stopped_while_holding(a, out/".lock", ready=lambda: f"process {a.pid} " in (out/".lock").read_text())
    resource.prlimit(a.pid, resource.RLIMIT_FSIZE, (40, resource.RLIM_INFINITY))  # no processed item fits now
    os.kill(a.pid, signal.SIGCONT)
    code, err = a.wait(120), a.stderr.read()
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: [Errno 27] File too large: could not write "), err
    assert lines[0].endswith("augment stopped, and data/processed/v1/manifest.csv and the files it lists are as they were"), err
    assert digest() == before
    m = pd.read_csv(out/"manifest.csv")
    assert all((out/p.partition("#")[0]).is_file() for p in m.path)
    assert "File too large" not in (out/"errors.csv").read_text()  # not an item's fault


# ---- one line where a traceback was ---------------------------------------------------------------------------

def test_errors_that_were_tracebacks_are_one_line(work, tmp_path):
    r = run_mlpipe("augment", "config.yaml", *TINY, "data.scanner_args={target_col: y}", cwd=work)
    assert r.returncode == 2 and r.stderr.strip() == ("error: data.scanner_args: got an unexpected keyword argument 'target_col' "
                                                      "(scanner 'folder' takes follow_links)"), r.stderr
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    (tmp_path/"bomb.yaml").write_text(laughs)
    r = run_mlpipe("config", tmp_path/"bomb.yaml", cwd=work, timeout=60)  # answered at once, not after minutes
    assert r.returncode == 2 and "aliases (*name) expand to 1,234,567,900 values, over the 100,000" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    (tmp_path/"one/only").mkdir(parents=True)
    for i in range(5): (tmp_path/"one/only"/f"{i}.txt").write_text(f"word {i}")
    r = run_mlpipe("augment", f"data.raw_dir={tmp_path/'one'}", f"data.processed_csv={tmp_path/'out/manifest.csv'}", cwd=tmp_path)
    assert r.returncode == 2 and "has the class 'only': classification needs two or more" in r.stderr, r.stderr
    assert not (tmp_path/"out").exists()
    # a missing package (scikit-learn made unimportable) is one line, exit 1
    (tmp_path/"fake/sklearn").mkdir(parents=True)
    (tmp_path/"fake/sklearn/__init__.py").write_text("raise ImportError(\"No module named 'sklearn'\")\n")
    r = run_mlpipe("demo", "digits", "--dest", tmp_path/"digits", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path/"fake")})
    assert r.returncode == 1 and r.stderr.startswith("error: the digits demo needs scikit-learn") and "pip install 'mlpipe[demo]'" in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr


def test_one_bad_input_does_not_stop_predict(work, tmp_path):
    "A decompression bomb (a 20000x20000 PNG of a few KB) among the inputs gets its error row; the rest is predicted."
    import csv, io
    from PIL import Image
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=pred", cwd=work)
    assert r.returncode == 0, r.stderr
    Image.new("1", (20000, 20000)).save(tmp_path/"bomb.png")
    good = next((work/"data/raw/digits/7").glob("*.png"))
    r = run_mlpipe("predict", "checkpoint/log_pred", tmp_path/"bomb.png", good, cwd=work)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 2, rows
    assert "DecompressionBombError" in rows[0]["error"] and rows[1]["error"] == "" and rows[1]["label"], rows
    assert "1 of 2 inputs could not be predicted" in r.stderr


# ---- resume: honest records --------------------------------------------------------------------------------------

def records(run_dir) -> dict:
    import hashlib
    return {n: hashlib.sha256((run_dir/n).read_bytes()).hexdigest()
            for n in ("config.snapshot.yaml", "env.json", "status.json", "metrics.csv", "last.pt")}

def test_a_refused_or_idle_resume_changes_nothing(work):
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=done", cwd=work)  # config.yaml's cosine schedule, 2 epochs
    assert r.returncode == 0, r.stderr
    run_dir = work/"checkpoint/log_done"
    before = records(run_dir)
    for extra, says in [(["scheduler=null"], "error: --resume: scheduler cannot change in a run that has begun"),
                        (["train.epochs=3"], "error: train.epochs: this run's cosine schedule was planned over its 2 epochs"),
                        (["optim.lr=0.1"], "error: optim.lr: this run's learning rate follows its cosine scheduler")]:
        r = run_mlpipe("train", "--resume", run_dir, *extra, cwd=work)
        assert r.returncode == 2 and r.stderr.startswith(says) and len(r.stderr.splitlines()) == 1, r.stderr
    r = run_mlpipe("train", "--resume", run_dir, cwd=work)  # still resumable, and finished
    assert r.returncode == 0 and r.stderr.strip() == f"{run_dir}: already finished (2/2 epochs); nothing to do", r.stderr
    assert records(run_dir) == before and not (run_dir/"resumes.jsonl").exists()


def test_a_resume_applies_its_overrides_and_appends_its_history(work):
    import json, yaml
    import pandas as pd
    import torch
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=lr", "scheduler=null", "optim.lr=0.001", cwd=work)
    assert r.returncode == 0, r.stderr
    run_dir = work/"checkpoint/log_lr"
    snapshot, env = (run_dir/"config.snapshot.yaml").read_text(), (run_dir/"env.json").read_text()
    started = json.loads((run_dir/"status.json").read_text())["started"]
    assert run_mlpipe("train", "--resume", run_dir, "optim.lr=0.01", "train.epochs=3", cwd=work).returncode == 0
    assert run_mlpipe("train", "--resume", run_dir, "train.epochs=4", cwd=work).returncode == 0
    m = pd.read_csv(run_dir/"metrics.csv")
    assert list(m.epoch) == [1, 2, 3, 4] and list(m.lr) == [0.001, 0.001, 0.01, 0.01]  # applied, and kept by the next resume
    assert torch.load(run_dir/"last.pt", weights_only=True)["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert (run_dir/"config.snapshot.yaml").read_text() == snapshot and (run_dir/"env.json").read_text() == env
    assert yaml.safe_load(snapshot)["optim"]["lr"] == 0.001  # how the run was started
    history = [json.loads(line) for line in (run_dir/"resumes.jsonl").read_text().splitlines()]
    assert [h["overrides"] for h in history] == [["optim.lr=0.01", "train.epochs=3"], ["train.epochs=4"]]
    assert [h["from_epoch"] for h in history] == [2, 3] and history[0]["argv"][-2:] == ["optim.lr=0.01", "train.epochs=3"]
    status = json.loads((run_dir/"status.json").read_text())
    assert status["started"] == started and status["resumed"] >= started and status["status"] == "finished"


# ---- what was mishandled in silence --------------------------------------------------------------------------

def test_a_manifest_with_repeated_ids_or_paths_out_of_its_folder_is_refused(work):
    import shutil
    import pandas as pd
    for name, edit, says in [
            ("dup", lambda m: pd.concat([m, m[m.split == "val"].head(1)]), "appears 2 times in split 'val'"),
            ("out", lambda m: m.assign(path=[("../../" + p) if i == 0 else p for i, p in enumerate(m.path)]), "leads out of the manifest's folder")]:
        bad = work/f"data/processed/bad_{name}"
        shutil.copytree(work/"data/processed/v1", bad, ignore=shutil.ignore_patterns(".lock"))
        m = pd.read_csv(bad/"manifest.csv", keep_default_na=False)
        edit(m).to_csv(bad/"manifest.csv", index=False)
        before = everything(work)
        r = run_mlpipe("train", "config.yaml", *TINY, f"augment.version=bad_{name}", cwd=work)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
        assert everything(work) == before


def test_an_empty_cached_item_is_made_again_and_an_undecodable_name_is_one_skipped_item(work, tmp_path):
    import os
    import pandas as pd
    out = work/"data/processed/v1"
    m = pd.read_csv(out/"manifest.csv")
    victim = out/m.path[0]
    size = victim.stat().st_size
    victim.write_bytes(b"")  # a crash or a full disk left it empty
    r = run_mlpipe("augment", "config.yaml", *TINY, cwd=work)
    assert r.returncode == 0, r.stderr
    assert victim.stat().st_size == size
    raw = tmp_path/"raw"
    for label in ("a", "b"):
        (raw/label).mkdir(parents=True)
        for i in range(6): (raw/label/f"{i}.txt").write_text(f"{label} words {i}")
    with open(os.path.join(os.fsencode(raw/"a"), b"caf\xe9.txt"), "wb") as f: f.write(b"latin-1 name")
    r = run_mlpipe("augment", f"data.raw_dir={raw}", f"data.processed_csv={tmp_path/'out/manifest.csv'}", "augment.workers=1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    errors = pd.read_csv(tmp_path/"out/errors.csv")
    assert errors.source_id.tolist() == ["a/caf\\xe9.txt"] and "not valid UTF-8" in errors.reason[0], errors
    assert len(pd.read_csv(tmp_path/"out/manifest.csv")) == 12


def test_register_on_a_full_disk_is_one_line_and_leaves_no_version(work):
    import os, resource, subprocess, sys
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=reg_full", cwd=work)
    assert r.returncode == 0, r.stderr
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.RLIM_INFINITY))  # model.pt does not fit
    r = subprocess.run([sys.executable, "-m", "mlpipe", "register", "checkpoint/log_reg_full", "--name", "full"], cwd=work,
                       capture_output=True, text=True, preexec_fn=limit, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: [Errno 27] File too large"), r.stderr
    assert "model.pt" in lines[0]
    assert not [p for p in (work/"registry/full").iterdir()] if (work/"registry/full").exists() else True  # no v1, no temp


def test_records_are_whole_or_absent(work):
    "A full disk as a run starts leaves no torn snapshot and no run directory; an emptied snapshot is refused, not replaced by defaults."
    import os, resource, subprocess, sys
    before = everything(work)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (600, resource.RLIM_INFINITY))  # the snapshot does not fit
    r = subprocess.run([sys.executable, "-m", "mlpipe", "train", "config.yaml", *TINY, "run_name=torn"], cwd=work, capture_output=True,
                       text=True, preexec_fn=limit, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "File too large" in lines[0] and "config.snapshot.yaml" in lines[0], r.stderr
    assert not (work/"checkpoint/log_torn").exists()
    assert {p for p in everything(work) - before if ".lock" not in p.name} <= {Path("checkpoint")}  # at most the (empty) root
    r = run_mlpipe("train", "config.yaml", *TINY, "run_name=emptied", cwd=work)
    assert r.returncode == 0, r.stderr
    (work/"checkpoint/log_emptied/config.snapshot.yaml").write_text("")
    r = run_mlpipe("train", "--resume", "checkpoint/log_emptied", cwd=work)
    assert r.returncode == 2 and "config.snapshot.yaml is empty: the run's config is lost" in r.stderr, r.stderr
    assert (work/"checkpoint/log_emptied/config.snapshot.yaml").read_text() == ""


def test_a_pickled_payload_in_a_manifest_is_one_line_and_runs_nothing(work, tmp_path):
    "A `.pt` item that pickles a call to os.system (what an attacker would ship) is refused by name, in one line."
    import os, shutil
    import pandas as pd
    import torch
    bad = work/"data/processed/bad_pt"
    shutil.copytree(work/"data/processed/v1", bad, ignore=shutil.ignore_patterns(".lock"))
    m = pd.read_csv(bad/"manifest.csv", keep_default_na=False)
    class Payload:
        def __reduce__(self): return (os.system, (f"touch {tmp_path/'ran'}",))
    torch.save(Payload(), bad/"items/payload.pt")
    first = m.index[m.split == "train"][0]
    m.loc[first, "path"] = "items/payload.pt"
    m.to_csv(bad/"manifest.csv", index=False)
    r = run_mlpipe("train", "config.yaml", *TINY, "augment.version=bad_pt", cwd=work)
    assert r.returncode == 2 and "payload.pt: not a tensor file that loads safely (UnpicklingError" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path/"ran").exists()
