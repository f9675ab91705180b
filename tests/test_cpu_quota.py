"""CPU quotas (``docker run --cpus=2``, a Kubernetes limit, Slurm's ``SLURM_CPUS_PER_TASK``) size the tool, not the
host: a quota leaves the affinity mask as it is (the whole host), and under a 2-CPU quota on a 64-CPU view the tool
started 64 Ray workers, 16 decoder and about 37 encoder threads, and ONNX Runtime pools of 16.

The quota is read from a cgroup tree of the test's own (the real one cannot be faked) with an affinity of 64 CPUs;
Ray is faked (only the sizing and the start-up errors are under test). Also: the command line (not the library)
gives OpenBLAS one thread before numpy is imported, and a local Ray that does not start is exit 6 with a hint.
"""
from __future__ import annotations

import os
import subprocess
import sys
import types
from fractions import Fraction
from pathlib import Path
from typing import Dict, Optional

import pytest

from facecycle import cpus
from facecycle.cpus import cli_thread_env, codec_threads, cpu_quota, reset_cpu_cache, usable_cpus

from .conftest import ROOT, decode_count, real_frames, write_video

HOST = 64  # the affinity mask the tests fake: a 64-CPU host


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """Each test reads the CPUs anew, without a Slurm job's variable, and leaves the real ones cached after."""
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    reset_cpu_cache()
    yield
    reset_cpu_cache()


def _cgroup_tree(tmp: Path, monkeypatch, *, version: int = 2, limits: Optional[Dict[str, str]] = None,
                 proc_path: str = "/kubepods/pod1/c1", mount_root: str = "/", affinity: int = HOST) -> Path:
    """A cgroup file system of version ``version`` under ``tmp`` that the process's own files point to:
    ``/proc/self/cgroup`` names ``proc_path``, ``/proc/self/mountinfo`` mounts ``mount_root`` at ``tmp/cg``;
    ``limits``: folder (relative to the mount) -> ``cpu.max`` text (v2) or ``"QUOTA PERIOD"`` (v1). The affinity
    mask says ``affinity`` CPUs."""
    mount = tmp / "cg"
    mount.mkdir()
    for rel, text in (limits or {}).items():
        d = mount / rel.strip("/") if rel.strip("/") else mount
        d.mkdir(parents=True, exist_ok=True)
        if version == 2:
            (d / "cpu.max").write_text(text + "\n")
        else:
            quota, period = text.split()
            (d / "cpu.cfs_quota_us").write_text(quota + "\n")
            (d / "cpu.cfs_period_us").write_text(period + "\n")
    if version == 2:
        cgroup = f"0::{proc_path}\n"
        mountinfo = f"30 23 0:26 {mount_root} {mount} rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
    else:
        cgroup = f"5:memory:{proc_path}\n4:cpu,cpuacct:{proc_path}\n0::/\n"
        mountinfo = (f"31 23 0:28 / {tmp}/fs rw,relatime - tmpfs tmpfs rw,mode=755\n"
                     f"32 31 0:29 {mount_root} {mount} rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
                     f"33 31 0:30 / {tmp}/mem rw,relatime - cgroup cgroup rw,memory\n")
    (tmp / "cgroup").write_text(cgroup)
    (tmp / "mountinfo").write_text(mountinfo)
    monkeypatch.setattr(cpus, "_PROC_CGROUP", str(tmp / "cgroup"))
    monkeypatch.setattr(cpus, "_MOUNTINFO", str(tmp / "mountinfo"))
    monkeypatch.setattr(cpus, "_CGROUP_ROOT", str(tmp / "none"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    reset_cpu_cache()
    return mount


@pytest.fixture
def quota2(tmp_path, monkeypatch):
    """A Kubernetes container limited to 2 CPUs (cgroup v2 ``cpu.max`` 200000 100000) on a 64-CPU host."""
    _cgroup_tree(tmp_path, monkeypatch, limits={"/kubepods/pod1/c1": "200000 100000"})


# ------------------------------------------------------------------ reading the quota

def test_a_cgroup_v2_quota_caps_the_usable_cpus(quota2):
    assert (cpu_quota(), usable_cpus()) == (2, 2)
    assert codec_threads(0) == 2 and codec_threads(5) == 5  # FFmpeg's choice would count the 64
    assert cpus.cap_threads(16, "--threads") == 2


@pytest.mark.parametrize("limits, want", [
    ({"/kubepods/pod1/c1": "max 100000"}, HOST),            # no quota
    ({"/kubepods/pod1/c1": "150000 100000"}, 2),            # 1.5 CPUs: rounded up
    ({"/kubepods/pod1/c1": "50000 100000"}, 1),             # half a CPU: at least 1
    ({"/kubepods": "300000 100000", "/kubepods/pod1/c1": "max 100000"}, 3),  # a parent's quota limits its children
    ({"/kubepods/pod1": "400000 100000", "/kubepods/pod1/c1": "200000 100000"}, 2),  # the smallest on the way
    ({"/kubepods/pod1/c1": "garbage"}, HOST),               # unreadable: no quota, no error
    ({}, HOST),                                             # no cpu.max at all (cpu controller not enabled)
])
def test_cgroup_v2_limits(tmp_path, monkeypatch, limits, want):
    _cgroup_tree(tmp_path, monkeypatch, limits=limits)
    assert usable_cpus() == want


def test_in_a_cgroup_namespace_the_mount_is_the_containers_own(tmp_path, monkeypatch):
    """Docker on cgroup v2: /proc/self/cgroup says ``0::/`` and the container's cgroup is mounted at the root."""
    _cgroup_tree(tmp_path, monkeypatch, proc_path="/", limits={"/": "200000 100000"})
    assert usable_cpus() == 2


@pytest.mark.parametrize("limits, proc_path, mount_root, want", [
    ({"/docker/abc": "200000 100000"}, "/docker/abc", "/", 2),  # no cgroup namespace: the host's tree
    ({"/": "300000 100000"}, "/docker/abc", "/docker/abc", 3),   # the container's cgroup mounted as the root
    ({"/docker/abc": "-1 100000"}, "/docker/abc", "/", HOST),    # -1: none (this machine's own case)
    ({"/docker": "100000 100000", "/docker/abc": "-1 100000"}, "/docker/abc", "/", 1),
])
def test_cgroup_v1_limits(tmp_path, monkeypatch, limits, proc_path, mount_root, want):
    _cgroup_tree(tmp_path, monkeypatch, version=1, limits=limits, proc_path=proc_path, mount_root=mount_root)
    assert usable_cpus() == want


def test_slurm_cpus_per_task_caps_them_too(tmp_path, monkeypatch):
    _cgroup_tree(tmp_path, monkeypatch, limits={})
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    reset_cpu_cache()
    assert (cpu_quota(), usable_cpus()) == (3, 3)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "not a number")
    reset_cpu_cache()
    assert usable_cpus() == HOST


def test_the_smaller_of_the_quota_slurm_and_the_affinity_mask_wins(tmp_path, monkeypatch):
    _cgroup_tree(tmp_path, monkeypatch, limits={"/kubepods/pod1/c1": "200000 100000"}, affinity=8)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    reset_cpu_cache()
    assert usable_cpus() == 2
    _fewer = tmp_path / "fewer"
    _fewer.mkdir()
    _cgroup_tree(_fewer, monkeypatch, limits={"/kubepods/pod1/c1": "800000 100000"}, affinity=1)
    assert usable_cpus() == 1
    assert codec_threads(0) == 0  # no quota below the mask: FFmpeg's own choice is right


def test_missing_cgroup_files_are_no_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "_PROC_CGROUP", str(tmp_path / "absent"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(HOST)), raising=False)
    reset_cpu_cache()
    assert (cpu_quota(), usable_cpus(), codec_threads(0)) == (None, HOST, 0)


