"""kill -9 safety of the augmentation stage.

`augment` runs in a subprocess on a few thousand raw images and is SIGKILLed (with its worker processes) at several
moments; reruns must then produce a whole manifest (it parses, has the right number of rows, every path exists and
decodes), identical to an uninterrupted run, and leave no temporary file behind. A run killed after a complete run
must leave the previous manifest byte-for-byte intact.
"""
import csv, hashlib, json, os, signal, subprocess, sys, time, warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlpipe.augmentation import assign_split, augment

N_RAW = 2000
CFG = dict(recipe={"image": [{"name": "whiten"}, {"name": "rotate", "degrees": 10}, {"name": "flip"}]},
           copies=1, seed=0, version="v1", workers=2)
RUN = "import sys, json; from mlpipe.augmentation import augment; augment(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3]))"


def make_raw(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / str(i % 10) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(path)
    return root


def n_files(out: Path) -> int:
    items = out / "items"
    return sum(len(files) for _, _, files in os.walk(items)) if items.is_dir() else 0


def run_and_kill(raw: Path, out: Path, cfg: dict, when) -> None:
    "Start augment in a new process group and SIGKILL the whole group once `when()` is true."
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(raw), str(out), json.dumps(cfg)],
                            start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not when() and time.monotonic() < deadline: time.sleep(0.05)
    if proc.poll() is None: os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "augment finished before it could be killed: raise N_RAW"


def sha(p: Path) -> str: return hashlib.sha256(p.read_bytes()).hexdigest()


def check_whole(out: Path, raw: Path, cfg: dict) -> list[dict]:
    "The manifest parses, has one row per expected copy, every path exists and decodes, and no temp file is left."
    with open(out / "manifest.csv", newline="") as f: rows = list(csv.DictReader(f))
    n_train = sum(assign_split(f"{i % 10}/{i:05d}.png", None, cfg["seed"]) == "train" for i in range(N_RAW))
    assert len(rows) == N_RAW + cfg["copies"] * n_train
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        Image.open(out / r["path"]).load()  # a half-written PNG would fail here
    assert [p.name for p in out.rglob("*.tmp*")] == []  # temp files are .<name>.tmp<pid>
    assert sorted(p.name for p in out.iterdir() if "manifest" in p.name) == ["manifest.csv"]
    return rows


def files_of(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): sha(p) for p in sorted((out / "items").rglob("*")) if p.is_file()}


@pytest.mark.filterwarnings("ignore")
def test_kill9_then_rerun_gives_whole_manifest(tmp_path):
    raw, out = make_raw(tmp_path / "raw", N_RAW), tmp_path / "out"
    run_and_kill(raw, out, CFG, lambda: n_files(out) > N_RAW // 3)   # 1: during the first run
    assert not (out / "manifest.csv").exists()
    run_and_kill(raw, out, CFG, lambda: n_files(out) > N_RAW)        # 2: during the rerun, most files there
    rep = augment(raw, out, **CFG)                                    # 3: rerun to the end
    assert rep.n_cached > N_RAW // 3                                  # the killed runs' files were reused
    rows = check_whole(out, raw, CFG)

    ref = tmp_path / "ref"                                            # an uninterrupted run for comparison
    augment(raw, ref, **CFG)
    assert sha(out / "manifest.csv") == sha(ref / "manifest.csv")
    assert files_of(out) == files_of(ref)

    # 4: kill a run with another recipe: the complete manifest of step 3 must survive untouched
    before, n_before = sha(out / "manifest.csv"), n_files(out)
    cfg2 = {**CFG, "recipe": {"image": [{"name": "whiten"}, {"name": "rotate", "degrees": 25}]}}
    run_and_kill(raw, out, cfg2, lambda: n_files(out) > n_before + 300)
    assert sha(out / "manifest.csv") == before
    assert all((out / r["path"]).is_file() for r in rows)
    augment(raw, out, **cfg2)
    check_whole(out, raw, cfg2)
