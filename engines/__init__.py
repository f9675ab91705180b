"""Inference engines behind one interface (:class:`engines.base.Backend`).

>>> from engines import open_backend
>>> with open_backend("path/to/model_dir") as be:          # auto: TensorRT → ORT CUDA → torch CUDA → CPU
...     out = be.run("analyze", {"image": batch})           # (N, 3, S, S) float32 -> dict of float32 arrays

See ``docs/engines.md`` for selection, options, caching and thread-safety.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from facecycle.errors import InputError, OutputError, UsageError

from .base import Backend, GraphMismatch, GraphSpec, graph_file, read_manifest
from .probes import Probes
from .select import AUTO_ORDER, BACKEND_NAMES, Choice, candidates, choose

__all__ = ["Backend", "GraphSpec", "GraphMismatch", "read_manifest", "open_backend", "available_backends", "choose",
           "candidates", "Choice", "Probes", "AUTO_ORDER", "BACKEND_NAMES"]

log = logging.getLogger(__name__)


def available_backends(model_dir: Optional[Union[str, Path]] = None, probes: Optional[Probes] = None) -> List[dict]:
    """Every concrete backend as ``{"name", "available", "reason"}`` (auto order first)."""
    from .select import available_backends as _avail

    return _avail(probes, model_dir)


def _impl(choice: Choice):
    if choice.impl == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend as cls
    elif choice.impl == "torch":
        from .torch_backend import TorchBackend as cls
    else:
        from .tensorrt_backend import TensorRTBackend as cls
    return cls


def _one_line(e: BaseException) -> str:
    msg = str(e).strip()
    return f"{type(e).__name__}: {msg.splitlines()[0][:300]}" if msg else type(e).__name__


def open_backend(model_dir: Union[str, Path], backend: str = "auto", probes: Optional[Probes] = None,
                 warmup: Optional[Sequence[str]] = None, **opts: Any) -> Backend:
    """Open ``model_dir`` (an exported model directory) on a backend.

    Args:
        model_dir: directory with ``manifest.json`` and the ONNX graphs.
        backend: ``"auto"`` or a name of :data:`engines.select.BACKEND_NAMES`.
        probes: availability probes (tests inject fakes).
        warmup: graphs to build (TensorRT engines) and run once on zeros while opening. Under ``auto``, a
            backend that fails to open, build or run them is closed and the next of the chain (TensorRT →
            ONNX Runtime CUDA → torch CUDA → ONNX Runtime CPU → torch CPU, the available ones that run
            ``precision``: int8 ONNX Runtime only, fp16 not torch CPU) is tried,
            with one WARNING line naming the reason. ``be.fallbacks`` lists them (``describe()`` too, so
            the JSON sidecar records it). Failures after opening are not caught.
        **opts: backend options (``precision``, ``max_batch``, ``intra_op_threads``,
            ``cuda_graphs``, ``checkpoint``, ``profile``, ...); options a backend
            does not know are ignored (logged at DEBUG).

    Raises:
        ModelError: no/corrupt manifest; with ``warmup`` (and ``verify``, the default), a graph file to warm up that
            is missing or whose sha256 is not the manifest's, whatever the backend. GraphMismatch (a ModelError): a
            graph whose inputs / outputs are not the manifest's (never a reason to fall back).
        BackendUnavailable: an explicitly requested backend is not usable (the message names what is missing),
            or nothing is usable under ``auto``. The last candidate's own error when every one failed.
    """
    man = read_manifest(model_dir)  # fail early and clearly on a bad directory
    chain = candidates(backend, probes, model_dir, opts)
    # (torch alone reads the weights, not the graphs: their files may be absent; it checks the weights' sha256)
    if warmup is not None and opts.get("verify", True) and any(c.impl != "torch" for c in chain):
        # a missing or damaged graph file is the model's fault, not a backend's: say so now, no fallback. With an
        # explicit backend too: TensorRT with a cached plan never read the graph, and a replaced analyze.onnx ran
        # the old engine (hashing the graphs costs milliseconds)
        for g in warmup:
            if g in man["graphs"]:
                graph_file(model_dir, GraphSpec(g, man["graphs"][g]))
    fallbacks: List[dict] = []
    for i, choice in enumerate(chain):
        kw = {**choice.opts, **opts}  # explicit options (e.g. device="cuda:1") win over the choice's defaults
        be = None
        try:
            be = _impl(choice)(model_dir, **kw)
            if warmup is not None:
                # graphs the model lacks are left to the caller's own check (e.g. "no 'neutralize' graph")
                be.warmup(graphs=[g for g in warmup if g in be.graphs])
        except (UsageError, InputError, OutputError, GraphMismatch):
            # bad options, a missing / unreadable input (int8 calibration), or an engine cache that cannot be
            # written: the user's to fix, on any backend (an unwritable cache fell back to torch, whose own refusal
            # of fp16 on the CPU was then the one error shown, exit 2); a graph that is not the one the manifest
            # describes: the model's (a fallback to torch ended in "internal error: RuntimeError", exit 1)
            raise
        except Exception as e:  # noqa: BLE001 - TensorRT / CUDA / ORT raise many types
            if be is not None:
                try:
                    be.close()
                except Exception:  # noqa: BLE001
                    pass
            if i + 1 >= len(chain):
                raise
            why = _one_line(e)
            log.warning("backend %s failed (%s); falling back to %s", choice.name, why, chain[i + 1].name)
            fallbacks.append({"backend": choice.name, "error": why})
            continue
        be.choice = choice
        be.fallbacks = fallbacks
        if i == 0:
            log.info("opened %s on %s (%s): %s", be.name, be.device, be.precision, choice.reason)
        else:
            log.info("opened %s on %s (%s) after %d failed backend(s)", be.name, be.device, be.precision, i)
        return be
    raise AssertionError("unreachable")  # candidates() is never empty