def test_read_once_a_process(quota2, monkeypatch):
    assert usable_cpus() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert usable_cpus() == 2  # cached
    reset_cpu_cache()
    assert usable_cpus() == 1


def test_this_machine_keeps_its_cpus():
    """No fake: the affinity mask, less where this machine's own cgroup or Slurm says less (a 2-core test machine
    with cgroup v1 and no quota: 2, as before)."""
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    q = cpu_quota()
    assert usable_cpus() == (min(mask, q) if q else mask)
    if q is None:
        assert codec_threads(0) == 0 and "OMP_NUM_THREADS" not in cli_thread_env()


# ------------------------------------------------------------------ where the quota is used

def test_onnxruntime_defaults_to_the_usable_cpus(quota2):
    pytest.importorskip("onnxruntime")
    from engines.onnxruntime_backend import OnnxRuntimeBackend
    from facecycle.assets import default_model_dir

    be = OnnxRuntimeBackend(default_model_dir())
    try:
        assert be.intra_op_threads == 2
    finally:
        be.close()


def test_the_decoder_and_the_encoder_get_the_quotas_cpus(quota2, tmp_path):
    """FFmpeg's automatic count (0) is the affinity mask's (the host's): under a quota they get an explicit one."""
    from realtime.sinks.video_sink import VideoSink
    from realtime.sources.video import VideoSource
    from realtime.types import FramePacket

    src_path = tmp_path / "in.mp4"
    write_video(src_path, real_frames(3, size=(96, 64)), rate=25)
    src = VideoSource(src_path)
    try:
        assert src.stream.codec_context.thread_count == 2
    finally:
        src.close()
    sink = VideoSink(tmp_path / "v.mp4", fps=25, time_base=Fraction(1, 25))
    for i, img in enumerate(real_frames(3, size=(96, 64))):
        sink.write(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25, image=img))
    assert sink._stream.codec_context.thread_count == 2
    sink.close()
    assert decode_count(tmp_path / "v.mp4") == 3
    assert VideoSink(tmp_path / "w.mp4", threads=3).threads == 3  # a count given stays


