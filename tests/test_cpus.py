"""Thread counts are capped to the CPUs the process may use (``--threads 5000`` took over two minutes for five
frames: ONNX Runtime started 5,000 threads per session)."""
from __future__ import annotations

import logging
import os
import sys

import pytest

from facecycle.cpus import cap_threads, usable_cpus


def test_a_thread_count_above_the_cpus_is_capped_with_one_warning(caplog):
    cpus = usable_cpus()
    with caplog.at_level(logging.WARNING, logger="facecycle.cpus"):
        assert cap_threads(cpus + 5000, "--threads") == cpus
        assert cap_threads(cpus, "--threads") == cpus
        assert cap_threads(1, "--threads") == 1
        assert cap_threads(0, "--threads") == 0  # callers' own meaning (the default)
    assert len(caplog.records) == 1 and "--threads" in caplog.text and str(cpus) in caplog.text


@pytest.mark.parametrize("kw", [{"threads": 5000}, {"infer_workers": 5000}])
def test_the_analyzer_runs_on_at_most_the_usable_cpus(kw, caplog):
    from realtime import Analyzer

    with caplog.at_level(logging.WARNING, logger="facecycle.cpus"):
        an = Analyzer(**kw)  # the shipped model
    try:
        assert an.infer_workers <= usable_cpus()
        assert an.backend.intra_op_threads <= usable_cpus()
        assert "5000" in caplog.text
    finally:
        an.close()


def _on_one_cpu(code: str) -> str:
    """Run ``code`` in a fresh interpreter bound to one CPU (as ``taskset -c 0`` or a scheduler's CPU set does);
    its stdout."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: a CPU set of one changes nothing")
    pre = "import os\nos.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", pre + code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_the_analyzer_sizes_its_inference_workers_from_the_usable_cpus():
    """Under `taskset -c 0` (a Slurm or cgroup CPU set) the Analyzer started two inference workers
    (``os.cpu_count()``: the machine's CPUs) on the one CPU it may use."""
    out = _on_one_cpu("from realtime import Analyzer\nan = Analyzer()\nprint(an.infer_workers)\nan.close()\n")
    assert out.splitlines()[-1] == "1", out


def test_local_ray_workers_are_sized_from_the_usable_cpus():
    """`batch --cluster local` without --workers started one Ray worker per CPU of the machine
    (``os.cpu_count()``), whatever CPU set the job had: on one usable CPU it is one worker (Ray faked: only the
    sizing is under test)."""
    code = """
import sys, types
got = {}
ray = types.ModuleType("ray")
ray.__version__ = "0"
ray.init = lambda **kw: got.update(kw)
class _Remote:
    def remote(self, *a, **kw):
        return self
ray.remote = lambda **kw: (lambda f: _Remote())
ray.put = lambda x: x
ray.cluster_resources = lambda: {"CPU": got["num_cpus"]}
ray.nodes = lambda: []
sys.modules["ray"] = ray
import realtime.batch.executors as ex
from realtime.batch.job import BatchSettings
ex.ray_available = lambda: True
info = ex.RayExecutor(BatchSettings(), cluster="local").start()
print(info["workers"], got["num_cpus"])
"""
    assert _on_one_cpu(code).splitlines()[-1] == "1 1"


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.path.exists("/proc/self/statm"),
                    reason="glibc's malloc_trim and /proc: Linux only")
def test_closing_a_model_hands_freed_memory_back():
    """The app makes a new Analyzer at every Start; the freed buffers stayed in the heap, fragmented (about 10 MB
    more a restart). release_free_memory (called by Analyzer.close) hands them back: 150 MB freed around a few
    kept blocks leave the resident size high until it runs."""
    from facecycle.cpus import release_free_memory

    def rss_mb() -> float:
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    blocks = [bytes(1500) for _ in range(100_000)]
    kept = blocks[::100]  # noqa: F841 - they pin the heap's top, as a live model's buffers do
    del blocks
    before = rss_mb()
    if not release_free_memory():
        pytest.skip("no malloc_trim here (not glibc)")
    assert rss_mb() < before - 50, (before, rss_mb())
