"""TensorRT engine cache behaviour on a real GPU (skipped where TensorRT or a CUDA GPU is absent).

The pure parts (cache keys, profile parsing, selection) are tested in
test_engines_select.py on any machine; the numerical contract of the TensorRT
backend is in test_engines_contract.py.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.probes import default_probes
from engines.select import check
from tests.conftest import run_in_threads

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt_dir(tmp_path_factory, request):
    ok, why = check("tensorrt", default_probes())
    if not ok:
        pytest.skip(f"TensorRT backend unavailable: {why}")
    if not request.config.getoption("--cuda"):
        pytest.skip("TensorRT present, but GPU tests only run with --cuda")
    tiny_export = request.getfixturevalue("tiny_export")  # only exported when TensorRT can run
    d = tmp_path_factory.mktemp("trt_model")
    for f in Path(tiny_export[1]).iterdir():
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "engines"


def test_engine_is_built_once_then_loaded_from_the_cache(trt_dir, cache, caplog):
    from engines import open_backend

    with caplog.at_level(logging.INFO):
        with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as be:
            files = be.build_all(["analyze"])
            assert files["analyze"].parent == cache and files["analyze"].is_file()
            assert files["analyze"].with_suffix(".json").is_file()
            assert "building fp32 engine for analyze" in caplog.text
    assert list((cache / "timing").glob("trt*.cache")), "timing cache was not persisted"
    caplog.clear()
    with caplog.at_level(logging.INFO):
        with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as be:
            be.build_all(["analyze"])
    assert "loaded cached engine" in caplog.text and "building" not in caplog.text


def test_corrupt_cached_engine_is_rebuilt_with_a_reason(trt_dir, cache, caplog):
    from engines import open_backend

    with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as be:
        path = be.build_all(["analyze"])["analyze"]
    path.write_bytes(path.read_bytes()[:4096])  # truncated plan
    with caplog.at_level(logging.WARNING):
        with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as be:
            be.build_all(["analyze"])
            out = be.run("analyze", {"image": np.zeros((3, 3, 32, 32), np.float32)})
    assert "failed to deserialize" in caplog.text and "rebuilding" in caplog.text
    assert out["code"].shape == (3, 16)


def test_different_profile_means_a_different_engine(trt_dir, cache):
    from engines import open_backend

    with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as a, \
            open_backend(trt_dir, "tensorrt", profile=(1, 4, 8)) as b:
        assert a.engine_path("analyze") != b.engine_path("analyze")


def test_one_context_per_thread_and_same_results(trt_dir, cache):
    from engines import open_backend

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    with open_backend(trt_dir, "tensorrt", profile=(1, 2, 4)) as be:
        want = be.run("analyze", {"image": x})["code"]
        ctxs = set()

        def work():
            out = be.run("analyze", {"image": x})["code"]
            ctxs.add(id(be._context("analyze")[0]))
            return out

        outs, errs = run_in_threads(work, threads=3)
    assert not errs and len(ctxs) == 3
    assert all(np.allclose(o, want, atol=1e-5) for o in outs)


def test_fp16_flag_mode_is_refused_on_tensorrt_11(trt_dir, cache):
    import tensorrt as trt

    from engines import open_backend
    from engines.tensorrt_backend import trt_major
    from facecycle.errors import UsageError

    if trt_major(trt.__version__) < 11:
        pytest.skip(f"TensorRT {trt.__version__}: BuilderFlag.FP16 still exists before 11")
    with pytest.raises(UsageError, match="BuilderFlag.FP16 was removed in 11"):
        open_backend(trt_dir, "tensorrt", precision="fp16", fp16_mode="flag")


def test_a_replaced_graph_is_refused_even_with_a_cached_plan(trt_dir, cache, tmp_path):
    """With a cached plan the graph was never read: a replaced analyze.onnx ran the old engine (explicit backend: no
    up-front check either). Both now check the manifest's sha256."""
    from engines import open_backend
    from facecycle.errors import ModelError

    d = tmp_path / "m"
    shutil.copytree(trt_dir, d)
    with open_backend(d, "tensorrt", profile=(1, 2, 4)) as be:
        be.build_all(["analyze"])
    g = d / "analyze.onnx"
    g.write_bytes(g.read_bytes()[:-10] + b"\0" * 10)
    with open_backend(d, "tensorrt", profile=(1, 2, 4)) as be:
        with pytest.raises(ModelError, match=r"analyze\.onnx: sha256 .* does not match the manifest"):
            be.build_all(["analyze"])
    with pytest.raises(ModelError, match=r"analyze\.onnx: sha256 .* does not match the manifest"):
        open_backend(d, "tensorrt", profile=(1, 2, 4), warmup=["analyze"])


def test_an_altered_cached_fp16_graph_is_converted_again(trt_dir, cache, caplog):
    """Weights flipped inside the cached fp16 graph (same size and mtime) went into the next plan built from it."""
    from engines import open_backend
    from tests.test_engines_cache import _flip_weights

    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with open_backend(trt_dir, "tensorrt", precision="fp16", profile=(1, 2, 4)) as be:
        want = be.run("analyze", {"image": x})
    fp16 = next((cache / "onnx16").glob("*-fp16.onnx"))
    _flip_weights(fp16)
    with caplog.at_level(logging.WARNING):
        with open_backend(trt_dir, "tensorrt", precision="fp16", profile=(1, 2, 4), rebuild=True) as be:
            got = be.run("analyze", {"image": x})
    assert f"cached fp16 graph {fp16} cannot be used" in caplog.text
    assert "rebuilding it from analyze.onnx" in caplog.text
    for k in want:
        assert np.isfinite(got[k]).all()
        np.testing.assert_allclose(got[k], want[k], atol=2e-2 * max(1.0, float(np.abs(want[k]).max())))
