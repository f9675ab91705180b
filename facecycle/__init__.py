"""FaceCycle RT: real-time facial analysis built on FaceCycle (ICCV 2021).

The top level imports no torch. ``load_checkpoint`` and ``FaceCycle`` need
torch (the ``[torch]`` extra); ``Analyzer`` runs on ONNX Runtime.
"""
from __future__ import annotations

from typing import Any

from .config import FaceCycleConfig, get_config, list_configs, register_config

__version__ = "0.1.0"

__all__ = [
    "__version__", "FaceCycleConfig", "get_config", "list_configs", "register_config",
    "FaceCycle", "load_checkpoint", "save_checkpoint", "Analyzer",
]


def __getattr__(name: str) -> Any:  # lazy imports keep torch optional
    if name == "FaceCycle":
        from .model import FaceCycle
        return FaceCycle
    if name in ("load_checkpoint", "save_checkpoint"):
        from . import checkpoint
        return getattr(checkpoint, name)
    if name == "Analyzer":
        from realtime.analyzer import Analyzer
        return Analyzer
    raise AttributeError(f"module 'facecycle' has no attribute {name!r}")
