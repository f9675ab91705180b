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


SWEEP = ROOT / "scripts" / "gpu_refit_sweep.sh"


def _refit_start(tmp_path):
    """A tiny fine-tune to refit (config tiny, built in, so that the script's own process knows it): its
    checkpoint as the refit's start, its head in FT/, and a pack with labelled video."""
    stills, val, video = _stills(160, 32, 0), _stills(40, 32, 1), _video(32, 2)
    labels = np.where(np.arange(32) < 16, 4, -1).astype(np.int64)
    o = SemiSupOptions(config="tiny", steps=1, batch=16, cycle_every=1, pairs=2, lr=1e-3, warmup_steps=1,
                       val_every=0, ckpt_every=0, threads=1)
    SemiSupTrainer(o, stills, val, video, tmp_path / "ft", video_labels=labels).fit(progress=False)
    write_pack(tmp_path / "pack.npz", stills, val, video, video_labels=labels)
    return tmp_path / "ft"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is absent")
def test_refit_sweep_runs_each_variant_from_the_pack_and_returns_its_checkpoint(tmp_path):
    """scripts/gpu_refit_sweep.sh -> train_default_gpu.sh refit -> train_default.sh refit, as on a GPU but on the
    CPU: two variants at once (their own batch sizes and seeds), each checkpoint and one log back in OUT."""
    ft = _refit_start(tmp_path)
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(SWEEP)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env=_env(DEVICE="cpu", CONFIG="tiny", FT=str(ft), INIT=str(ft / "last.safetensors"),
                                PACK=str(tmp_path / "pack.npz"), OUT=str(out), RUNS=str(tmp_path / "runs"),
                                CRITIC=str(tmp_path / "no_critic"), THREADS="1", MINUTES="5",
                                VARIANTS="a:2:16:2:0 b:3:8:4:1:REAL_W=0.3,REAL_LR=1e-3"))
    assert r.returncode == 0 and "2 rc=0" in r.stdout, (r.stdout, r.stderr[-2000:])
    log = (out / "logs.txt").read_text()
    assert "## a" in log and "## b" in log and "sweep wall_s=" in log
    from facecycle.train.state import read_meta

    for name, steps, batch, pairs, seed, real in (("a", 2, 16, 2, 0, 0.0), ("b", 3, 8, 4, 1, 0.3)):
        assert (out / name / "last.safetensors").is_file()
        saved = read_meta(tmp_path / "runs" / name / "state.safetensors")
        o = saved["options"]
        assert saved["step"] == steps and (o["steps"], o["batch"], o["pairs"], o["seed"]) == (steps, batch, pairs, seed)
        assert o["train_encoder"] is False and o["device"] == "cpu" and o["cycle_every"] == 1
        assert o["realism_weight"] == real and o["realism_lr"] == (1e-3 if real else 4e-4)  # the variant's extras
    assert {p.name for p in out.iterdir()} == {"a", "b", "logs.txt"}  # what the device tool brings back


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is absent")
def test_refit_sweep_refuses_a_malformed_variant_before_starting_any(tmp_path):
    for bad in ("a:2:16:2", "a:2:16:2:0:real_w=1", "a:2:16:2:0 b:x:8:4:1"):
        r = subprocess.run(["bash", str(SWEEP)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                           env=_env(DEVICE="cpu", OUT=str(tmp_path / "out"), RUNS=str(tmp_path / "runs"), VARIANTS=bad))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (bad, r.stderr)
        assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()  # nothing started


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is absent")
def test_refit_mode_without_its_pack_says_so_in_one_line(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT), "refit"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=_env(DEVICE="cpu", PACK=str(tmp_path / "none.npz"), INIT=str(tmp_path / "none.safetensors")))
    assert r.returncode == 2 and "needs" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None, reason="git or bash is absent")
def test_device_tree_enters_a_small_branch_and_leaves_every_file_as_it_was(tmp_path):
    """scripts/device_tree.sh on a clone of this repository: enter keeps the code and the refit's small files and
    drops the large ones, so that a training pack fits the device tool's 64 MiB; leave restores the branch."""
    if not (ROOT / ".git").exists():
        pytest.skip("the project is not a git checkout here")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)
    script = ROOT / "scripts" / "device_tree.sh"
    branch = subprocess.run(["git", "symbolic-ref", "--short", "HEAD"], cwd=clone, capture_output=True,
                            text=True, check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout

    (clone / "facecycle" / "config.py").write_text("changed\n")  # a dirty tree is refused, untouched
    r = subprocess.run(["bash", str(script), "enter"], cwd=clone, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "commit them first" in r.stderr
    subprocess.run(["git", "checkout", "-q", "--", "facecycle/config.py"], cwd=clone, check=True)

    r = subprocess.run(["bash", str(script), "enter"], cwd=clone, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for kept in ("facecycle/train/semisup.py", "scripts/gpu_refit_sweep.sh", "training/rt64w_vl/head.safetensors",
                 "pyproject.toml"):
        assert (clone / kept).is_file(), kept
    for dropped in ("facecycle/assets", "training/rt64w_nf", "benchmarks"):
        assert not (clone / dropped).exists(), dropped
    tracked = subprocess.run(["git", "ls-files"], cwd=clone, capture_output=True, text=True).stdout.split()
    assert sum((clone / p).stat().st_size for p in tracked) < 8e6
    assert subprocess.run(["bash", str(script), "size"], cwd=clone, capture_output=True).returncode == 0

    r = subprocess.run(["bash", str(script), "leave"], cwd=clone, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    now = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
    assert now == head and (clone / "facecycle" / "assets").is_dir() and (clone / "training" / "rt64w_nf").is_dir()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True).stdout == ""
    assert "device-tree" not in subprocess.run(["git", "branch"], cwd=clone, capture_output=True, text=True).stdout
    assert branch in subprocess.run(["git", "branch", "--show-current"], cwd=clone, capture_output=True,
                                    text=True).stdout

    subprocess.run(["git", "branch", "device-tree"], cwd=clone, check=True)  # left over from an aborted enter
    r = subprocess.run(["bash", str(script), "enter"], cwd=clone, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "left from an earlier enter" in r.stderr
    assert subprocess.run(["git", "branch", "--show-current"], cwd=clone, capture_output=True,
                          text=True).stdout.strip() == branch
