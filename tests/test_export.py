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


def test_a_failed_export_leaves_the_model_already_in_its_folder_whole(tmp_path):
    """An export into a folder holding a model, failing its validation, deleted that model's manifest and
    overwrote its graphs first: the folder no longer loaded. Graphs are now written and checked aside."""
    from facecycle_cli import main

    m = tmp_path / "m"
    assert main(["export", "--random-config", "tiny", "--graphs", "analyze", "--out", str(m)]) == 0
    before = {q.name: q.read_bytes() for q in m.iterdir()}
    assert main(["export", "--random-config", "tiny", "--seed", "5", "--graphs", "analyze", "--atol", "0",
                 "--out", str(m)]) == 5  # no graph matches torch to 0
    assert {q.name: q.read_bytes() for q in m.iterdir()} == before  # nothing left aside either
    assert main(["export", "--random-config", "tiny", "--atol", "-1", "--out", str(m)]) == 2


def test_cli_export_unknown_config_is_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "facecycle", "export", "--random-config", "nope", "--out",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown config" in r.stderr and "Traceback" not in r.stderr


def test_cli_export_ships_the_emotion_head_beside_the_checkpoint(tmp_path):
    """`facecycle export --checkpoint` wrote the graphs only: re-exporting the shipped model (another opset, say) or
    a training run gave a model whose CSV had empty emotion columns, silently. The head beside the checkpoint (a
    model folder's expression_head.safetensors or a training run's head.safetensors) now goes with the graphs;
    --head names another, --no-head leaves it out, and a head of another feature size is refused before any
    export work."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from facecycle.checkpoint import save_checkpoint
    from facecycle.model import FaceCycle
    from realtime.heads import ExpressionHead

    torch.manual_seed(0)
    model = FaceCycle("tiny").eval()
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(model, run / "last.safetensors")
    fc = {"fc.weight": torch.randn(7, model.config.feature_dim), "fc.bias": torch.randn(7)}
    save_file(fc, str(run / "head.safetensors"))  # as `facecycle train --stage semisup` writes it

    def export(*extra):
        return subprocess.run([sys.executable, "-m", "facecycle", "export", "--checkpoint",
                               str(run / "last.safetensors"), "--out", str(tmp_path / "m"), "--graphs", "analyze",
                               *extra],
                              capture_output=True, text=True)

    r = export()
    assert r.returncode == 0, r.stderr
    head = ExpressionHead.load(tmp_path / "m" / "expression_head.safetensors")
    assert list(head.classes) == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    np.testing.assert_allclose(head.weight, fc["fc.weight"].numpy(), rtol=0, atol=0)
    assert "emotion head from" in r.stdout
    r = export("--no-head")  # the folder's earlier head belongs to that export: gone
    assert r.returncode == 0 and not (tmp_path / "m" / "expression_head.safetensors").exists(), r.stderr
    save_file({"fc.weight": torch.randn(7, 5), "fc.bias": torch.randn(7)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "m").rename(tmp_path / "m_old")
    r = export("--head", str(tmp_path / "other.safetensors"))
    assert r.returncode == 3 and "5-d features" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "m").exists()  # refused before the export started
    from facecycle.probe.linear import Head, save_head  # a pose head has the same layout: 3 rows, task pose

    d = model.config.feature_dim
    save_head(Head(np.zeros((3, d)), np.zeros(3), np.zeros(d), np.ones(d),
                   {"task": "pose", "classes": '["yaw", "pitch", "roll"]'}), tmp_path / "pose.safetensors")
    r = export("--head", str(tmp_path / "pose.safetensors"))
    assert r.returncode == 3 and "not an emotion head" in r.stderr and not (tmp_path / "m").exists(), r.stderr


def _tiny_checkpoint(path, seed: int = 0, **kw):
    import torch

    from facecycle.checkpoint import save_checkpoint
    from facecycle.model import FaceCycle

    torch.manual_seed(seed)
    m = FaceCycle("tiny", **kw).eval()
    save_checkpoint(m, path)
    return m, path


def _analyze_both(out):
    from engines import open_backend

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with open_backend(out, "onnxruntime") as a, open_backend(out, "torch") as b:
        return a.run("analyze", {"image": x}), b.run("analyze", {"image": x})


def test_export_ships_its_weights_and_the_torch_backend_refuses_others(tmp_path):
    """An export into a folder holding an earlier model's model.safetensors left it there: `--backend torch` then
    ran those weights while ONNX Runtime ran the new graphs (the two disagreed on the same clip), and a fresh
    export had no weights at all. The export now writes the weights it exported from, recorded by sha256 in the
    manifest, removes other weights files, and the PyTorch backend refuses weights that differ."""
    from engines import open_backend
    from facecycle.errors import ModelError
    from facecycle_cli import main

    out = tmp_path / "m"
    _, old = _tiny_checkpoint(tmp_path / "old.safetensors", seed=1)
    _, new = _tiny_checkpoint(tmp_path / "new.safetensors", seed=0)
    out.mkdir()
    (out / "model.safetensors").write_bytes(old.read_bytes())  # an earlier export's weights
    (out / "weights.safetensors").write_bytes(old.read_bytes())
    assert main(["export", "--checkpoint", str(new), "--out", str(out), "--graphs", "analyze", "--no-head"]) == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["weights"]["file"] == "model.safetensors"
    assert man["weights"]["sha256"] == sha256_file(out / "model.safetensors")
    assert not (out / "weights.safetensors").exists()
    ort_out, torch_out = _analyze_both(out)
    for k in ort_out:
        np.testing.assert_allclose(torch_out[k], ort_out[k], atol=1e-4, rtol=0)
    (out / "model.safetensors").write_bytes(old.read_bytes())  # replaced after the export
    with pytest.raises(ModelError, match="model.safetensors: sha256 .* was replaced.*facecycle export"):
        open_backend(out, "torch")


def test_export_refuses_a_checkpoint_of_some_modules_before_making_the_folder(tmp_path, capsys):
    """A checkpoint holding only codegeneration was exported into an empty folder and crashed (AttributeError)."""
    from facecycle_cli import main

    _, ck = _tiny_checkpoint(tmp_path / "enc.safetensors", modules=["codegeneration"])
    out = tmp_path / "m"
    assert main(["export", "--checkpoint", str(ck), "--out", str(out)]) == 5
    err = capsys.readouterr().err
    assert "no exptoflow, Swap_Generator" in err and "analyze, neutralize, reexpress" in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    _, ck = _tiny_checkpoint(tmp_path / "motion.safetensors", modules=["codegeneration", "exptoflow",
                                                                       "Swap_Generator"])
    assert main(["export", "--checkpoint", str(ck), "--out", str(out), "--graphs", "identity"]) == 5
    assert "no idcodegen, Swap_Norm" in capsys.readouterr().err and not out.exists()


def test_export_into_an_unwritable_folder_is_an_output_error(tmp_path, monkeypatch, capsys):
    """tempfile.mkdtemp's PermissionError (a folder the user may not write) was an internal error, exit 1."""
    import tempfile

    from facecycle_cli import main

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    assert main(["export", "--random-config", "tiny", "--graphs", "analyze", "--out", str(tmp_path / "m")]) == 4
    err = capsys.readouterr().err
    assert "Permission denied" in err and "internal error" not in err and len(err.strip().splitlines()) == 1


