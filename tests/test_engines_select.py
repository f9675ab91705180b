"""Backend selection (fake probes), engine cache keys and cache layout: no GPU or TensorRT needed."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from engines.cache import (
    cache_root,
    clean_engines,
    engine_cache_dir,
    engine_key,
    engine_path,
    list_engines,
    slug,
    timing_cache_path,
)
from engines.probes import Probes
from engines.select import AUTO_ORDER, available_backends, canonical, choose
from engines.tensorrt_backend import _profile, trt_major
from facecycle.errors import BackendUnavailable, UsageError

ROOT = Path(__file__).resolve().parents[1]
SHA = "ab" * 32


def fake(modules=("tensorrt", "onnxruntime", "torch"), gpu="NVIDIA H100 80GB HBM3",
         providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
         torch_cuda=True) -> Probes:
    return Probes(has_module=lambda m: m in modules, gpu_name=lambda: gpu,
                  ort_providers=lambda: list(providers), torch_cuda=lambda: torch_cuda)


@pytest.fixture()
def weights_dir(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    return tmp_path


# ------------------------------------------------------------------------------------------ selection
def test_auto_prefers_tensorrt_when_everything_is_present(caplog):
    with caplog.at_level(logging.INFO, logger="engines.select"):
        c = choose("auto", fake())
    assert (c.name, c.impl) == ("tensorrt", "tensorrt")
    assert "auto: tensorrt" in caplog.text and "H100" in caplog.text


def test_auto_falls_back_to_ort_cuda_without_tensorrt():
    c = choose("auto", fake(modules=("onnxruntime", "torch")))
    assert c.name == "onnxruntime-cuda" and c.opts == {"device": "cuda"}
    assert "skipped tensorrt" in c.reason and "'tensorrt' Python package is not installed" in c.reason


def test_without_a_gpu_torch_is_not_asked_for_cuda():
    """Asking torch whether it has CUDA imports it: every run of the CPU default imported torch where it happened
    to be installed (1.7 s, 180 MB)."""
    def no(*_):
        raise AssertionError("torch_cuda was asked without a GPU")

    probes = Probes(has_module=lambda m: m in ("onnxruntime", "torch"), gpu_name=lambda: None,
                    ort_providers=lambda: ["CPUExecutionProvider"], torch_cuda=no)
    assert choose("auto", probes).name == "onnxruntime-cpu"


def test_the_default_analyzer_on_a_cpu_machine_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from engines.probes import cuda_gpu_name\n"
            "if cuda_gpu_name(): print('gpu'); raise SystemExit\n"
            "from realtime import Analyzer\n"
            "Analyzer().close(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    if out.stdout.strip() == "gpu":
        pytest.skip("this machine has a CUDA GPU: auto may use torch")
    assert out.stdout.strip() == "False"


def test_auto_picks_ort_cpu_without_gpu():
    c = choose("auto", fake(gpu=None, torch_cuda=False))
    assert c.name == "onnxruntime-cpu" and c.opts == {"device": "cpu"}
    assert "no CUDA GPU" in c.reason


def test_auto_picks_ort_cpu_when_ort_has_no_cuda_ep():
    c = choose("auto", fake(modules=("onnxruntime",), providers=("CPUExecutionProvider",)))
    assert c.name == "onnxruntime-cpu"
    assert "no CUDAExecutionProvider" in c.reason


def test_auto_falls_back_to_torch_without_onnxruntime(weights_dir):
    c = choose("auto", fake(modules=("torch",), gpu=None, torch_cuda=False), model_dir=weights_dir)
    assert c.name == "torch-cpu" and c.impl == "torch"


def test_auto_without_anything_names_every_missing_piece(tmp_path):
    with pytest.raises(BackendUnavailable) as e:
        choose("auto", fake(modules=("torch",), gpu=None, torch_cuda=False), model_dir=tmp_path)
    msg = str(e.value)
    for name in AUTO_ORDER:
        assert name in msg
    assert "no weights for PyTorch" in msg and e.value.exit_code == 6


def test_explicit_tensorrt_unavailable_names_the_package():
    with pytest.raises(BackendUnavailable, match="'tensorrt' Python package is not installed"):
        choose("tensorrt", fake(modules=("onnxruntime",)))


def test_explicit_tensorrt_without_gpu_says_so():
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        choose("tensorrt", fake(gpu=None))


def test_explicit_tensorrt_needs_torch_cuda_for_buffers():
    with pytest.raises(BackendUnavailable, match="torch with CUDA"):
        choose("tensorrt", fake(torch_cuda=False))


def test_explicit_ort_cuda_without_provider_names_the_provider():
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        choose("onnxruntime-cuda", fake(providers=("CPUExecutionProvider",)))


def test_explicit_torch_cuda_without_cuda(weights_dir):
    with pytest.raises(BackendUnavailable, match="torch has no CUDA device"):
        choose("torch-cuda", fake(torch_cuda=False), model_dir=weights_dir)


def test_explicit_torch_accepts_checkpoint_option_instead_of_weights_file(tmp_path):
    with pytest.raises(BackendUnavailable, match="model.safetensors or weights.safetensors"):
        choose("torch", fake(), model_dir=tmp_path)
    assert choose("torch", fake(), model_dir=tmp_path, opts={"checkpoint": "x.safetensors"}).name == "torch-cpu"


def test_aliases_and_unknown_names():
    assert canonical("onnxruntime") == "onnxruntime-cpu"
    assert canonical("ORT") == "onnxruntime-cpu"
    assert canonical("torch") == "torch-cpu"
    assert canonical("trt") == "tensorrt"
    with pytest.raises(UsageError, match="unknown backend 'tflite'"):
        canonical("tflite")


def test_available_backends_lists_each_with_reason():
    rows = available_backends(fake(modules=("onnxruntime",), gpu=None))
    names = [r["name"] for r in rows]
    assert names[: len(AUTO_ORDER)] == list(AUTO_ORDER)
    byname = {r["name"]: r for r in rows}
    assert byname["onnxruntime-cpu"]["available"] is True
    assert byname["tensorrt"]["available"] is False and "tensorrt" in byname["tensorrt"]["reason"]
    assert byname["torch-cpu"]["reason"].startswith("PyTorch is not installed")


def test_real_probes_on_this_machine_agree_with_imports():
    """The real probes: onnxruntime is a hard dependency, so ORT CPU must be available."""
    rows = {r["name"]: r for r in available_backends()}
    assert rows["onnxruntime-cpu"]["available"]
    try:
        import tensorrt  # noqa: F401
        has_trt = True
    except ImportError:
        has_trt = False
    if not has_trt:
        assert not rows["tensorrt"]["available"]


# ------------------------------------------------------------------------------------------- cache keys
def key(**kw):
    base = dict(graph="analyze", onnx_sha256=SHA, trt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0), precision="fp16", profile=(1, 8, 64))
    base.update(kw)
    return engine_key(**base)


def test_engine_key_is_deterministic_and_normalised():
    a, b = key(), key(compute_capability="9.0", profile=[1, 8, 64])
    assert a == b and a.digest() == b.digest()
    assert a.compute_capability == "9.0" and a.profile == (1, 8, 64)
    assert a.filename() == f"analyze-fp16-b1_8_64-{a.digest()[:16]}.engine"


@pytest.mark.parametrize("change", [
    {"onnx_sha256": "cd" * 32}, {"trt_version": "11.0.0"}, {"gpu_name": "NVIDIA A100"},
    {"compute_capability": (8, 0)}, {"precision": "fp32"}, {"profile": (1, 8, 32)}, {"profile": (2, 8, 64)},
    {"graph": "neutralize"}, {"fp16_mode": "flag"},
])
def test_every_key_field_changes_the_engine_file(change):
    assert key(**change).filename() != key().filename()


def test_fp32_key_ignores_fp16_mode():
    assert key(precision="fp32", fp16_mode="flag") == key(precision="fp32", fp16_mode="graph")


@pytest.mark.parametrize("bad, msg", [
    ({"precision": "int8"}, "precision"), ({"profile": (8, 1, 64)}, "profile"), ({"profile": (0, 1, 2)}, "profile"),
    ({"onnx_sha256": "xyz"}, "sha256"), ({"fp16_mode": "auto"}, "fp16_mode"),
])
def test_engine_key_rejects_bad_parts(bad, msg):
    with pytest.raises(ValueError, match=msg):
        key(**bad)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path / "fc"))
    assert cache_root() == tmp_path / "fc" and engine_cache_dir() == tmp_path / "fc" / "engines"
    monkeypatch.delenv("FACECYCLE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "facecycle"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_cache_dir() == tmp_path / "home" / ".cache" / "facecycle" / "engines"
    assert ROOT not in engine_cache_dir().parents  # never inside the repository


def test_engine_and_timing_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("FACECYCLE_CACHE", str(tmp_path))
    k = key()
    assert engine_path(k) == tmp_path / "engines" / k.filename()
    tc = timing_cache_path("10.13.0", "NVIDIA H100 80GB HBM3", "9.0")
    assert tc == tmp_path / "engines" / "timing" / "trt10.13.0-nvidia-h100-80gb-hbm3-sm9.0.cache"
    assert slug("  ") == "unknown"


def test_list_and_clean_engines(tmp_path):
    root = tmp_path / "engines"
    (root / "timing").mkdir(parents=True)
    k = key()
    (root / k.filename()).write_bytes(b"\0" * 100)
    (root / k.filename()).with_suffix(".json").write_text('{"precision": "fp16", "profile": [1, 8, 64]}')
    (root / "timing" / "t.cache").write_bytes(b"\0" * 10)
    rows = list_engines(root)
    assert len(rows) == 1 and rows[0]["bytes"] == 100 and rows[0]["precision"] == "fp16"
    n, b = clean_engines(root)
    assert (n, b) == (3, 100 + len('{"precision": "fp16", "profile": [1, 8, 64]}') + 10)
    assert list_engines(root) == [] and not (root / "timing").exists()


def test_trt_helpers_without_tensorrt():
    assert trt_major("10.13.0.35") == 10 and trt_major("11.4.0") == 11
    assert _profile() == (1, 8, 64)
    assert _profile(max_batch=4) == (1, 4, 4)   # opt clamps into the range
    assert _profile((2, 4, 16), opt_batch=32) == (2, 16, 16)
    with pytest.raises(UsageError):
        _profile(min_batch=9, max_batch=4)


def test_torch_without_weights_says_what_a_cli_user_can_do(tmp_path):
    """The hint was "or pass checkpoint=PATH", an option of the Python API only."""
    with pytest.raises(BackendUnavailable, match=r"facecycle export --checkpoint PATH --out DIR.*--backend onnx"):
        choose("torch", fake(), model_dir=tmp_path)


def test_fp16_without_its_converter_is_an_unavailable_package_not_a_bad_model(tmp_path, monkeypatch):
    """Exit 5 ("model error") without a word of what to install; now exit 6 with the package to install."""
    import sys

    from engines.cache import fp16_onnx

    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    src = tmp_path / "g.onnx"
    src.write_bytes(b"x")
    with pytest.raises(BackendUnavailable, match="pip install onnxconverter-common") as e:
        fp16_onnx(src, SHA, root=tmp_path / "cache")
    assert e.value.exit_code == 6


def test_auto_offers_only_backends_that_run_the_precision(weights_dir):
    """A fallback to a backend that cannot run the precision turned the real error into its refusal ("precision must
    be fp32 or fp16, not 'int8'", exit 2): under auto such backends are no candidates (int8: ONNX Runtime only;
    fp16: not torch on the CPU); the reason for passing over them is logged like any other."""
    from engines.select import candidates

    gpu = fake()
    assert [c.name for c in candidates("auto", gpu, weights_dir, {"precision": "int8"})] == \
        ["onnxruntime-cuda", "onnxruntime-cpu"]
    c = choose("auto", gpu, weights_dir, {"precision": "int8"})
    assert c.name == "onnxruntime-cuda" and "tensorrt: runs fp32/fp16 only, not int8" in c.reason
    cpu = fake(gpu=None, torch_cuda=False)
    assert [c.name for c in candidates("auto", cpu, weights_dir, {"precision": "int8"})] == ["onnxruntime-cpu"]
    assert [c.name for c in candidates("auto", cpu, weights_dir, {"precision": "fp16"})] == ["onnxruntime-cpu"]
    assert [c.name for c in candidates("auto", cpu, weights_dir, {"precision": "fp32"})] == \
        ["onnxruntime-cpu", "torch-cpu"]
    assert [c.name for c in candidates("auto", cpu, weights_dir)] == ["onnxruntime-cpu", "torch-cpu"]
    with pytest.raises(BackendUnavailable, match="no installed backend can run precision int8: .*onnxruntime-cpu: "
                                                 "the 'onnxruntime' package is not installed.*torch-cpu: runs fp32 "
                                                 "only, not int8"):
        candidates("auto", fake(modules=("torch",), gpu=None, torch_cuda=False), weights_dir, {"precision": "int8"})
    # an explicit backend is not filtered: its own refusal names the precision
    assert [c.name for c in candidates("torch", cpu, weights_dir, {"precision": "int8"})] == ["torch-cpu"]
