"""ONNX export: graphs, manifest, and agreement with PyTorch on real face crops."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from facecycle.export import export_onnx, sha256_file  # noqa: E402
from facecycle.model import FaceCycle  # noqa: E402
from facecycle.preprocess import from_output, to_input  # noqa: E402

from .conftest import shared_video  # noqa: E402
from .realdata import center_face_crops  # noqa: E402


def _run_both(model, out, crops):
    x = to_input(crops)
    sess = {g: ort.InferenceSession(str(out / f"{g}.onnx"), providers=["CPUExecutionProvider"])
            for g in ("analyze", "neutralize", "reexpress", "identity") if (out / f"{g}.onnx").exists()}
    names = ["feature", "code", "flow", "backflow", "intensity"]
    got = dict(zip(names, sess["analyze"].run(None, {"image": x}), strict=True))
    with torch.no_grad():
        ref = model.analyze(torch.from_numpy(x))
        errs = {k: float(np.abs(getattr(ref, k).numpy() - got[k]).max()) for k in got}
        neutral = sess["neutralize"].run(None, {"image": x, "flow": got["flow"]})[0]
        errs["neutral"] = float(np.abs(model.neutralize(torch.from_numpy(x), ref.flow).numpy() - neutral).max())
        re = sess["reexpress"].run(None, {"neutral": neutral, "backflow": got["backflow"]})[0]
        errs["reexpress"] = float(np.abs(
            model.reexpress(torch.from_numpy(neutral), ref.backflow).numpy() - re).max())
        if "identity" in sess:
            idc = sess["identity"].run(None, {"image": x})[0]
            errs["identity"] = float(np.abs(model.identity(torch.from_numpy(x)).numpy() - idc).max())
    return errs


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_torch_on_real_crops(tiny_export, batch):
    model, out = tiny_export
    crops = center_face_crops(shared_video("videoretalking_face_1.mp4"), batch, model.config.image_size)
    errs = _run_both(model, out, crops)
    assert set(errs) >= {"feature", "code", "flow", "backflow", "intensity", "neutral", "reexpress", "identity"}
    assert max(errs.values()) <= 1e-4, errs


def test_paper_config_analyze_matches_on_real_crops(tmp_path):
    torch.manual_seed(0)
    model = FaceCycle("paper", modules=("codegeneration", "exptoflow", "Swap_Generator")).eval()
    export_onnx(model, tmp_path, graphs=["analyze", "neutralize", "reexpress"])
    crops = center_face_crops(shared_video("pyfeat_single_face.mp4"), 5, 64)
    for b in (1, 5):
        errs = _run_both(model, tmp_path, crops[:b])
        assert max(errs[k] for k in ("feature", "code", "flow", "backflow", "intensity")) <= 1e-4, errs
        # an untrained paper generator outputs values ~1e2: compare relative to that scale
        with torch.no_grad():
            scale = float(model.neutralize(torch.from_numpy(to_input(crops[:b]))).abs().max())
        assert max(errs["neutral"], errs["reexpress"]) <= 1e-4 * max(1.0, scale), (errs, scale)


def test_manifest_describes_graphs(tiny_export):
    model, out = tiny_export
    man = json.loads((out / "manifest.json").read_text())
    assert man["opset"] >= 17 and man["config"]["name"] == "tiny"
    assert man["input"]["mean"] == list(model.config.mean) and man["input"]["color"] == "RGB"
    for name, g in man["graphs"].items():
        assert g["sha256"] == sha256_file(out / g["file"])
        sess = ort.InferenceSession(str(out / g["file"]), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [i["name"] for i in g["inputs"]]
        assert [o.name for o in sess.get_outputs()] == [o["name"] for o in g["outputs"]]
        for i in sess.get_inputs():
            assert isinstance(i.shape[0], str)  # dynamic batch axis
        v = man["validation"][name]
        assert v["max_abs_err"] <= 1e-4 * max(1.0, v["output_scale"])


def test_single_file_graphs_with_no_external_data(tiny_export):
    _, out = tiny_export
    assert sorted(p.name for p in out.iterdir()) == [
        "analyze.onnx", "identity.onnx", "manifest.json", "neutralize.onnx", "reexpress.onnx"]


def test_preprocess_round_trip():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    x = to_input(crops)
    assert x.shape == (3, 3, 8, 8) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(from_output(x), crops)
    with pytest.raises(ValueError, match="RGB"):
        to_input(np.zeros((2, 8, 8), np.uint8))


def test_cli_export_random_config(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facecycle", "export", "--random-config", "tiny", "--out",
                        str(tmp_path / "m"), "--graphs", "analyze"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "analyze" in r.stdout and (tmp_path / "m" / "manifest.json").is_file()


def test_cli_export_unknown_config_is_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facecycle", "export", "--random-config", "nope", "--out",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown config" in r.stderr and "Traceback" not in r.stderr
