"""The light install, as a new user does it: a fresh virtualenv, torch, then `pip install mlpipe` (the core only).

`mlpipe demo` then says in one line what to install, with no traceback; after `pip install 'mlpipe[demo]'`,
`mlpipe demo && mlpipe run config.yaml` trains. No dev tool (nbdev, pytest, MLflow, TensorBoard, Jupyter) is
installed or needed. Prints what each step installed and took (the README's figures come from the same steps)."""
import os, shutil, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import REPO

def _sh(*cmd, cwd=None, env=None, timeout=900):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)

def _size_mb(venv: Path) -> float:
    return sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6

@pytest.mark.slow
def test_core_install_then_demo(tmp_path):
    src = tmp_path/"src"  # the package as pip gets it: the tracked files, nothing built in the repository
    files = _sh("git", "ls-files", cwd=REPO).stdout.split()
    for f in files:
        if (REPO/f).is_file(): (src/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(REPO/f, src/f)
    venv = tmp_path/"venv"
    assert _sh(sys.executable, "-m", "venv", venv).returncode == 0
    pip, mlpipe = venv/"bin/pip", venv/"bin/mlpipe"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    t0 = time.perf_counter()
    r = _sh(pip, "install", "-q", "torch==2.13.0", env=env); assert r.returncode == 0, r.stderr[-2000:]
    t_torch, size_torch = time.perf_counter() - t0, _size_mb(venv)
    r = _sh(pip, "install", "-q", src, env=env); assert r.returncode == 0, r.stderr[-2000:]
    t_core, size_core = time.perf_counter() - t0 - t_torch, _size_mb(venv)
    listed = _sh(pip, "list", "--format=freeze", env=env).stdout.lower()
    for dev in ("nbdev", "pytest", "mlflow", "tensorboard", "scikit-learn", "ipykernel"): assert f"\n{dev}==" not in "\n" + listed, dev
    project = tmp_path/"project"; project.mkdir()
    shutil.copy(REPO/"config.yaml", project/"config.yaml")
    r = _sh(mlpipe, "--version", cwd=project, env=env); assert r.returncode == 0 and r.stdout.startswith("mlpipe "), r.stderr
    r = _sh(mlpipe, "demo", cwd=project, env=env)  # no scikit-learn yet: one line naming the pip command
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "pip install 'mlpipe[demo]'" in r.stderr, r.stderr
    t1 = time.perf_counter()
    r = _sh(pip, "install", "-q", f"{src}[demo]", env=env); assert r.returncode == 0, r.stderr[-2000:]
    t_demo, size_demo = time.perf_counter() - t1, _size_mb(venv)
    r = _sh(mlpipe, "demo", cwd=project, env=env); assert r.returncode == 0, r.stderr
    r = _sh(mlpipe, "run", "config.yaml", "train.epochs=1", "augment.copies=0", cwd=project, env={**env, "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr
    run = project/r.stdout.strip().splitlines()[-1]
    assert (run/"best.pt").is_file() and (run/"metrics.csv").read_text().count("\n") == 2
    print(f"\ntorch: {size_torch:.0f} MB in {t_torch:.0f} s; + mlpipe core: {size_core - size_torch:.0f} MB in {t_core:.0f} s "
          f"({len(listed.split())} packages); + demo (scikit-learn): {size_demo - size_core:.0f} MB in {t_demo:.0f} s")
