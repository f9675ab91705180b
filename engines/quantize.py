"""INT8 (static, QDQ) ONNX graphs for the ONNX Runtime CPU backend.

FP32 convolutions bound the CPU: the paper ``analyze`` graph costs ~0.5 GMAC
per face. ONNX Runtime's int8 kernels (u8 activations x s8 per-channel
weights) roughly double CPU throughput at the cost of a small, measurable
error (see ``docs/engines.md``). Quantization needs calibration crops: real
face crops, never random noise.

Calibration sources (``calibration=``):

* an array ``(N, S, S, 3) uint8 RGB`` face crops, or ``(N, 3, S, S) float32``
  already normalised model inputs;
* a ``.npy`` file holding either;
* a video of faces (talking heads): ``N`` loose centre crops are taken via PyAV.

Quantized graphs are cached next to the engines
(``<cache>/engines/onnx8/<onnx sha[:16]>-<calibration sha[:12]>-ort<version>-int8.onnx``: another ONNX
Runtime quantizes differently, so it makes its own copy). Each build works on temporaries of its own
(``.<name>.<pid>-<8 hex>.tmp``, :func:`facecycle.files.temp_path`) beside the graph and ``os.replace``-s the
result into place, so two processes quantizing the same graph at once (an empty cache) neither read nor delete
each other's half-written files; each removes only its own temporaries. The graph's sha256 is recorded beside it
(``…-int8.json``, :func:`engines.cache.record_derived`). A cached graph that ONNX Runtime cannot load, or whose
sha256 is not the recorded one, is rebuilt once (``rebuild=True``) by
:class:`engines.onnxruntime_backend.OnnxRuntimeBackend`, with a WARNING.

What is quantized: convolutions, ``Gemm`` and the ``MatMul`` nodes with a constant operand (weights, the
48-px low-pass matrices). A ``MatMul`` of two activations (the attention products of the self-attention
blocks) stays FP32: with both operands quantized, ONNX Runtime 1.23's quantizer bent the shipped model's flow to
a median cosine of 0.91 to FP32 through the pipeline (1.32's: 0.998; ``docs/engines.md``). The analyze graph alone
ran about as fast either way (3.2 against 3.5 ms per face on one thread, 1.23; the pipeline 134 against 137 fps).
Unnamed nodes are named before quantizing, so that the exclusion list names each node it means.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from facecycle.errors import InputError, ModelError, UsageError
from facecycle.files import sha256_file, temp_path

from .cache import _hex64, engine_cache_dir, make_cache_dir, record_derived, remove_stale_temporaries

__all__ = ["calibration_inputs", "calibration_sha256", "int8_onnx", "int8_path", "QUANT_OPS"]

log = logging.getLogger(__name__)

QUANT_OPS = ("Conv", "MatMul", "Gemm")


def _center_crops(video: Path, n: int, size: int, step: int = 5) -> np.ndarray:
    """(n', size, size, 3) uint8 RGB loose centre crops (80 % of the short side) of a video."""
    try:
        import av
        import cv2
    except ImportError as e:
        raise UsageError(f"calibration from a video needs PyAV and OpenCV ({e})") from None
    out = []
    try:
        with av.open(str(video)) as c:
            for i, fr in enumerate(c.decode(video=0)):
                if i % step:
                    continue
                a = fr.to_ndarray(format="rgb24")
                h, w = a.shape[:2]
                s = int(min(h, w) * 0.8)
                y0, x0 = (h - s) // 2, (w - s) // 2
                out.append(cv2.resize(a[y0:y0 + s, x0:x0 + s], (size, size), interpolation=cv2.INTER_AREA))
                if len(out) >= n:
                    break
    except (av.error.FFmpegError, OSError) as e:  # type: ignore[attr-defined]
        raise InputError(f"{video}: cannot decode calibration video ({e})") from None
    if not out:
        raise InputError(f"{video}: no frames decoded for calibration")
    return np.stack(out)


def calibration_inputs(source, manifest: dict, n: int = 64) -> np.ndarray:
    """Normalised ``(N, 3, S, S) float32`` model inputs from a calibration source (see module doc)."""
    from facecycle.preprocess import to_input

    inp = manifest.get("input", {})
    size = int(inp.get("size") or manifest["config"]["image_size"])
    mean, std = inp.get("mean"), inp.get("std")
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.exists():
            raise InputError(f"{p}: calibration source not found")
        if p.suffix == ".npy":
            try:
                source = np.load(p, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise InputError(f"{p}: cannot read calibration array ({e})") from None
        else:
            source = _center_crops(p, n, size)
    a = np.asarray(source)
    if a.ndim == 4 and a.shape[1:] == (size, size, 3) and a.dtype == np.uint8:
        kw = {k: v for k, v in (("mean", mean), ("std", std)) if v}
        return to_input(a[:n], **kw)
    if a.ndim == 4 and a.shape[1:] == (3, size, size):
        return np.ascontiguousarray(a[:n], np.float32)
    raise InputError(f"calibration data must be (N, {size}, {size}, 3) uint8 crops or (N, 3, {size}, {size}) "
                     f"float32 inputs, got {a.shape} {a.dtype}")


def calibration_sha256(calib: np.ndarray) -> str:
    """sha256 of calibration inputs as float32 (the int8 graph cache's key, and the sidecar's record of them)."""
    return hashlib.sha256(np.ascontiguousarray(calib, np.float32).tobytes()).hexdigest()


def _name_nodes(graph_path: Path) -> None:
    """Give every unnamed node of the graph a unique name (an empty name in ``nodes_to_exclude`` would match them
    all), in place."""
    import onnx

    m = onnx.load(str(graph_path))
    names = {n.name for n in m.graph.node}
    unnamed = [n for n in m.graph.node if not n.name]
    for i, n in enumerate(unnamed):
        name = f"{n.op_type}_fc{i}"
        while name in names:
            name += "_"
        n.name = name
        names.add(name)
    if unnamed:
        onnx.save(m, str(graph_path))


def _activation_matmuls(graph_path: Path) -> list:
    """Names of the ``MatMul`` nodes whose operands are both activations (no initializer, no Constant)."""
    import onnx

    g = onnx.load(str(graph_path), load_external_data=False).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in g.node if n.op_type == "MatMul" and not any(i in consts for i in n.input)]


def int8_path(sha256: str, calib_sha256: str, root: Optional[Path] = None) -> Path:
    """Where :func:`int8_onnx` caches the int8 copy of the graph whose sha256 is ``sha256``, calibrated on inputs
    whose :func:`calibration_sha256` is ``calib_sha256``, by this ONNX Runtime."""
    import onnxruntime

    if not re.fullmatch(r"[0-9a-f]{12,64}", calib_sha256 or ""):
        raise ValueError(f"calib_sha256 must be hex digits, got {str(calib_sha256)[:80]!r}")
    return ((root or engine_cache_dir()) / "onnx8"
            / f"{_hex64(sha256)[:16]}-{calib_sha256[:12]}-ort{onnxruntime.__version__}-int8.onnx")


def int8_onnx(src: Union[str, Path], sha256: str, calib: np.ndarray, input_name: str = "image",
              root: Optional[Path] = None, extra_inputs: Optional[dict] = None, rebuild: bool = False) -> Path:
    """Static QDQ int8 copy of an ONNX graph (per-channel s8 weights, u8 activations), cached.

    Args:
        src: FP32 ONNX graph. sha256: its hash (cache key).
        calib: normalised calibration inputs ``(N, 3, S, S)`` float32 for ``input_name``.
        extra_inputs: fixed arrays (batch first, N rows) for the graph's other inputs.
        rebuild: quantize again and replace the cached graph (one ONNX Runtime cannot load: truncated, damaged).

    The build writes temporaries of its own beside the graph (pid and a random part in their names) and replaces
    the graph with the result in one ``os.replace``; a concurrent build of the same graph is left alone.
    """
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )
    except ImportError as e:
        raise ModelError(f"int8 needs onnxruntime.quantization ({e})") from None
    calib = np.ascontiguousarray(calib, np.float32)
    if calib.shape[0] < 8:
        raise UsageError(f"int8 calibration needs at least 8 face crops, got {calib.shape[0]}")
    csha = calibration_sha256(calib)
    out = int8_path(sha256, csha, root)
    if out.is_file() and not rebuild:
        return out
    make_cache_dir(out.parent)
    remove_stale_temporaries(out.parent)
    # this build's own temporaries: fixed names (``X.pre.onnx``, ``X.onnx.tmp``) were shared by every process, and
    # one builder's cleanup deleted another's half-written files
    pre = temp_path(out.with_name(out.stem + ".pre.onnx"))
    tmp = temp_path(out)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            batches = []
            for i in range(0, len(calib), 8):
                feed = {input_name: calib[i:i + 8]}
                for k, v in (extra_inputs or {}).items():
                    feed[k] = np.ascontiguousarray(v[i:i + 8], np.float32)
                batches.append(feed)
            self._it = iter(batches)

        def get_next(self):
            return next(self._it, None)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(src), str(pre))
            _name_nodes(pre)
            quantize_static(str(pre), str(tmp), _Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=list(QUANT_OPS), nodes_to_exclude=_activation_matmuls(pre))
        written = sha256_file(tmp)  # this build's own file, before another build can replace ``out``
        os.replace(tmp, out)
    except Exception as e:  # noqa: BLE001 - onnx/ORT raise many types
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ModelError(f"{src}: int8 quantization failed ({type(e).__name__}: {first})") from None
    finally:
        for f in (pre, tmp):  # only this build's own files
            try:
                f.unlink(missing_ok=True)
            except OSError:
                pass
    record_derived(out, written, sha256, "int8")  # checked before the cached graph is used (derived_problem)
    log.info("quantized %s to int8 (%d calibration crops) -> %s", src, len(calib), out)
    return out
