"""The graphs ONNX Runtime converts into the engine cache (fp16, int8): damaged copies, concurrent builders.

Probe findings: a truncated cached int8 graph was never rebuilt (``out.is_file()`` was the only check): with
``--backend onnxruntime`` every run failed (exit 5), under ``auto`` the fallback to torch CPU replaced that error
with its own "precision must be fp32 or fp16, not 'int8'" (exit 2). And the int8 builder's temporaries had fixed
names (``X.pre.onnx``, ``X.onnx.tmp``) shared by every process, which one builder's cleanup deleted under another.
"""
from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pytest

from engines import open_backend
from engines.probes import Probes
from facecycle.errors import ModelError

pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A cache of this test's own (``$FACECYCLE_CACHE``): ``<tmp>/cache/engines/...``."""
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def _calib(model_dir) -> np.ndarray:
    """Normalised (16, 3, S, S) inputs for the tiny analyze graph (a test's calibration; real use takes faces)."""
    from engines import read_manifest

    s = int(read_manifest(model_dir)["graphs"]["analyze"]["inputs"][0]["shape"][-1])
    return np.random.RandomState(0).uniform(-1, 1, (16, 3, s, s)).astype(np.float32)


def _opts(precision: str, model_dir) -> dict:
    return {"precision": precision, **({"calibration": _calib(model_dir)} if precision == "int8" else {})}


def _run(be) -> dict:
    x = np.zeros((2, *[int(v) for v in be.graphs["analyze"].inputs[0]["shape"][1:]]), np.float32)
    return be.run("analyze", {"image": x})


def _only_graph(folder):
    files = sorted(folder.iterdir())
    assert len(files) == 1, files  # the graph, no temporaries left behind
    return files[0]


@pytest.mark.parametrize("precision, sub", [("int8", "onnx8"), ("fp16", "onnx16")])
def test_a_truncated_cached_graph_is_rebuilt_with_a_warning(tiny_export, cache, caplog, precision, sub):
    model_dir = tiny_export[1]
    with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
        want = _run(be)
        path = be.graph_path("analyze")
    assert path.parent == cache / sub and path == _only_graph(cache / sub)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])  # a crash of the disk, a copy cut short
    with caplog.at_level(logging.WARNING, logger="engines"):
        with open_backend(model_dir, "onnxruntime", **_opts(precision, model_dir)) as be:
            got = _run(be)
            assert be.graph_path("analyze") == path
    warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1, warns
    assert warns[0].startswith(f"onnxruntime: cached {precision} graph {path} cannot be loaded (")
    assert "rebuilding it from analyze.onnx" in warns[0]
    assert path.stat().st_size > len(good) // 3 and _only_graph(cache / sub) == path
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_a_rebuilt_graph_that_still_cannot_be_loaded_is_the_error(tiny_export, cache, caplog, monkeypatch):
    import engines.cache as cache_mod

    model_dir = tiny_export[1]
    with open_backend(model_dir, "onnxruntime", precision="fp16") as be:
        path = be.graph_path("analyze")
    path.write_bytes(path.read_bytes()[:1000])
    real = cache_mod.write_atomic
    monkeypatch.setattr(cache_mod, "write_atomic", lambda p, data: real(p, data[:1000]))  # every build is bad
    with caplog.at_level(logging.WARNING, logger="engines"):
        with open_backend(model_dir, "onnxruntime", precision="fp16") as be:
            with pytest.raises(ModelError, match=r"-fp16\.onnx: ONNX Runtime cannot load the fp16 graph just built "
                                                 r"from .*analyze\.onnx \(.*\); `facecycle engine clean` removes it"):
                _run(be)
    assert sum("rebuilding it" in r.getMessage() for r in caplog.records) == 1  # rebuilt once, not in a loop


def test_under_auto_a_failing_int8_graph_is_the_error_shown_not_torchs_refusal(tiny_export, tmp_path, monkeypatch):
    """The fallback to torch CPU (which has no int8) hid ONNX Runtime's real error behind "precision must be fp32
    or fp16, not 'int8'" (exit 2): a backend that cannot run the precision is no fallback."""
    import engines.quantize as q

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    (model_dir / "model.safetensors").write_bytes(b"")  # torch-cpu becomes a candidate
    cpu = Probes(has_module=lambda m: m in ("onnxruntime", "torch"), gpu_name=lambda: None,
                 ort_providers=lambda: ["CPUExecutionProvider"], torch_cuda=lambda: False)

    def broken(src, *a, **kw):
        raise ModelError(f"{src}: int8 quantization failed (RuntimeError: disk on fire)")

    monkeypatch.setattr(q, "int8_onnx", broken)
    with pytest.raises(ModelError, match="int8 quantization failed .*disk on fire"):
        open_backend(model_dir, "auto", probes=cpu, warmup=["analyze"], **_opts("int8", model_dir))


