"""``--backend auto`` must not strand a user: a GPU backend that fails to open, build or run falls back.

No GPU or TensorRT is needed: the probes claim a GPU, and the GPU backends are replaced by ones that fail the
way real ones do (TensorRT's engine build, a CUDA provider that cannot start); the CPU backend is real.
"""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

import engines
from engines import open_backend
from engines.base import Backend
from engines.probes import Probes
from engines.tensorrt_backend import BuildProgress
from facecycle.errors import BackendUnavailable, InputError, ModelError

GPU = "NVIDIA FakeGPU"


def probes(modules=("tensorrt", "onnxruntime", "torch"), providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
           torch_cuda=True) -> Probes:
    return Probes(has_module=lambda m: m in modules, gpu_name=lambda: GPU, ort_providers=lambda: list(providers),
                  torch_cuda=lambda: torch_cuda)


class FailingTensorRT(Backend):
    """Opens, then fails to build its engine on the first run (as a TensorRT without a usable GPU/driver)."""

    name = "tensorrt"
    opened = 0

    def __init__(self, model_dir, **kw) -> None:
        super().__init__(model_dir)
        FailingTensorRT.opened += 1
        self.device = f"cuda:0 ({GPU})"

    def _run(self, spec, inputs):
        raise ModelError(f"{spec.file}: TensorRT failed to build an engine (CUDA error 35: driver too old)")


@pytest.fixture
def failing_trt(monkeypatch):
    import engines.tensorrt_backend as trt_mod

    FailingTensorRT.opened = 0
    monkeypatch.setattr(trt_mod, "TensorRTBackend", FailingTensorRT)
    return FailingTensorRT


def test_failing_tensorrt_falls_back_to_the_cpu_with_one_line(tiny_export, failing_trt, caplog):
    model_dir = tiny_export[1]
    with caplog.at_level(logging.WARNING, logger="engines"):
        be = open_backend(model_dir, "auto", probes=probes(providers=("CPUExecutionProvider",)),
                          warmup=["analyze"])
    with be:
        assert failing_trt.opened == 1
        assert (be.name, str(be.device).split()[0]) == ("onnxruntime", "cpu")
        lines = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
        assert len(lines) == 1 and "tensorrt" in lines[0] and "driver too old" in lines[0]
        assert "onnxruntime-cpu" in lines[0]
        d = be.describe()
        assert d["fallbacks"] == [{"backend": "tensorrt", "error": be.fallbacks[0]["error"]}]
        assert "TensorRT failed to build an engine" in d["fallbacks"][0]["error"]
        x = np.zeros((1, *[int(v) for v in be.graphs["analyze"].inputs[0]["shape"][1:]]), np.float32)
        assert "code" in be.run("analyze", {"image": x})


def test_the_whole_chain_trt_ort_cuda_torch_cuda_then_cpu(tiny_export, failing_trt, monkeypatch, tmp_path):
    import engines.onnxruntime_backend as ort_mod
    import engines.torch_backend as torch_mod

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    (model_dir / "model.safetensors").write_bytes(b"")  # torch-cuda becomes a candidate
    real_ort = ort_mod.OnnxRuntimeBackend

    def ort(model_dir, device="cpu", **kw):
        if device != "cpu":
            raise RuntimeError("CUDAExecutionProvider: libcudnn.so.9: cannot open shared object file")
        return real_ort(model_dir, device=device, **kw)

    def torch_cuda(model_dir, device="cpu", **kw):
        assert device == "cuda"
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(ort_mod, "OnnxRuntimeBackend", ort)
    monkeypatch.setattr(torch_mod, "TorchBackend", torch_cuda)
    with open_backend(model_dir, "auto", probes=probes(), warmup=["analyze"]) as be:
        assert [f["backend"] for f in be.fallbacks] == ["tensorrt", "onnxruntime-cuda", "torch-cuda"]
        assert "libcudnn" in be.fallbacks[1]["error"] and "out of memory" in be.fallbacks[2]["error"]
        assert be.name == "onnxruntime" and be.choice.name == "onnxruntime-cpu"


def test_an_explicit_backend_does_not_fall_back(tiny_export, failing_trt):
    with pytest.raises(ModelError, match="TensorRT failed to build"):
        open_backend(tiny_export[1], "tensorrt", probes=probes(), warmup=["analyze"])


