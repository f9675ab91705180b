"""An image folder read as a sequence, and frames held in memory, at the frame rate the user gives (``process --fps``,
``Analyzer.process_video(fps=)``): timestamps, and so the person baseline and smoothing, go by it (frames dumped at
10 fps were timed at 30, a timeline 3x too short)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import pytest

from .conftest import assert_one_line, real_frames


def _folder(tmp_path: Path, n: int = 12) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i, img in enumerate(real_frames(n)):
        cv2.imwrite(str(d / f"frame_{i:04d}.png"), img)
    return d


def _timestamps(path: Path) -> list:
    with open(path, newline="") as f:
        return [float(r["timestamp"]) for r in csv.DictReader(f)]


def test_process_times_an_image_sequence_at_the_given_fps(tmp_path, capsys):
    from facecycle_cli import main

    d = _folder(tmp_path)
    out = tmp_path / "o"
    rc = main(["process", str(d), "--images", "sequence", "--fps", "10", "--out-dir", str(out), "--no-video",
               "--no-progress", "--backend", "onnxruntime"])
    assert rc == 0, capsys.readouterr().err
    ts = sorted(set(_timestamps(out / "frames.csv")))
    assert ts == pytest.approx([i / 10 for i in range(12)], abs=1e-6)
    # without --fps: 30 fps, as documented
    rc = main(["process", str(d), "--images", "sequence", "--out-dir", str(tmp_path / "o30"), "--no-video",
               "--no-progress", "--backend", "onnxruntime"])
    assert rc == 0
    assert sorted(set(_timestamps(tmp_path / "o30" / "frames.csv")))[-1] == pytest.approx(11 / 30, abs=1e-6)


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf"])
def test_a_bad_fps_is_one_line_before_anything_is_read(tmp_path, capsys, bad):
    from facecycle_cli import main

    d = _folder(tmp_path, 2)
    capsys.readouterr()
    rc = main(["process", str(d), f"--fps={bad}", "--out-dir", str(tmp_path / "o"), "--no-video", "--no-progress"])
    assert rc != 0
    assert_one_line(capsys.readouterr().err, "--fps")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_fps_given_for_a_video_is_said_to_apply_to_folders_only(tmp_path, capsys, caplog):
    from facecycle_cli import main

    from .conftest import write_video

    clip = tmp_path / "c.mp4"
    write_video(clip, real_frames(6))
    capsys.readouterr()
    rc = main(["process", str(clip), "--fps", "10", "--out-dir", str(tmp_path / "o"), "--no-video",
               "--no-progress", "--backend", "onnxruntime"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "--fps 10 applies to image folders" in err + caplog.text  # (stderr; pytest's capture takes the log)
    ts = sorted(set(_timestamps(tmp_path / "o" / "c.csv")))
    assert ts[1] - ts[0] != pytest.approx(0.1)  # the video's own clock


def test_process_video_fps_times_frames_held_in_memory(tmp_path):
    from realtime import Analyzer, UsageError

    frames = real_frames(5)
    with Analyzer(backend="onnxruntime") as an:
        ts = [p.timestamp for p in an.process_video(frames, fps=12.5)]
        assert ts == pytest.approx([i / 12.5 for i in range(5)])
        with pytest.raises(UsageError, match="fps"):
            an.process_video(frames, fps=0)
        # any real number: numpy's, PyAV's Fraction rates
        from fractions import Fraction

        import numpy as np

        for rate in (np.float32(12.5), Fraction(25, 2)):
            ts = [p.timestamp for p in an.process_video(frames, fps=rate)]
            assert ts == pytest.approx([i / 12.5 for i in range(5)])
