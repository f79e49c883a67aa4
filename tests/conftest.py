"Shared fixtures: a small real data set (scikit-learn's digits) written as a class-folder tree of PNG files."
import os, shutil, signal, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

def write_digit_pngs(dest: Path, per_class: int):
    "The first `per_class` digits of each class as 8x8 PNGs in dest/<label>/<index>.png."
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    for label in range(10):
        idx = np.flatnonzero(d.target == label)[:per_class]
        (dest/str(label)).mkdir(parents=True, exist_ok=True)
        for i in idx: Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).save(dest/str(label)/f"{i:04d}.png")
    return dest

@pytest.fixture(scope="session")
def digits_raw(tmp_path_factory):
    "40 real digits per class (400 PNGs)."
    return write_digit_pngs(tmp_path_factory.mktemp("raw")/"digits", 40)

def child_pids() -> dict[int, list[int]]:
    "{parent pid: [its children's pids]} of every process, from /proc."
    children = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit(): continue
        try: children.setdefault(int((d/"stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(d.name))
        except (OSError, ValueError, IndexError): continue
    return children

def descendants(pid: int) -> list[int]:
    "Every process below `pid` (children, their children, …)."
    children, found, todo = child_pids(), [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids; todo += kids
    return found

def kill_group(p: subprocess.Popen):
    """SIGKILL `p`, every process below it, and their sessions. torchrun starts each worker in a session of its own,
    so killing `p`'s session alone (started with `start_new_session=True`) would leave them running. Nothing once `p`
    has ended: its pid, and those of the orphans it left, may be another process's by then (pytest runs two files at once)."""
    if p.poll() is not None: return
    for pid in [*descendants(p.pid), p.pid]:  # found before anything dies: an orphan's parent is no longer known
        for kill in (os.killpg, os.kill):
            try: kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError): pass

def run_group(cmd, *, timeout, **kw) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=…)` in a session of its own: on a timeout the whole
    group is killed, torchrun's workers with their agent, so no process outlives its test (a hung job's workers,
    orphaned by `subprocess.run`'s kill of their agent alone, ran on beside the later tests)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kw) as p:
        try: out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p); out, err = p.communicate(timeout=30)
            raise subprocess.TimeoutExpired(cmd, timeout, out, err) from None
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)

def run_mlpipe(*args, cwd, timeout=300, env=None):
    "Run the `mlpipe` command as a user would, in a subprocess (`env`: variables to add)."
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    env.pop("MLPIPE_DEBUG", None)
    return run_group([sys.executable, "-m", "mlpipe", *map(str, args)], cwd=cwd, timeout=timeout, env=env)

# Small, fast settings on top of the repository's own config.yaml.
TINY = ["augment.workers=1", "augment.copies=1", "train.epochs=2", "train.progress=false",
        "model.backbone={name: small_cnn, channels: [8, 16]}", "early_stop.patience=null"]

def ok(r):
    "Assert a `run_mlpipe` result exited 0 (its stderr as the message); returns it."
    assert r.returncode == 0, r.stderr
    return r

def new_project(root: Path, digits_raw: Path) -> Path:
    "A user's project folder at `root`: the repo's config.yaml and the raw digits in data/raw/digits."
    shutil.copy(REPO/"config.yaml", root/"config.yaml")
    shutil.copytree(digits_raw, root/"data/raw/digits")
    return root

@pytest.fixture
def project(tmp_path, digits_raw):
    "A fresh project folder for one test."
    return new_project(tmp_path, digits_raw)