def test_two_int8_builds_use_temporaries_of_their_own(tiny_export, cache, monkeypatch):
    import onnxruntime.quantization as oq

    model_dir = tiny_export[1]
    seen = []
    real = oq.quant_pre_process

    def spy(src, out, *a, **kw):
        seen.append(os.path.basename(out))
        return real(src, out, *a, **kw)

    monkeypatch.setattr(oq, "quant_pre_process", spy)
    for _ in range(2):
        with open_backend(model_dir, "onnxruntime", **_opts("int8", model_dir)) as be:
            path = be.graph_path("analyze")
        path.unlink()
    assert len(seen) == 2 and seen[0] != seen[1], seen
    assert all(f".{os.getpid()}-" in n for n in seen), seen


def test_a_build_that_runs_during_another_leaves_the_others_files_alone(tiny_export, cache, monkeypatch):
    """Builder B starts and finishes while builder A is between its pre-processing and its quantization (two
    processes, empty cache): B's cleanup deleted A's ``X.pre.onnx``, and A failed or read B's half-written file."""
    import onnxruntime.quantization as oq

    from engines.quantize import int8_onnx

    model_dir = tiny_export[1]
    src = model_dir / "analyze.onnx"
    sha = "ab" * 32
    calib = _calib(model_dir)
    real = oq.quantize_static
    started, nested = [], []

    def quantize_static(pre, out, *a, **kw):
        if not started:  # A, mid-build (the graph not yet in place): B runs from start to end, and cleans up
            started.append(pre)
            nested.append(int8_onnx(src, sha, calib))
        return real(pre, out, *a, **kw)

    monkeypatch.setattr(oq, "quantize_static", quantize_static)
    a = int8_onnx(src, sha, calib)
    assert nested == [a] and _only_graph(cache / "onnx8") == a
    import onnxruntime as ort

    ort.InferenceSession(str(a), providers=["CPUExecutionProvider"])


def test_a_killed_builders_temporaries_are_removed_a_running_ones_kept(tmp_path):
    from engines.cache import is_temporary, list_converted, remove_stale_temporaries
    from facecycle.files import temp_path

    d = tmp_path / "engines" / "onnx8"
    d.mkdir(parents=True)
    graph = d / "0123456789abcdef-0123456789ab-ort1.0-int8.onnx"
    graph.write_bytes(b"graph")
    mine = temp_path(graph)  # a build running now (this process): kept however old
    dead = d / f".{graph.name}.999999999-0badc0de.tmp"  # no such process
    fresh_dead = d / f".{graph.name}.999999998-0badc0de.tmp"  # no such process here, but written a moment ago
    old_fixed = d / (graph.stem + ".pre.onnx")  # an older builder's fixed name
    for f in (mine, dead, fresh_dead, old_fixed):
        f.write_bytes(b"half")
    hour_ago = time.time() - 7200
    for f in (mine, dead, old_fixed):
        os.utime(f, (hour_ago, hour_ago))
    assert all(is_temporary(f.name) for f in (mine, dead, fresh_dead, old_fixed)) and not is_temporary(graph.name)
    kinds = {os.path.basename(r["path"]): r["kind"] for r in list_converted(tmp_path / "engines")}
    assert kinds[graph.name] == "int8 graph" and kinds[dead.name].startswith("temporary")
    assert remove_stale_temporaries(d) == 2
    assert sorted(f.name for f in d.iterdir()) == sorted(f.name for f in (graph, mine, fresh_dead))


def test_a_plans_temporaries_in_the_cache_root_are_listed_and_cleaned(tmp_path):
    """A review's finding: a TensorRT plan is written through a temporary in the cache root, and `engine clean` and
    `engine list` looked only at `*.engine`: a killed build's plan temporary (hundreds of MB) stayed for good."""
    from engines.cache import clean_engines, list_converted

    root = tmp_path / "engines"
    root.mkdir()
    plan = root / "a-fp16-b1.engine"
    plan.write_bytes(b"plan")
    left = root / f".{plan.name}.999999-deadbeef.tmp"
    left.write_bytes(b"half a plan")
    assert any(r["path"] == str(left) and r["kind"].startswith("temporary") for r in list_converted(root))
    n, _ = clean_engines(root)
    assert n >= 2 and not left.exists() and not plan.exists()
