"""`mlpipe export` as a user runs it: real subprocesses on one trained digits run.

The safetensors file is read with `safetensors.torch.load_file` into a model built from model.json alone; the ONNX
graph is run with onnxruntime alone. Both are compared with the run's own model on the real val images."""
import json, re
from pathlib import Path
import numpy as np
import pytest
import torch
from conftest import TINY, new_project, run_mlpipe, ok

pytest.importorskip("safetensors")

@pytest.fixture(scope="module")
def work(tmp_path_factory, digits_raw):
    "A project with one finished run, `ex`."
    d = new_project(tmp_path_factory.mktemp("export"), digits_raw)
    ok(run_mlpipe("run", "config.yaml", *TINY, "run_name=ex", cwd=d))
    return d

def val_batch(work: Path):
    "The val split's images (as validation reads them) and the run's model."
    from mlpipe.dataset import ManifestDataset, collate
    from mlpipe.predict import Predictor
    ds = ManifestDataset(work/"data/processed/v1/manifest.csv", "val", [])
    return collate([ds[i] for i in range(len(ds))])["x"], Predictor.from_run(work/"checkpoint/log_ex").model


def test_safetensors_loads_into_a_model_built_from_model_json(work):
    from safetensors.torch import load_file
    from mlpipe.model import build_model
    r = ok(run_mlpipe("export", "ex", cwd=work))  # the run name `mlpipe runs` prints; safetensors by default
    out = work/"checkpoint/log_ex/export"
    assert r.stdout.strip().splitlines()[-1] == str(Path("checkpoint/log_ex/export"))
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "model.json", "model.safetensors"]
    spec = json.loads((out/"model.json").read_text())
    assert spec["n_outputs"] == 10 and spec["model"]["backbone"]["name"] == "small_cnn" and spec["info"]["in_shape"] == [1, 8, 8]
    assert json.loads((out/"labels.json").read_text())["classes"] == [str(k) for k in range(10)]
    fresh = build_model(spec["model"], spec["n_outputs"], spec["info"])
    fresh.load_state_dict(load_file(str(out/"model.safetensors")))
    x, model = val_batch(work)
    with torch.no_grad(): assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_onnx_matches_torch_on_the_val_split_with_a_dynamic_batch(work, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path/"onnx"
    r = ok(run_mlpipe("export", "checkpoint/log_ex", "--format", "onnx", "--out", out, cwd=work))
    assert r.stdout.strip().splitlines()[-1] == str(out)
    x, model = val_batch(work)
    m = re.search(r"^onnx check: (\d+) val items, max \|Δ\| (\S+), argmax identical on (\d+)/(\d+)$", r.stderr, re.M)
    assert m and int(m[1]) == len(x) and float(m[2]) <= 1e-4 and m[3] == m[4] == m[1], r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["labels.json", "model.json", "model.onnx"]
    sess = ort.InferenceSession(str(out/"model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"] and sess.get_inputs()[0].shape[0] == "batch"
    for size in (1, 7):  # the batch dimension is dynamic
        for i in range(0, len(x), size):
            xb = x[i:i + size]
            with torch.no_grad(): ref = model.eval()(xb).numpy()
            got = sess.run(["y"], {"x": xb.numpy()})[0]
            assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-4
            assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_a_bad_ref_or_format_is_one_line_and_writes_nothing(work, tmp_path):
    for args in (["nope:v1"], ["checkpoint/log_nope"], ["ex", "--format", "tflite"]):
        r = run_mlpipe("export", *args, "--out", tmp_path/"out", cwd=work)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, r.stderr)
        assert not (tmp_path/"out").exists() and r.stdout == ""
    assert "safetensors or onnx" in lines[0]


def test_export_a_registered_version(work):
    assert ok(run_mlpipe("register", "ex", "--name", "digits", cwd=work)).stdout.strip() == "digits:v1"
    version = work/"registry/digits/v1"
    assert "model.safetensors" in (version/"SHA256SUMS").read_text()  # the registry keeps safetensors weights, checked
    r = ok(run_mlpipe("export", "digits:v1", cwd=work))
    out = work/"export/digits-v1"
    assert r.stdout.strip().splitlines()[-1] == str(Path("export/digits-v1"))
    from safetensors.torch import load_file
    mine, kept = load_file(str(out/"model.safetensors")), load_file(str(version/"model.safetensors"))
    assert mine.keys() == kept.keys() and all(torch.equal(mine[k], kept[k]) for k in mine)  # the same tensors
    assert json.loads((out/"model.json").read_text())["source"]["checkpoint"] == "model.pt"
