"""Opening the inference backend for a model directory.

Uses ``engines.open_backend`` when the engines package provides it; otherwise
a minimal ONNX Runtime CPU backend (:class:`LocalOrtBackend`) implementing
``engines.base.Backend``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from engines.base import Backend, GraphSpec
from facecycle.errors import BackendUnavailable, ModelError

__all__ = ["open_model", "LocalOrtBackend", "default_model_dir"]

log = logging.getLogger(__name__)


class LocalOrtBackend(Backend):
    """ONNX Runtime on the CPU; sessions are created lazily per graph. ``threads`` intra-op threads per session."""

    name = "onnxruntime"

    def __init__(self, model_dir: Union[str, Path], threads: int = 1) -> None:
        super().__init__(model_dir)
        self.threads = threads
        self._sessions: Dict[str, object] = {}

    def _session(self, spec: GraphSpec):
        s = self._sessions.get(spec.name)
        if s is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, int(self.threads))
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            p = self.model_dir / spec.file
            try:
                s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
            except Exception as e:  # noqa: BLE001
                raise ModelError(f"{p}: cannot load ({str(e).splitlines()[0]})") from None
            self._sessions[spec.name] = s
        return s

    def _run(self, spec: GraphSpec, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outs = self._session(spec).run(spec.output_names, inputs)
        return dict(zip(spec.output_names, outs))

    def close(self) -> None:
        self._sessions.clear()


def default_model_dir() -> Path:
    """The shipped default model (``facecycle.assets.default_model_dir()``)."""
    try:
        from facecycle.assets import default_model_dir as f
    except ImportError:
        import facecycle

        p = Path(facecycle.__file__).parent / "assets" / "default"
        if not (p / "manifest.json").is_file():
            raise ModelError(f"no default model installed ({p}); pass --model DIR (an exported model)") from None
        return p
    return Path(f())


def open_model(model_dir: Optional[Union[str, Path]] = None, backend: str = "auto", threads: int = 1,
               **opts) -> Backend:
    """Open ``model_dir`` (default: the shipped model) on ``backend``.

    ``opts`` go to ``engines.open_backend`` (e.g. ``precision="int8", calibration="faces.mp4"``).

    Raises:
        ModelError: not a model directory. BackendUnavailable: the backend cannot run here.
    """
    d = Path(model_dir) if model_dir else default_model_dir()
    if not d.exists():
        raise ModelError(f"{d}: model directory not found")
    try:
        import engines

        open_backend = getattr(engines, "open_backend", None)
    except ImportError:
        open_backend = None
    if open_backend is not None:
        # one intra-op thread, no spinning: the pipeline's other stages need the remaining core(s)
        return open_backend(d, backend=backend, intra_op_threads=threads, spin=False,
                            **{k: v for k, v in opts.items() if v is not None})
    if opts.get("precision") not in (None, "fp32"):
        raise BackendUnavailable(f"precision {opts['precision']!r} needs engines.open_backend")
    if backend not in ("auto", "onnxruntime", "ort", "cpu"):
        raise BackendUnavailable(f"backend {backend!r} is not available (engines.open_backend missing)")
    return LocalOrtBackend(d, threads=threads)
