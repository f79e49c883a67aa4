"""Crash-proof and reproducible training, with real `mlpipe train` processes.

SIGKILL at many moments (after a CSV row, as a checkpoint's temp file appears, in the middle of writing last.pt,
between best.pt and last.pt, in the middle of an epoch), SIGTERM and SIGINT stops, a full disk, a truncated
last.pt: every run, resumed with `mlpipe train --resume RUN_DIR`, ends with the same metrics.csv rows (but
`seconds`) and the same weights, bit for bit, as a run that was never interrupted. Moments are caught with inotify (the kernel tells us when a file appears
or changes) and the kill comes from this process, so nothing in mlpipe knows it is being tested.
"""
import csv, ctypes, ctypes.util, fcntl, json, os, re, resource, select, shutil, signal, struct, subprocess, sys, time
from pathlib import Path
import pytest
import torch
from conftest import REPO, TINY, new_project

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses inotify and prlimit (Linux)")

# TINY, with 8 epochs of 20 steps (digits: 628 training images, batches of 32)
ARGS = [a for a in TINY if not a.startswith("train.epochs")] + [
    "train.epochs=8", "loader.train={batch_size: 32, shuffle: true, num_workers: 0}"]
WORKERS2 = "loader.train.num_workers=2"  # a resume may change it: batches do not depend on the number of workers


@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    "A project with the digits augmented once, and the uninterrupted reference run in checkpoint/log_ref."
    d = tmp_path_factory.mktemp("crash")
    new_project(d, digits_raw)
    for args in (["augment", "config.yaml", *ARGS], ["train", "config.yaml", *ARGS, "run_name=ref"]):
        code, out, err = run(d, *args)
        assert code == 0, err
    return d


# ---- comparing runs ----------------------------------------------------------------------------------------------

def rows(run_dir: Path):
    "metrics.csv as (header, rows without `seconds`)."
    with open(run_dir/"metrics.csv", newline="") as f:
        r = list(csv.reader(f))
    keep = [i for i, c in enumerate(r[0]) if c != "seconds"]
    return r[0], [[row[i] for i in keep] for row in r[1:]]

def flat(obj, prefix=""):
    "Leaves of a nested state as {path: value}."
    if isinstance(obj, dict): return {k: v for key, val in obj.items() for k, v in flat(val, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)): return {k: v for i, val in enumerate(obj) for k, v in flat(val, f"{prefix}/{i}").items()}
    return {prefix: obj}

def same_state(a: Path, b: Path):
    "Assert two checkpoints hold the same training state, bit for bit: weights, optimizer, schedule, callbacks, RNGs."
    sa, sb = (flat({k: v for k, v in torch.load(p, weights_only=True).items() if k != "config"}) for p in (a, b))
    # The loader's own generator only seeds worker processes, which draw nothing here (items carry their seeds), and
    # persistent workers draw from it once per process: a resumed run has drawn once more.
    skip = lambda k: k.startswith("/rng/loaders")
    assert sorted(k for k in sa if not skip(k)) == sorted(k for k in sb if not skip(k))
    for k in sa:
        if skip(k): continue
        if isinstance(sa[k], torch.Tensor): assert torch.equal(sa[k], sb[k]), f"{a} vs {b}: {k} differs"
        else: assert sa[k] == sb[k], f"{a} vs {b}: {k}: {sa[k]!r} != {sb[k]!r}"
    return sa

def assert_same_run(run_dir: Path, ref: Path):
    assert rows(run_dir) == rows(ref)
    state = same_state(run_dir/"last.pt", ref/"last.pt")
    assert state["/epoch"] == 8 and state["/partial"] is None
    same_state(run_dir/"best.pt", ref/"best.pt")
    assert not list(run_dir.glob(".*tmp*")), "temp files left"


# ---- processes and moments ---------------------------------------------------------------------------------------

# One intra-op thread: on a busy 2-core CI machine OpenMP threads spinning for each other cost 3x the CPU time.
ENV = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
ENV.pop("MLPIPE_DEBUG", None)

