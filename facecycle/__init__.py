"""FaceCycle RT: real-time facial analysis built on FaceCycle (ICCV 2021).

This package is the bottom layer: the model, training and probes, and the
basics every other package uses (errors, files, config, preprocess, assets).
It imports none of the others (``engines``, ``realtime``, ``ui``,
``facecycle_cli``). The pipeline's :class:`Analyzer` is
``from realtime import Analyzer``.

The top level imports no torch. ``load_checkpoint`` and ``FaceCycle`` need
torch (the ``[torch]`` extra).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, List

# ONNX Runtime >= 1.29 on Linux starts telemetry when it is imported: a device id and an event queue under
# ~/.cache/Microsoft (the Python path, OS, CPU, memory; its sessions' model names and hashes), sent to Microsoft
# when a network is there. Users' machines and data are not ours to report on: it is off unless the user has set
# ORT_DISABLE_TELEMETRY themselves (ONNX Runtime reads it once, at its import; every package of ours imports this
# one first, and workers inherit the variable).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .config import FaceCycleConfig, get_config, list_configs, register_config

if TYPE_CHECKING:  # type checkers see the real names (at run time they are imported lazily: torch is optional)
    from .checkpoint import load_checkpoint, save_checkpoint
    from .model import FaceCycle

__version__ = "0.2.1"

__all__ = [
    "__version__", "FaceCycleConfig", "get_config", "list_configs", "register_config",
    "FaceCycle", "load_checkpoint", "save_checkpoint",
]


def __dir__() -> List[str]:  # the lazy names too (tab completion, dir())
    return sorted(set(globals()) | set(__all__))


def _lazy(name: str) -> Any:  # lazy imports keep torch optional
    if name in ("FaceCycle", "load_checkpoint", "save_checkpoint"):
        try:
            if name == "FaceCycle":
                from .model import FaceCycle
                return FaceCycle
            from . import checkpoint
            return getattr(checkpoint, name)
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            # the base install has no torch: a bare "No module named 'torch'" said nothing of the extra
            raise ImportError(f"facecycle.{name} needs PyTorch: pip install \"facecycle-rt[torch]\" (the pipeline, "
                              "`from realtime import Analyzer`, does not)") from None
    if name == "Analyzer":  # moved up to the pipeline layer: the model layer cannot import it
        raise ImportError("facecycle.Analyzer moved: use `from realtime import Analyzer`")
    raise AttributeError(f"module 'facecycle' has no attribute {name!r}")


if not TYPE_CHECKING:  # (hidden from type checkers: a module __getattr__ typed Any let any name, a typo too, pass)
    __getattr__ = _lazy