def test_export_records_the_head_and_files_follow_the_umask(tmp_path, caplog):
    """The head's sha256 goes in the manifest and a replaced head is refused when the folder is read (as a replaced
    graph is; it was used with a warning); the head and weights were written 0600 (safetensors writes through a
    private temporary file)."""
    import logging
    import os

    from facecycle.errors import ModelError
    from realtime.heads import ExpressionHead, save_expression_head

    m, ck = _tiny_checkpoint(tmp_path / "run" / "last.safetensors")
    d = m.config.feature_dim
    rng = np.random.default_rng(0)
    save_expression_head(tmp_path / "run" / "expression_head.safetensors", rng.standard_normal((7, d)),
                         np.zeros(7))
    out = tmp_path / "m"
    old = os.umask(0o022)
    try:
        r = subprocess.run([sys.executable, "-m", "facecycle", "export", "--checkpoint", str(ck), "--out", str(out),
                            "--graphs", "analyze"], capture_output=True, text=True)
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    for name in ("model.safetensors", "expression_head.safetensors", "manifest.json", "analyze.onnx"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    man = json.loads((out / "manifest.json").read_text())
    assert man["head"]["sha256"] == sha256_file(out / "expression_head.safetensors")
    with caplog.at_level(logging.WARNING, logger="realtime.heads"):
        assert ExpressionHead.find(out) is not None
    assert not caplog.records
    save_expression_head(out / "expression_head.safetensors", rng.standard_normal((7, d)), np.zeros(7))
    with pytest.raises(ModelError, match=r"expression_head\.safetensors: sha256 .* does not match the manifest"):
        ExpressionHead.find(out)


def test_an_unreadable_head_says_permission_denied(tmp_path, monkeypatch):
    """A head the user may not read was reported as a "corrupt expression head"."""
    import realtime.heads as heads
    from facecycle.errors import ModelError

    p = tmp_path / "expression_head.safetensors"
    heads.save_expression_head(p, np.zeros((7, 4)), np.zeros(7))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(heads, "open", refuse, raising=False)
    with pytest.raises(ModelError, match="permission denied") as e:
        heads.ExpressionHead.load(p)
    assert "corrupt" not in str(e.value)
