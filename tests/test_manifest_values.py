"""A model folder's ``manifest.json`` is read by one checked reader (facecycle.manifest, re-exported by engines):
its values too, not only its structure, and by the probes as by the pipeline. Each fault is one line naming the
file, exit 5: a std of 0 or NaN ran with exit 0 and empty emotion columns labelled "angry", a NaN framing or a
1e30 input size failed as an unrelated stage error (exit 7), a future manifest_version was read without a word,
and `probe eval` read the manifest and graph itself (internal errors, graphs outside the folder, no sha256)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest

from facecycle.assets import HEAD_FILE, default_model_dir
from facecycle.errors import ModelError
from facecycle_cli import main

from .conftest import assert_one_line, process_blank_picture

Edit = Callable[[Dict[str, Any]], None]


def _copy(tmp_path: Path, edit: Edit | None = None) -> Path:
    """The shipped default model folder copied to ``tmp_path / "m"``, its manifest passed through ``edit``."""
    d = tmp_path / "m"
    shutil.copytree(default_model_dir(), d)
    if edit is not None:
        p = d / "manifest.json"
        man = json.loads(p.read_text())
        edit(man)
        p.write_text(json.dumps(man))  # NaN and Infinity written as JSON's readers (Python's too) take them
    return d


def _set(section: str, key: str, value: Any) -> Edit:
    def edit(m: Dict[str, Any]) -> None:
        (m if section == "" else m[section])[key] = value
    return edit


BAD_VALUES = [
    (_set("input", "std", [0, 0, 0]), "input.std"),
    (_set("input", "std", [float("nan")] * 3), "input.std"),
    (_set("input", "std", [0.2, -0.2, 0.2]), "input.std"),
    (_set("input", "mean", [0.5, float("inf"), 0.5]), "input.mean"),
    (_set("input", "size", 10 ** 30), "input.size"),
    (_set("input", "size", 4), "input.size"),
    (lambda m: m.pop("input"), "'input'"),
    (_set("config", "crop_scale", float("nan")), "config.crop_scale"),
    (_set("config", "crop_scale", float("inf")), "config.crop_scale"),
    (_set("config", "crop_scale", 0), "config.crop_scale"),
    (_set("config", "crop_scale", "1.03"), "config.crop_scale"),
    (_set("config", "image_size", 10 ** 30), "config.image_size"),
    (_set("config", "image_size", 32), "differs from input.size"),
    (_set("config", "std", [0, 0, 0]), "config.std"),
    (_set("config", "detail_px", -5), "config.detail_px"),
    (_set("config", "feature_flip", "false"), "config.feature_flip"),
    (_set("", "manifest_version", "1"), "manifest_version"),
    (_set("", "manifest_version", 0), "manifest_version"),
]


@pytest.mark.parametrize("edit,says", BAD_VALUES)
def test_manifest_values_are_checked_when_it_is_read(tmp_path, edit, says):
    from engines import read_manifest

    d = _copy(tmp_path, edit)
    with pytest.raises(ModelError) as e:
        read_manifest(d)
    msg = str(e.value)
    assert str(d / "manifest.json") in msg and says in msg and "\n" not in msg, msg


def test_a_newer_manifest_version_says_which_this_facecycle_reads_and_to_upgrade(tmp_path):
    """manifest_version 99 was read as version 1 without a word."""
    from facecycle.manifest import READ_VERSIONS, read_manifest

    d = _copy(tmp_path, _set("", "manifest_version", 99))
    with pytest.raises(ModelError) as e:
        read_manifest(d)
    msg = str(e.value)
    assert "manifest_version 99" in msg and "newer facecycle" in msg and "upgrade" in msg, msg
    assert f"({', '.join(map(str, READ_VERSIONS))})" in msg


def test_what_exports_write_and_the_shipped_model_are_read():
    """The writer's version is one the reader reads; the shipped model (and a manifest from before the field)
    passes every check; engines' names are the shared reader's."""
    import engines
    import engines.base
    from facecycle import manifest
    from facecycle.export import MANIFEST_VERSION

    assert MANIFEST_VERSION in manifest.READ_VERSIONS
    man = manifest.read_manifest(default_model_dir())
    lo, hi = manifest.CROP_SCALES
    assert lo <= man["config"]["crop_scale"] <= hi and manifest.INPUT_SIZES[0] <= man["input"]["size"]
    assert engines.read_manifest is engines.base.read_manifest is manifest.read_manifest
    assert engines.GraphSpec is manifest.GraphSpec and engines.graph_file is manifest.graph_file


def test_a_manifest_without_a_version_is_read_as_version_1(tmp_path):
    from facecycle.manifest import read_manifest

    assert "manifest_version" not in read_manifest(_copy(tmp_path, lambda m: m.pop("manifest_version")))


@pytest.mark.parametrize("edit,says", [
    (_set("input", "std", [0, 0, 0]), "input.std"),
    (_set("config", "crop_scale", float("nan")), "config.crop_scale"),
    (_set("input", "size", 10 ** 30), "input.size"),
    (_set("", "manifest_version", 99), "upgrade"),
])
def test_process_refuses_bad_manifest_values_with_exit_5(tmp_path, capsys, edit, says):
    """std 0: exit 0, status complete, every emotion column empty and `emotion` angry; a NaN crop_scale:
    "infer stage failed: ValueError: cannot convert float NaN to integer" (exit 7); input.size 1e30: an OpenCV
    resize error (exit 7). Now refused when the model is loaded, naming the manifest."""
    d = _copy(tmp_path, edit)
    rc, err = process_blank_picture(tmp_path, capsys, "--model", str(d))
    assert rc == 5
    assert_one_line(err, "manifest.json", says)


# ------------------------------------------------------------------------------------------ the probes' ONNX feature
def _truncate(name: str, n: int) -> Callable[[Path], None]:
    def spoil(d: Path) -> None:
        p = d / name
        p.write_bytes(p.read_bytes()[:n])
    return spoil


def _edit_file(edit: Edit) -> Callable[[Path], None]:
    def spoil(d: Path) -> None:
        p = d / "manifest.json"
        man = json.loads(p.read_text())
        edit(man)
        p.write_text(json.dumps(man))
    return spoil


def _truncated_graph_without_sha(d: Path) -> None:
    _truncate("analyze.onnx", 1000)(d)
    _edit_file(lambda m: m["graphs"]["analyze"].__setitem__("sha256", None))(d)


def _graph_elsewhere(d: Path) -> None:
    other = d.parent / "other"
    other.mkdir()
    shutil.copy(d / "analyze.onnx", other / "analyze.onnx")
    _edit_file(lambda m: m["graphs"]["analyze"].__setitem__("file", "../other/analyze.onnx"))(d)


PROBE_FAULTS = [
    (_truncate("manifest.json", 300), "manifest.json", "corrupt manifest"),
    (lambda d: (d / "manifest.json").write_text("[]"), "manifest.json", "not a FaceCycle ONNX manifest"),
    (_edit_file(lambda m: m["graphs"].pop("analyze")), "manifest.json", "no 'analyze' graph"),
    (_edit_file(lambda m: m["graphs"]["analyze"]["outputs"].pop(0)), "manifest.json", "no 'feature' output"),
    (_truncate("analyze.onnx", 1000), "analyze.onnx", "does not match the manifest"),
    (_truncated_graph_without_sha, "analyze.onnx", "cannot load this graph"),
    (_graph_elsewhere, "manifest.json", "leaves the model folder"),
    (_edit_file(_set("input", "std", [0, 0, 0])), "manifest.json", "input.std"),
    (_edit_file(_set("", "manifest_version", 99)), "manifest.json", "upgrade"),
]


@pytest.mark.parametrize("spoil,names,says", PROBE_FAULTS)
def test_the_probes_onnx_feature_reads_the_model_as_the_pipeline_does(tmp_path, spoil, names, says):
    """OnnxFeatures read manifest.json itself: a truncated one was an internal JSONDecodeError, a list a TypeError,
    no analyze graph a KeyError, a truncated graph InvalidProtobuf; a graph at ../other/analyze.onnx was loaded
    from outside the folder, the sha256 never checked, and std 0 gave a 0.14 accuracy with exit 0."""
    from facecycle.probe.features import OnnxFeatures

    d = _copy(tmp_path)
    spoil(d)
    with pytest.raises(ModelError) as e:
        OnnxFeatures(d, threads=1)
    msg = str(e.value)
    assert str(d / names) in msg and says in msg and "\n" not in msg, msg


def test_the_probes_onnx_feature_of_the_shipped_model(tmp_path):
    from facecycle.probe.features import OnnxFeatures

    ex = OnnxFeatures(_copy(tmp_path), threads=1)
    man = json.loads((default_model_dir() / "manifest.json").read_text())
    assert ex.image_size == man["input"]["size"] and ex.crop_scale == man["config"]["crop_scale"]
    f = ex(np.full((2, 48, 48, 3), 100, np.uint8))
    assert f.shape == (2, int(ex.describe()["feature_dim"])) and np.isfinite(f).all()


@pytest.mark.parametrize("spoil,says", [
    (_truncate("manifest.json", 300), "corrupt manifest"),
    (_edit_file(_set("input", "std", [0, 0, 0])), "input.std"),
    (_graph_elsewhere, "leaves the model folder"),
])
def test_probe_eval_refuses_a_damaged_model_with_exit_5(tmp_path, capsys, spoil, says):
    import cv2

    d = _copy(tmp_path)
    spoil(d)
    rng = np.random.default_rng(0)
    for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"):
        (tmp_path / "data" / "train" / c).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "data" / "train" / c / "a.png"), rng.integers(0, 255, (48, 48), dtype=np.uint8))
    capsys.readouterr()
    rc = main(["probe", "eval", "--model", str(d), "--head", str(default_model_dir() / HEAD_FILE), "--data",
               str(tmp_path / "data"), "--split", "train", "--framing", "none", "--no-progress", "--threads", "1"])
    assert rc == 5
    assert_one_line(capsys.readouterr().err, "manifest.json", says)
