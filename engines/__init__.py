"""Inference engines behind one interface (:class:`engines.base.Backend`).

>>> from engines import open_backend
>>> with open_backend("path/to/model_dir") as be:          # auto: TensorRT → ORT CUDA → ORT CPU → PyTorch
...     out = be.run("analyze", {"image": batch})           # (N, 3, S, S) float32 -> dict of float32 arrays

See ``docs/engines.md`` for selection, options, caching and thread-safety.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Union

from .base import Backend, GraphSpec, read_manifest
from .probes import Probes
from .select import AUTO_ORDER, BACKEND_NAMES, Choice, choose

__all__ = ["Backend", "GraphSpec", "read_manifest", "open_backend", "available_backends", "choose",
           "Choice", "Probes", "AUTO_ORDER", "BACKEND_NAMES"]

log = logging.getLogger(__name__)


def available_backends(model_dir: Optional[Union[str, Path]] = None, probes: Optional[Probes] = None) -> List[dict]:
    """Every concrete backend as ``{"name", "available", "reason"}`` (auto order first)."""
    from .select import available_backends as _avail

    return _avail(probes, model_dir)


def open_backend(model_dir: Union[str, Path], backend: str = "auto", probes: Optional[Probes] = None,
                 **opts) -> Backend:
    """Open ``model_dir`` (an exported model directory) on a backend.

    Args:
        model_dir: directory with ``manifest.json`` and the ONNX graphs.
        backend: ``"auto"`` or a name of :data:`engines.select.BACKEND_NAMES`.
        probes: availability probes (tests inject fakes).
        **opts: backend options (``precision``, ``max_batch``, ``intra_op_threads``,
            ``cuda_graphs``, ``checkpoint``, ``profile``, ...); options a backend
            does not know are ignored (logged at DEBUG).

    Raises:
        ModelError: no/corrupt manifest.
        BackendUnavailable: an explicitly requested backend is not usable (the message names what is missing),
            or nothing is usable under ``auto``.
    """
    read_manifest(model_dir)  # fail early and clearly on a bad directory
    choice = choose(backend, probes, model_dir, opts)
    kw = {**choice.opts, **opts}  # explicit options (e.g. device="cuda:1") win over the choice's defaults
    if choice.impl == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend as cls
    elif choice.impl == "torch":
        from .torch_backend import TorchBackend as cls
    else:
        from .tensorrt_backend import TensorRTBackend as cls
    be = cls(model_dir, **kw)
    be.choice = choice
    log.info("opened %s on %s (%s): %s", be.name, be.device, be.precision, choice.reason)
    return be