def _fake_ray(monkeypatch, init=None) -> dict:
    """A ``ray`` module that records ``ray.init``'s arguments (``init``: its own body instead)."""
    from realtime.batch import executors

    got: dict = {}
    ray = types.ModuleType("ray")
    ray.__version__ = "0"

    def _init(**kw):
        got.update(kw)
        if init is not None:
            init(**kw)

    class _Remote:
        def remote(self, *a, **kw):
            return self

    ray.init = _init
    ray.shutdown = lambda: got.setdefault("shutdown", True)
    ray.remote = lambda **kw: (lambda f: _Remote())
    ray.put = lambda x: x
    ray.cluster_resources = lambda: {"CPU": got.get("num_cpus")}
    ray.nodes = lambda: []
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr(executors, "ray_available", lambda: True)
    return got


def test_a_local_ray_is_sized_by_the_quota(quota2, monkeypatch):
    from realtime.batch import BatchSettings, executors

    got = _fake_ray(monkeypatch)
    info = executors.RayExecutor(BatchSettings(), cluster="local").start()
    assert (info["workers"], got["num_cpus"]) == (2, 2)  # not 64 workers of 0.5-0.8 GB each
    assert executors.LocalExecutor(BatchSettings()).start()["cpus"] == 2  # batch.json's record


@pytest.mark.parametrize("error", [
    OSError("validate_socket_filename failed: AF_UNIX path length cannot exceed 107 bytes: /tmp/x/ray/session_1"
            "/sockets/plasma_store"),
    FileNotFoundError(2, "No such file or directory", "/proc/ray"),
])
def test_a_local_ray_that_does_not_start_is_exit_6_with_a_hint(tmp_path, monkeypatch, capsys, error):
    """TMPDIR=/proc, or a TMPDIR too long for Ray's sockets: "internal error", exit 1, before; now one line."""
    from facecycle_cli import main as cli_main

    def init(**kw):
        raise error

    got = _fake_ray(monkeypatch, init)
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "a.mp4", real_frames(3, size=(96, 64)), rate=25)
    rc = cli_main(["batch", str(src), "--out-dir", str(tmp_path / "out"), "--cluster", "local", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 6, err
    assert "set RAY_TMPDIR to a short writable path, or use --cluster none" in err, err
    assert "internal error" not in err and type(error).__name__ in err
    assert got.get("shutdown")  # what did start is stopped


def test_a_tmpdir_too_long_for_rays_sockets_gets_a_short_one(monkeypatch, caplog):
    import logging

    from realtime.batch import BatchSettings, executors

    got = _fake_ray(monkeypatch)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", "/tmp/" + "n" * 60)
    with caplog.at_level(logging.INFO, logger="realtime.batch.executors"):
        executors.RayExecutor(BatchSettings(), cluster="local").start()
    short = got["_temp_dir"]
    assert short.startswith("/tmp/ray-") and len(short) + 70 < 107
    assert "TMPDIR is too long" in caplog.text and short in caplog.text
    for env in ({"TMPDIR": "/tmp"}, {"TMPDIR": "/tmp/" + "n" * 60, "RAY_TMPDIR": "/scratch/me"}):
        got.clear()
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        executors.RayExecutor(BatchSettings(), cluster="local").start()
        assert "_temp_dir" not in got and got["num_cpus"] >= 1  # Ray's own choice, or the user's RAY_TMPDIR


# ------------------------------------------------------------------ OpenBLAS and the command line

#: prints what OPENBLAS_NUM_THREADS was when numpy was first imported, and what it is at the end
_WHEN_NUMPY = """
import os, sys
seen = {}
class _Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and "numpy" not in seen:
            seen["numpy"] = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
        return None
sys.meta_path.insert(0, _Watch())
%s
import numpy
print(seen.get("numpy", "numpy was imported before"), os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
"""


def _python(code: str, **env: str) -> str:
    e = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                           "MKL_NUM_THREADS")}
    e.update(env, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=e)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def test_the_command_line_gives_openblas_one_thread_before_numpy_is_imported():
    """OpenBLAS starts a thread per CPU at import (numpy's, OpenCV's, SciPy's: 190 threads and 14.1 GB of address
    space on a 64-CPU view, so a 1-8 GB ``ulimit -v`` failed at import)."""
    assert _python(_WHEN_NUMPY % "import facecycle_cli") == "1 1"
    assert _python(_WHEN_NUMPY % "import facecycle_cli", OPENBLAS_NUM_THREADS="4") == "4 4"  # the user's, kept


def test_the_library_alone_leaves_openblas_as_it_is():
    """A notebook's numpy is its own: importing the library (the pipeline, the engines) sets nothing."""
    assert _python(_WHEN_NUMPY % "import facecycle, realtime.analyzer, engines") == "unset unset"


def test_python_dash_m_facecycle_runs_with_it():
    r = subprocess.run([sys.executable, "-m", "facecycle", "--version"], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"})
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_under_a_quota_openmp_and_mkl_get_its_cpus(quota2):
    assert cli_thread_env() == {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