def test_a_missing_calibration_source_is_the_users_error_not_a_backends(tiny_export, tmp_path):
    # int8 on ONNX Runtime CPU reads the calibration faces: a missing file used to be taken for a failing backend,
    # and the fallback (torch CPU, which has no int8) then hid it behind "precision must be fp32 or fp16"
    model_dir = tmp_path / "m"
    shutil.copytree(tiny_export[1], model_dir)
    (model_dir / "model.safetensors").write_bytes(b"")  # torch-cpu becomes the next candidate
    with pytest.raises(InputError, match="nope.mp4: calibration source not found"):
        open_backend(model_dir, "auto", probes=probes(modules=("onnxruntime", "torch"),
                                                           providers=("CPUExecutionProvider",), torch_cuda=False),
                     warmup=["analyze"], precision="int8", calibration=str(tmp_path / "nope.mp4"))


def test_an_engine_cache_that_cannot_be_written_is_the_users_error_not_a_backends(tiny_export, tmp_path,
                                                                                   monkeypatch):
    """Probe finding: with the cache folder not writable (XDG_CACHE_HOME a file), fp16 on ONNX Runtime CPU (which
    writes its converted graph there) failed, the fallback to torch CPU refused fp16 on a CPU, and that was the one
    error shown: "torch fp16 needs device='cuda'", exit 2. The cache's own error now stops the run, with the fix."""
    from facecycle.errors import OutputError

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.delenv("FACECYCLE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))
    with pytest.raises(OutputError, match="cannot write to the engine cache .*set FACECYCLE_CACHE"):
        open_backend(tiny_export[1], "auto", probes=probes(modules=("onnxruntime", "torch"),
                                                           providers=("CPUExecutionProvider",), torch_cuda=False),
                     warmup=["analyze"], precision="fp16")


def test_explicit_tensorrt_without_a_gpu_says_there_is_none():
    from engines.select import choose

    p = Probes(has_module=lambda m: m == "onnxruntime", gpu_name=lambda: None,
               ort_providers=lambda: ["CPUExecutionProvider"], torch_cuda=lambda: False)
    with pytest.raises(BackendUnavailable, match="not installed.*no CUDA GPU"):
        choose("tensorrt", p)


def test_cli_run_completes_after_a_forced_tensorrt_failure_and_the_sidecar_says_why(
        tiny_export, failing_trt, monkeypatch, tmp_path, capfd, caplog):
    """The acceptance case: `facecycle process` with the default backend on a 'GPU machine' whose TensorRT fails."""
    import engines.select as sel
    from facecycle_cli import main

    from .conftest import real_frames, write_video

    clip = write_video(tmp_path / "clip.mp4", real_frames(8))
    monkeypatch.setattr(sel, "default_probes", lambda: probes(modules=("tensorrt", "onnxruntime"),
                                                              providers=("CPUExecutionProvider",)))
    with caplog.at_level(logging.WARNING):  # (the CLI's own stderr handler is pytest's capture here)
        rc = main(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(tmp_path / "o"),
                   "--no-progress", "--no-video"])
    err = capfd.readouterr().err
    assert rc == 0, err
    side = json.loads((tmp_path / "o" / "clip.json").read_text())
    assert sum("falling back" in r.getMessage() for r in caplog.records) == 1, side["backend"]
    side = json.loads((tmp_path / "o" / "clip.json").read_text())
    assert side["backend"]["backend"] == "onnxruntime"
    assert side["backend"]["fallbacks"][0]["backend"] == "tensorrt"
    assert "TensorRT failed to build an engine" in side["backend"]["fallbacks"][0]["error"]
    assert side["stats"]["frames"] == 8


def test_engine_build_progress_reports_while_building():
    lines = []
    with BuildProgress("the fp32 analyze engine", every=0.05, emit=lines.append) as p:
        p.phase, p.step = "Building engine", (2, 5)
        import time

        time.sleep(0.3)
    assert lines and all(ln.startswith("tensorrt: still building the fp32 analyze engine (") for ln in lines)
    assert "Building engine 2/5" in lines[-1]
    n = len(lines)
    import time

    time.sleep(0.15)
    assert len(lines) == n  # stopped with the build
    assert engines.AUTO_ORDER[:3] == ("tensorrt", "onnxruntime-cuda", "torch-cuda")
