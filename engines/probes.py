"""What is installed and present: the probes behind ``--backend auto``.

Each probe is a small function returning facts (never raising); selection
(:func:`engines.select.choose`) is a pure function of a :class:`Probes`
instance, so tests inject fake probes instead of needing a GPU.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from dataclasses import dataclass, field
from typing import Callable, List, Optional

__all__ = ["Probes", "has_module", "cuda_gpu_name", "ort_providers", "torch_cuda_available", "default_probes"]

log = logging.getLogger(__name__)


def has_module(name: str) -> bool:
    """True when ``import name`` would find the module (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@functools.lru_cache(maxsize=1)
def cuda_gpu_name() -> Optional[str]:
    """Name of CUDA device 0 via the driver API (``libcuda``), or None without a GPU/driver.

    Uses ``ctypes`` so it works without torch (ONNX Runtime CUDA and TensorRT
    do not need torch to run, only a driver).
    """
    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        try:
            if cuda.cuInit(0) != 0:
                return None
            n = ctypes.c_int(0)
            if cuda.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value < 1:
                return None
            dev = ctypes.c_int(0)
            if cuda.cuDeviceGet(ctypes.byref(dev), 0) != 0:
                return None
            buf = ctypes.create_string_buffer(256)
            if cuda.cuDeviceGetName(buf, 256, dev) != 0:
                return "CUDA device 0"
            return buf.value.decode(errors="replace") or "CUDA device 0"
        except Exception as e:  # noqa: BLE001 - a probe never raises
            log.debug("libcuda probe failed: %s", e)
            return None
    return None


def ort_providers() -> List[str]:
    """ONNX Runtime's available execution providers ([] when onnxruntime is missing)."""
    if not has_module("onnxruntime"):
        return []
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except Exception as e:  # noqa: BLE001
        log.debug("onnxruntime probe failed: %s", e)
        return []


@functools.lru_cache(maxsize=1)
def torch_cuda_available() -> bool:
    """True when torch is installed with CUDA and sees a GPU (imports torch: only called when needed)."""
    if not has_module("torch"):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


@dataclass
class Probes:
    """Injectable availability facts. Every field is a zero-argument callable."""

    has_module: Callable[[str], bool] = has_module
    gpu_name: Callable[[], Optional[str]] = cuda_gpu_name
    ort_providers: Callable[[], List[str]] = ort_providers
    torch_cuda: Callable[[], bool] = torch_cuda_available
    extra: dict = field(default_factory=dict)


def default_probes() -> Probes:
    return Probes()
