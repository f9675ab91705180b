"""``--detector insightface``: a user's insightface model (pack folder, .onnx, pack name) run by insightface.

The model is ../shared/models/scrfd_500m_bnkps.onnx, laid out by each test as an insightface model pack
(``det_500m.onnx`` next to a recognition model's name) in tmp_path. Skipped, with the reason, where ../shared
or the ``insightface`` package is absent.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from facecycle.errors import BackendUnavailable, ModelError
from facecycle_cli import main as cli_main

from .conftest import MODELS, shared_video

SCRFD = MODELS / "scrfd_500m_bnkps.onnx"


@pytest.fixture
def pack(tmp_path) -> Path:
    """An insightface-style model pack folder made from the shared SCRFD file."""
    if not SCRFD.is_file():
        pytest.skip(f"{SCRFD} is absent (../shared not mounted)")
    pytest.importorskip("insightface", reason="the [insightface] extra is not installed")
    d = tmp_path / "models" / "buffalo_test"
    d.mkdir(parents=True)
    (d / "det_500m.onnx").symlink_to(SCRFD)
    (d / "w600k_mbf.onnx").write_bytes(b"not loaded: the pack's detector is picked by name first")
    return d


def _frame(name="pyfeat_WolfgangLanger_Pexels.mp4"):
    from realtime.sources import VideoSource

    with VideoSource(shared_video(name)) as s:
        return next(iter(s)).image


def test_pack_folder_file_and_pack_name_resolve_to_the_same_detector(pack, monkeypatch):
    from realtime.detectors import create_detector
    from realtime.detectors import insightface as mod

    img = _frame()
    by_dir = create_detector("insightface", str(pack))
    by_file = create_detector("insightface", str(SCRFD))
    monkeypatch.setattr(mod, "INSIGHTFACE_HOME", pack.parent)  # ~/.insightface/models/NAME
    by_name = create_detector("insightface", pack.name)
    alias = create_detector("scrfd", str(pack))
    r = [d.detect(img) for d in (by_dir, by_file, by_name, alias)]
    assert all(len(x) == 1 for x in r)
    for x in r[1:]:
        np.testing.assert_allclose(x.boxes, r[0].boxes, atol=1e-3)
        np.testing.assert_allclose(x.landmarks, r[0].landmarks, atol=1e-3)
    assert by_dir.describe()["model"] == "det_500m.onnx" and by_dir.describe()["landmarks"] is True
    assert "insightface" in by_dir.describe()["runner"] and "SCRFD" in by_dir.describe()["runner"]
    # boxes and landmarks agree with the default detector (frame pixels, image-left eye first)
    c = create_detector("centerface").detect(img)
    from realtime.tracking import iou_matrix

    assert iou_matrix(c.boxes, r[0].boxes)[0, 0] > 0.75
    assert np.abs(c.landmarks - r[0].landmarks).max() < 25
    assert len(by_dir.detect(_frame("pyfeat_no_face.mp4"))) == 0


def test_cli_process_with_a_model_pack(pack, tiny_export, tmp_path, capsys):
    clip = shared_video("pyfeat_single_face.mp4")
    out = tmp_path / "out"
    rc = cli_main(["process", str(clip), "--model", str(tiny_export[1]), "--detector", "insightface",
                   "--detector-model", str(pack), "--max-frames", "12", "--out-dir", str(out), "--no-progress",
                   "--no-video"])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader((out / "pyfeat_single_face.csv").open()))
    assert len(rows) == 12 and sum(r["success"] == "1" for r in rows) >= 10
    ok = [r for r in rows if r["success"] == "1"]
    assert all(r["lmk_x_0"] and r["pose_Rx"] for r in ok)
    side = json.loads((out / "pyfeat_single_face.json").read_text())
    assert side["detector"]["detector"] == "insightface" and side["detector"]["landmarks"] is True
    assert side["detector"]["pack"] == str(pack)


class _NoKps:
    """An insightface detection model that gives boxes only (like SCRFD trained without keypoints)."""

    taskname = "detection"
    use_kps = False

    def __init__(self, real):
        self.real = real
        self.session = real.session

    def prepare(self, ctx_id, **kw):
        self.real.prepare(ctx_id, **kw)

    def detect(self, img, input_size=None):
        det, _ = self.real.detect(img, input_size=input_size)
        return det, None


def test_a_model_without_landmarks_leaves_landmarks_and_pose_empty(pack, tiny_export, tmp_path):
    """No landmarks are invented from the box: NaN in Detections, empty CSV cells, no pose, sidecar says so."""
    from realtime.analyzer import Analyzer

    an = Analyzer(model=tiny_export[1], detector="insightface", detector_model=str(pack), detect_every=3)
    an.detector.model = _NoKps(an.detector.model)
    an.detector.has_landmarks = False
    det = an.detector.detect(_frame())
    assert len(det) == 1 and np.isnan(det.landmarks).all() and np.isfinite(det.boxes).all()
    csv_path = tmp_path / "nokps.csv"
    with an:
        run = an.process_video(shared_video("pyfeat_single_face.mp4"), csv=csv_path, max_frames=10)
        packets = list(run)
    assert sum(len(p.faces) for p in packets) >= 8  # tracked between detections without landmarks
    rows = list(csv.DictReader(csv_path.open()))
    ok = [r for r in rows if r["success"] == "1"]
    assert len(ok) >= 8
    for r in ok:
        assert all(r[f"lmk_{a}_{i}"] == "" for a in "xy" for i in range(5))
        assert r["pose_Rx"] == r["pose_Ry"] == r["pose_Rz"] == ""
        assert float(r["face_w"]) > 20 and r["exp_0"] != ""
    side = json.loads(csv_path.with_suffix(".json").read_text())
    assert side["detector"]["landmarks"] is False


def test_missing_pack_and_missing_package_are_one_line_errors(tmp_path, monkeypatch):
    from realtime.detectors import create_detector

    with pytest.raises(ModelError, match="no such .onnx file or insightface model pack"):
        create_detector("insightface", str(tmp_path / "nope"))
    from facecycle.errors import UsageError

    with pytest.raises(UsageError, match="needs --detector-model"):  # a missing option, as yunet's: exit 2
        create_detector("insightface")
    with pytest.raises(UsageError, match="needs a model file"):
        create_detector("yunet")
    empty = tmp_path / "emptypack"
    empty.mkdir()
    monkeypatch.setitem(sys.modules, "insightface", None)  # as if the extra were not installed
    with pytest.raises(BackendUnavailable, match=r"facecycle-rt\[insightface\]"):
        create_detector("insightface", str(empty))
