"""Backend selection: ``auto`` picks TensorRT → ONNX Runtime CUDA → PyTorch CUDA → ONNX Runtime CPU → PyTorch CPU.

:func:`candidates` lists every usable backend in that order; :func:`engines.open_backend` opens the first and,
under ``auto``, falls back to the next when opening, building or the first run fails.

Pure logic over :class:`engines.probes.Probes`, unit-tested with fake probes.

Backend names (``--backend``):

============================  =====================================================
``auto``                      the first available of :data:`AUTO_ORDER` that runs the precision, opens and runs
``tensorrt``                  TensorRT engines (``tensorrt`` + CUDA GPU + torch CUDA for buffers)
``onnxruntime``               ONNX Runtime, CPU execution provider (the CPU default)
``onnxruntime-cpu``           same as ``onnxruntime``
``onnxruntime-cuda``          ONNX Runtime, CUDA execution provider (``onnxruntime-gpu``)
``onnxruntime-trt``           ONNX Runtime, TensorRT execution provider (explicit only)
``torch`` / ``torch-cpu``     PyTorch eager on the CPU (needs our safetensors weights)
``torch-cuda``                PyTorch on CUDA (``cuda_graphs=True`` to capture CUDA graphs)
============================  =====================================================
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from facecycle.assets import WEIGHT_NAMES
from facecycle.errors import BackendUnavailable, UsageError

from .probes import Probes, default_probes

__all__ = ["Choice", "BACKEND_NAMES", "AUTO_ORDER", "PRECISIONS", "check", "choose", "candidates",
           "available_backends", "find_weights", "NO_WEIGHTS_HINT"]

log = logging.getLogger(__name__)

AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu", "torch-cpu")
BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-trt",
                 "torch", "torch-cpu", "torch-cuda")
_ALIASES = {"onnxruntime": "onnxruntime-cpu", "ort": "onnxruntime-cpu", "torch": "torch-cpu",
            "pytorch": "torch-cpu", "trt": "tensorrt"}
#: the precisions each backend runs: ``auto`` passes over the ones that cannot run the precision asked for (a
#: fallback to one of them replaced the real error with its own refusal: a cached int8 graph ONNX Runtime could not
#: load became "precision must be fp32 or fp16, not 'int8'" from torch, exit 2)
PRECISIONS: Dict[str, Tuple[str, ...]] = {
    "tensorrt": ("fp32", "fp16"),
    "onnxruntime-cpu": ("fp32", "fp16", "int8"),
    "onnxruntime-cuda": ("fp32", "fp16", "int8"),
    "onnxruntime-trt": ("fp32", "fp16", "int8"),
    "torch-cpu": ("fp32",),
    "torch-cuda": ("fp32", "fp16"),
}
#: what a user without weights for the PyTorch backend can do (CLI and Python)
NO_WEIGHTS_HINT = ("export the checkpoint with `facecycle export --checkpoint PATH --out DIR` (it writes them), or "
                   "use --backend onnxruntime (Python: checkpoint=PATH)")


@dataclass
class Choice:
    """A resolved backend: implementation module, its options and why it was chosen."""

    name: str                      # canonical name, e.g. "onnxruntime-cpu"
    impl: str                      # "tensorrt" | "onnxruntime" | "torch"
    opts: Dict[str, object] = field(default_factory=dict)
    reason: str = ""


def find_weights(model_dir: Optional[Union[str, Path]]) -> Optional[Path]:
    """``model.safetensors`` or ``weights.safetensors`` next to ``manifest.json`` (None if absent)."""
    if model_dir is None:
        return None
    for n in WEIGHT_NAMES:
        p = Path(model_dir) / n
        if p.is_file():
            return p
    return None


def canonical(name: str) -> str:
    n = name.strip().lower()
    n = _ALIASES.get(n, n)
    if n != "auto" and n not in BACKEND_NAMES:
        raise UsageError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")
    return n


def check(name: str, probes: Probes, model_dir=None, opts: Optional[dict] = None) -> Tuple[bool, str]:
    """(available, what is missing or why it is usable) for one canonical backend name."""
    opts = opts or {}
    gpu = None

    def need_gpu() -> Optional[str]:
        nonlocal gpu
        gpu = probes.gpu_name()
        return None if gpu else "no CUDA GPU/driver found (libcuda did not report a device)"

    def and_no_gpu(msg: str) -> str:  # say so when there is no GPU either: installing the package won't help
        return msg if probes.gpu_name() else msg + "; and this machine has no CUDA GPU (no driver reported one)"

    if name == "tensorrt":
        if not probes.has_module("tensorrt"):
            return False, and_no_gpu("the 'tensorrt' Python package is not installed "
                                     "(pip install \"facecycle-rt[tensorrt]\")")
        miss = need_gpu()
        if miss:
            return False, miss
        if not probes.torch_cuda():
            return False, "TensorRT device buffers need torch with CUDA (torch.cuda.is_available() is False)"
        return True, f"TensorRT and a CUDA GPU ({gpu}) are present"
    if name in ("onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-trt"):
        if not probes.has_module("onnxruntime"):
            return False, "the 'onnxruntime' package is not installed"
        if name == "onnxruntime-cpu":
            return True, "ONNX Runtime CPU execution provider"
        ep = "CUDAExecutionProvider" if name == "onnxruntime-cuda" else "TensorrtExecutionProvider"
        provs = probes.ort_providers()
        if ep not in provs:
            return False, and_no_gpu(f"onnxruntime has no {ep} (has {', '.join(provs) or 'none'}; "
                                     "install onnxruntime-gpu)")
        miss = need_gpu()
        if miss:
            return False, miss
        return True, f"ONNX Runtime {ep} on {gpu}"
    if name in ("torch-cpu", "torch-cuda"):
        if not probes.has_module("torch"):
            return False, "PyTorch is not installed (pip install \"facecycle-rt[torch]\")"
        if model_dir is not None and not opts.get("checkpoint") and find_weights(model_dir) is None:
            return False, (f"no weights for PyTorch in {model_dir} (expected {' or '.join(WEIGHT_NAMES)} "
                           f"next to manifest.json); {NO_WEIGHTS_HINT}")
        if name == "torch-cuda":
            # no GPU, no need to ask torch: asking imports it (1.7 s and 180 MB on every run of the CPU default,
            # where torch happened to be installed)
            miss = need_gpu()
            if miss:
                return False, miss
            if not probes.torch_cuda():
                return False, "torch has no CUDA device (torch.cuda.is_available() is False)"
        return True, "PyTorch " + ("CUDA" if name == "torch-cuda" else "CPU")
    raise UsageError(f"unknown backend {name!r}")


def _resolve(name: str, reason: str) -> Choice:
    if name == "tensorrt":
        return Choice(name, "tensorrt", {}, reason)
    if name.startswith("onnxruntime"):
        dev = name.split("-", 1)[1]
        return Choice(name, "onnxruntime", {"device": {"cpu": "cpu", "cuda": "cuda", "trt": "tensorrt"}[dev]}, reason)
    return Choice(name, "torch", {"device": "cuda" if name == "torch-cuda" else "cpu"}, reason)


def choose(backend: str = "auto", probes: Optional[Probes] = None, model_dir=None,
           opts: Optional[dict] = None) -> Choice:
    """Resolve ``backend`` to a :class:`Choice`.

    ``auto`` walks :data:`AUTO_ORDER` and takes the first available backend,
    logging (INFO) the choice and why the earlier ones were skipped. An
    explicitly requested backend that is unavailable raises
    :class:`~facecycle.errors.BackendUnavailable` naming what is missing.
    """
    c = candidates(backend, probes, model_dir, opts)[0]
    if c.reason.startswith("auto"):
        log.info("backend %s", c.reason)
    return c


def candidates(backend: str = "auto", probes: Optional[Probes] = None, model_dir=None,
               opts: Optional[dict] = None) -> List[Choice]:
    """Every usable backend for ``backend``, best first: one for an explicit name, the available ones of
    :data:`AUTO_ORDER` under ``auto`` (the fallback chain of :func:`engines.open_backend`) that run
    ``opts["precision"]`` (:data:`PRECISIONS`; int8: ONNX Runtime only, fp16: not torch on the CPU).

    Raises:
        UsageError: unknown name. BackendUnavailable: nothing usable (the message names what is missing).
    """
    probes = probes or default_probes()
    name = canonical(backend)
    if name != "auto":
        ok, why = check(name, probes, model_dir, opts)
        if not ok:
            raise BackendUnavailable(f"backend {backend!r} is unavailable: {why}")
        return [_resolve(name, f"requested explicitly ({why})")]
    precision = str((opts or {}).get("precision") or "fp32")
    known = any(precision in v for v in PRECISIONS.values())  # else each backend's own UsageError says so
    skipped: List[str] = []
    out: List[Choice] = []
    for cand in AUTO_ORDER:
        ok, why = check(cand, probes, model_dir, opts)
        if ok and known and precision not in PRECISIONS[cand]:
            ok, why = False, f"runs {'/'.join(PRECISIONS[cand])} only, not {precision}"
        if ok:
            reason = f"auto: {cand} ({why})" + (f"; skipped {'; '.join(skipped)}" if skipped and not out else "")
            out.append(_resolve(cand, reason))
        elif not out:
            skipped.append(f"{cand}: {why}")
    if not out:
        if precision != "fp32" and known:
            raise BackendUnavailable(f"no installed backend can run precision {precision}: " + "; ".join(skipped))
        raise BackendUnavailable("no inference backend available: " + "; ".join(skipped))
    return out


def available_backends(probes: Optional[Probes] = None, model_dir=None) -> List[dict]:
    """Every concrete backend with ``{"name", "available", "reason"}``, in auto order first."""
    probes = probes or default_probes()
    names = list(AUTO_ORDER) + [n for n in ("onnxruntime-trt", "torch-cuda") if n not in AUTO_ORDER]
    out = []
    for n in names:
        ok, why = check(n, probes, model_dir)
        out.append({"name": n, "available": ok, "reason": why})
    return out