def start(cwd: Path, verb: str, *args) -> subprocess.Popen:
    "`mlpipe VERB ARGS` in its own process group (so a signal to the group reaches it and its loader workers only)."
    return subprocess.Popen([sys.executable, "-m", "mlpipe", verb, *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, env=ENV)

def finish(p: subprocess.Popen, timeout=120):
    "Wait for the process, then SIGKILL what is left of its group (orphaned loader workers); (code, stdout, stderr)."
    out, err = p.communicate(timeout=timeout)
    try: os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError: pass
    return p.returncode, out, err

IN_MODIFY, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x80, 0x100, 0x200

class Watch:
    "inotify on one directory: the names created, renamed into it, written to or deleted, as they happen."
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    def __init__(self, directory: Path):
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK)
        if self.fd < 0 or self.libc.inotify_add_watch(self.fd, str(directory).encode(), IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_DELETE) < 0:
            raise OSError(ctypes.get_errno(), f"inotify on {directory}")
    def events(self, timeout: float):
        "[(mask, name)] of what happened, waiting up to `timeout` seconds for something."
        if not select.select([self.fd], [], [], timeout)[0]: return []
        data, out, i = os.read(self.fd, 1 << 16), [], 0
        while i < len(data):
            _, mask, _, n = struct.unpack_from("iIII", data, i)
            out.append((mask, data[i + 16:i + 16 + n].rstrip(b"\0").decode()))
            i += 16 + n
        return out
    def close(self): os.close(self.fd)

def signal_when(p: subprocess.Popen, run_dir: Path, moment, sig=signal.SIGKILL, group=False, delay=0.0, timeout=90):
    "Send `sig` to `p` (or its whole group) as soon as `moment(mask, name)` is true for a file event in `run_dir`."
    deadline = time.monotonic() + timeout
    while not run_dir.is_dir():  # a new run creates its directory after building data and model
        assert p.poll() is None, f"exited {p.returncode} before {run_dir} existed: {p.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    w = Watch(run_dir)
    try:
        while True:
            assert p.poll() is None, f"the run ended ({p.returncode}) before the moment came: {p.stderr.read()}"
            assert time.monotonic() < deadline, "the moment never came"
            if any(moment(mask, name) for mask, name in w.events(0.2)): break
    finally: w.close()
    if delay: time.sleep(delay)
    (os.killpg if group else os.kill)(p.pid, sig)

def csv_rows_reach(n: int, run_dir: Path):
    "The moment metrics.csv has n rows."
    def moment(mask, name):
        if name != "metrics.csv": return False
        try: return len((run_dir/"metrics.csv").read_text().splitlines()) - 1 >= n
        except FileNotFoundError: return False
    return moment

def resume(cwd: Path, run_dir: Path, *extra) -> subprocess.Popen: return start(cwd, "train", "--resume", run_dir, *extra)

def run(cwd: Path, *args):
    "Run `mlpipe ARGS` to its end; (code, stdout, stderr)."
    return finish(start(cwd, *args))


# ---- tests -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_rerun_is_identical(work, workers):
    "Same config and seed: the same metrics.csv (but seconds) and bit-identical checkpoints, with 0 or 2 loader workers."
    extra = [WORKERS2] if workers else []
    code, out, err = run(work, "train", "config.yaml", *ARGS, *extra, f"run_name=rerun{workers}")
    assert code == 0, err
    assert_same_run(work/f"checkpoint/log_rerun{workers}", work/"checkpoint/log_ref")


