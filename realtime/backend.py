"""Opening the inference backend for a model directory (:func:`open_model`, through ``engines.open_backend``)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Union

from engines import open_backend
from engines.base import Backend
from facecycle.assets import default_model_dir
from facecycle.errors import ModelError

__all__ = ["open_model"]

log = logging.getLogger(__name__)


def open_model(model_dir: Optional[Union[str, Path]] = None, backend: str = "auto", threads: int = 1,
               **opts) -> Backend:
    """Open ``model_dir`` (default: the shipped model) on ``backend``.

    ``opts`` go to ``engines.open_backend`` (e.g. ``precision="int8", calibration="faces.mp4"``).

    Raises:
        ModelError: not a model directory. BackendUnavailable: the backend cannot run here.
    """
    d = Path(model_dir) if model_dir else Path(default_model_dir())
    if not d.exists():
        raise ModelError(f"{d}: model directory not found")
    # one intra-op thread, no spinning: the pipeline's other stages need the remaining core(s);
    # opts may carry warmup=[graphs] (built and run once while opening; "auto" falls back on failure)
    return open_backend(d, backend=backend, intra_op_threads=threads, spin=False,
                        **{k: v for k, v in opts.items() if v is not None})
