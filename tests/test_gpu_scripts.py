"""The GPU training script (scripts/train_default_gpu.sh) run as a dry run on the CPU (``DEVICE=cpu``): the script a
lent GPU would run is the one tested here, on a tiny run and a training pack made in the test. It must continue the
run with its own saved recipe, and its output must resume on another machine (a CPU session) at the step it reached.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from facecycle.train.pack import write_pack  # noqa: E402
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer  # noqa: E402
from tests.test_semisup import _stills, _video  # noqa: E402  (registers the tiny-gray-test config)

from .conftest import ROOT  # noqa: E402

SCRIPT = ROOT / "scripts" / "train_default_gpu.sh"


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # the script calls python3
    env.update(extra)
    return env


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is absent")
def test_gpu_script_continues_a_run_on_the_cpu_and_its_output_resumes(tmp_path):
    stills, val, video = _stills(160, 32, 0), _stills(40, 32, 1), _video(32, 2)
    labels = np.where(np.arange(32) < 16, 4, -1).astype(np.int64)  # half the crops labelled neutral
    pack = tmp_path / "pack.npz"
    write_pack(pack, stills, val, video, video_labels=labels)
    o = SemiSupOptions(config="tiny", steps=3, batch=16, cycle_every=2, pairs=2, lr=1e-3, warmup_steps=1,
                       val_every=0, ckpt_every=0, threads=1, video_label_batch=4, video_crop_scale=1.0)
    from facecycle.train.pack import read_pack

    s, v, c = read_pack(pack)  # the run starts from the pack's (JPEG) images, as a CPU session would
    tr = SemiSupTrainer(o, s, v, c, tmp_path / "run", video_labels=labels)
    tr.fit(progress=False, stop_at=2)
    assert tr.step == 2

    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SCRIPT), "train"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env=_env(DEVICE="cpu", RUN=str(tmp_path / "run"), PACK=str(pack), OUT=str(out),
                                STEPS="5", MINUTES="5"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed at step 2" in r.stdout and "step 5 " in r.stdout, r.stdout
    copy = out / "run"
    assert {"last.safetensors", "head.safetensors", "state.safetensors"} <= {p.name for p in copy.iterdir()}
    again = SemiSupTrainer(SemiSupOptions(**{**o.__dict__, "steps": 5}), s, v, c, copy, video_labels=labels)
    assert again.resume() and again.step == 5
    from facecycle.train.state import read_meta

    saved = read_meta(copy / "state.safetensors")["options"]
    assert saved["video_label_batch"] == 4  # the run's own recipe travelled (the script's new-run recipe has 0)
    assert saved["steps"] == 5 and saved["device"] == "cpu"  # what the script set


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is absent")
def test_gpu_script_without_a_gpu_says_so_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    write_pack(tmp_path / "pack.npz", _stills(20, 32, 0), _stills(10, 32, 1), _video(16, 2))
    r = subprocess.run(["bash", str(SCRIPT), "train"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=_env(RUN=str(tmp_path / "run"), PACK=str(tmp_path / "pack.npz"), OUT=str(tmp_path / "o")))
    assert r.returncode != 0
    assert "no CUDA device" in r.stderr and "Traceback" not in r.stderr, r.stderr