def kill_mid_write(start_run, run_dir: Path):
    """Start a run with `start_run()` and SIGKILL it certainly in the middle of writing last.pt; returns the process
    and the start of what it wrote. The temp name of its first save (`.last.pt.tmp<pid>`) is made a named pipe with a
    4 KB buffer, so torch.save blocks in a write after 8 KB at most; then it is killed.
    The pipe must be made after the run's start-up removes killed writers' temp files and before its first save: a
    decoy temp file is left for that removal, and the run is stopped (SIGSTOP) the moment the decoy goes, while the
    pipe is made. No race: a save comes only after an epoch of training."""
    decoy = run_dir/".last.pt.tmp0"
    decoy.write_bytes(b"")
    p = start_run()
    fifo = run_dir/f".last.pt.tmp{p.pid}"
    signal_when(p, run_dir, lambda mask, name: mask & IN_DELETE and name == decoy.name, sig=signal.SIGSTOP)
    try:
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)  # before the writer can fill the default 64 KB
    finally: os.kill(p.pid, signal.SIGCONT)
    try:
        data, deadline = b"", time.monotonic() + 90
        while len(data) < 4096:
            assert p.poll() is None, f"the run ended ({p.returncode}) before its next save: {p.stderr.read()}"
            assert time.monotonic() < deadline, "no next save"
            if select.select([fd], [], [], 0.2)[0]:
                data += os.read(fd, 4096 - len(data)) or time.sleep(0.01) or b""  # b"": no writer yet
        os.kill(p.pid, signal.SIGKILL)
    finally: os.close(fd)
    return p, data


def test_sigkill_at_any_moment_then_resume_is_bit_identical(work):
    "One run killed with SIGKILL five times at different moments, resumed each time, ends as if never killed."
    run_dir, seen = work/"checkpoint/log_killed", []
    # 1. right after the CSV row of epoch 2 is written: before (or while) epoch 2's checkpoint is saved
    p = start(work, "train", "config.yaml", *ARGS, "run_name=killed")
    signal_when(p, run_dir, csv_rows_reach(2, run_dir))
    seen.append(finish(p))
    # 2. as soon as the temp file of a checkpoint appears: a race, which lands in the middle of the write (an empty or
    # whole temp file left behind) about half the time on this machine, else just after the rename
    p = resume(work, run_dir)
    signal_when(p, run_dir, lambda mask, name: mask & IN_CREATE and name.startswith(".last.pt.tmp"))
    seen.append(finish(p))
    # 3. after last.pt.bak or best.pt were relinked, before the new last.pt is renamed into place
    p = resume(work, run_dir)
    signal_when(p, run_dir, lambda mask, name: mask & IN_MOVED_TO and name in ("last.pt.bak", "best.pt"))
    seen.append(finish(p))
    # 4. certainly in the middle of writing a checkpoint
    p, written = kill_mid_write(lambda: resume(work, run_dir), run_dir)
    assert written.startswith(b"PK")  # torch.save was writing its zip
    seen.append(finish(p))
    # 5. in the middle of an epoch, with two loader workers
    p = resume(work, run_dir, WORKERS2)
    signal_when(p, run_dir, lambda mask, name: mask & IN_MOVED_TO and name == "last.pt", delay=0.05)
    seen.append(finish(p))
    # and on to the end
    code, out, err = finish(resume(work, run_dir))
    assert code == 0, err
    assert [c for c, _, _ in seen] == [-signal.SIGKILL] * 5
    assert_same_run(run_dir, work/"checkpoint/log_ref")


def test_truncated_last_pt_resumes_from_the_backup(work):
    "A last.pt cut short is detected; --resume says so and uses last.pt.bak (epoch 7), then ends as the reference."
    run_dir = work/"checkpoint/log_truncated"
    shutil.copytree(work/"checkpoint/log_ref", run_dir)
    last = run_dir/"last.pt"
    last.write_bytes(last.read_bytes()[:last.stat().st_size // 2])
    code, out, err = run(work, "train", "--resume", run_dir)
    assert code == 0, err
    warning = [l for l in err.splitlines() if l.startswith("warning:")]
    assert len(warning) == 1 and f"{last} is truncated or corrupt" in warning[0], err
    assert warning[0].endswith(f"resuming from {run_dir/'last.pt.bak'} (after epoch 7)")
    assert_same_run(run_dir, work/"checkpoint/log_ref")


def test_checkpoints_hold_only_tensors_and_plain_values(work):
    "Every checkpoint loads with weights_only=True, and every torch.load in the package passes weights_only=True."
    files = sorted((work/"checkpoint/log_ref").glob("*.pt*"))
    assert [f.name for f in files] == ["best.pt", "last.pt", "last.pt.bak"]
    for f in files:
        for key, v in flat(torch.load(f, weights_only=True)).items():
            assert isinstance(v, (torch.Tensor, str, int, float, bool, type(None))), (f, key, type(v))
    calls = [(p.name, m.group(0)) for p in (REPO/"mlpipe").glob("*.py") for m in re.finditer(r"torch\.load\([^)]*\)", p.read_text())]
    assert calls and all("weights_only=True" in c for _, c in calls), calls


@pytest.mark.parametrize("sig, workers, group", [(signal.SIGTERM, 0, False), (signal.SIGINT, 2, True)],
                         ids=["SIGTERM-to-the-process", "SIGINT-to-the-group-with-workers"])
def test_signal_stops_after_the_step_with_a_checkpoint(work, sig, workers, group):
    "SIGTERM (from a scheduler) or SIGINT (Ctrl-C, to the whole process group): stop, save, exit 128+sig; resume exactly."
    name = f"sig{int(sig)}"
    run_dir = work/f"checkpoint/log_{name}"
    p = start(work, "train", "config.yaml", *ARGS, *([WORKERS2] if workers else []), f"run_name={name}")
    signal_when(p, run_dir, csv_rows_reach(1, run_dir), sig=sig, group=group, delay=0.05)
    code, out, err = finish(p)
    assert code == 128 + sig, err
    rel = run_dir.relative_to(work)  # as the user's command line named it
    assert "Traceback" not in err and err.strip().endswith(f"resume with: mlpipe train --resume {rel}"), err
    stopped = re.search(rf"stopped by {sig.name} in epoch (\d+) at step (\d+)", err)
    assert stopped, err
    state = torch.load(run_dir/"last.pt", weights_only=True)
    assert state["step"] == int(stopped.group(2))  # saved where it stopped, even in the middle of an epoch
    status = (run_dir/"status.json").read_text()
    assert '"status": "stopped"' in status and f"stopped by {sig.name}" in status
    code, out, err = finish(resume(work, run_dir))
    assert code == 0, err
    assert_same_run(run_dir, work/"checkpoint/log_ref")


def test_full_disk_stops_with_one_error_line_and_keeps_the_last_checkpoint(work):
    "Writes past a file size limit fail (EFBIG, as ENOSPC on a full disk): one error line, exit 1, last.pt intact."
    run_dir = work/"checkpoint/log_full"
    p = start(work, "train", "config.yaml", *ARGS, "run_name=full")
    # Once epoch 1 is saved, no file of the process may grow past half a checkpoint (metrics.csv stays far below).
    # Stopped meanwhile: on a busy machine this test may not run again before the run's end.
    signal_when(p, run_dir, lambda mask, name: mask & IN_MOVED_TO and name == "last.pt", sig=signal.SIGSTOP)
    half = (run_dir/"last.pt").stat().st_size // 2
    resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (half, resource.RLIM_INFINITY))
    os.kill(p.pid, signal.SIGCONT)
    code, out, err = finish(p)
    assert code == 1, err
    lines = [l for l in err.strip().splitlines() if not l.startswith("epoch ")]  # the lines of the epochs it trained
    assert len(lines) == 1 and lines[0].startswith("error: [Errno 27] File too large: could not write "), err
    assert lines[0].endswith("; the previous last.pt is intact"), err
    state = torch.load(run_dir/"last.pt", weights_only=True)
    assert state["epoch"] >= 1 and not list(run_dir.glob(".*tmp*"))
    assert '"status": "failed"' in (run_dir/"status.json").read_text()
    code, out, err = finish(resume(work, run_dir))
    assert code == 0, err
    assert_same_run(run_dir, work/"checkpoint/log_ref")


# ---- step checkpoints and --resume auto --------------------------------------------------------------------------

STEPS = "checkpoint.every_steps=3"  # 20 steps an epoch: a kill loses 2 steps at most, not the epoch

def test_step_checkpoints_sigkill_at_10_random_moments_then_resume_is_bit_identical(work):
    """`checkpoint.every_steps`: ten SIGKILLs at random moments (a random delay after the process's first checkpoint
    began, so each kill lands in training: in a step, between steps, in a save), each followed by a resume (0 or 2
    loader workers); the run ends as the reference that never saved mid-epoch and was never killed."""
    import random
    rng, run_dir = random.Random(int(os.environ.get("MLPIPE_KILL_SEED", 20261201))), work/"checkpoint/log_steps"
    ref_seconds = sum(float(r["seconds"]) for r in csv.DictReader(open(work/"checkpoint/log_ref/metrics.csv")))
    first_save = lambda mask, name: mask & IN_CREATE and name.startswith(".last.pt.tmp")
    p, kills = start(work, "train", "config.yaml", *ARGS, STEPS, "run_name=steps"), []
    for i in range(10):
        delay = rng.uniform(0, ref_seconds / 12)
        signal_when(p, run_dir, first_save, delay=delay)
        code, _, err = finish(p)
        assert code == -signal.SIGKILL, f"kill {i + 1}: the run ended ({code}) first: {err[-2000:]}"
        mid_write = [f.name for f in run_dir.glob(".last.pt.tmp*")]
        state = torch.load(run_dir/"last.pt", weights_only=True)
        kills.append((delay, state["epoch"], state["step"], bool(state["partial"]), mid_write))
        p = resume(work, run_dir, *([WORKERS2] if i % 2 == 0 else []))
    code, out, err = finish(p)
    assert code == 0, err
    for i, (delay, epoch, step, partial, tmp) in enumerate(kills, 1):
        print(f"kill {i:2}: {delay:.2f}s after the first save began; last.pt at step {step} "
              f"({'in epoch ' + str(epoch + 1) if partial else 'after epoch ' + str(epoch)}){'; a temp file left' if tmp else ''}")
    froms = [json.loads(l)["from_step"] for l in (run_dir/"resumes.jsonl").read_text().splitlines()]
    assert len(froms) == 10 and any(s % 20 for s in froms), froms  # some resumes went on from the middle of an epoch
    assert_same_run(run_dir, work/"checkpoint/log_ref")


def test_resume_auto_starts_a_run_then_continues_it_until_it_is_finished(work):
    "`--resume auto`, the same command each time: a new run; killed, it is continued (not a second run); once finished, a new one."
    auto = ["train", "config.yaml", *ARGS, "run_name=auto", "--resume", "auto"]
    run_dir = work/"checkpoint/log_auto"
    p = start(work, *auto)
    signal_when(p, run_dir, csv_rows_reach(3, run_dir))
    assert finish(p)[0] == -signal.SIGKILL
    code, out, err = run(work, *auto)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "checkpoint/log_auto"
    assert_same_run(run_dir, work/"checkpoint/log_ref")
    resumed = [json.loads(l) for l in (run_dir/"resumes.jsonl").read_text().splitlines()]
    assert len(resumed) == 1 and resumed[0]["overrides"] == [], resumed
    # finished: the same command begins a new run (train.epochs may change: a resume could change it too)
    code, out, err = run(work, *auto[:-2], "train.epochs=1", "--resume", "auto")
    assert code == 0, err
    new = work/out.strip().splitlines()[-1]
    assert new != run_dir and new.name.startswith("log_auto") and len(rows(new)[1]) == 1
    assert len(rows(run_dir)[1]) == 8
    # both runs are of the same experiment (the key leaves out what a resume may change)
    assert json.loads((new/"env.json").read_text())["config_key"] == json.loads((run_dir/"env.json").read_text())["config_key"]
