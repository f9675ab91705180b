"""The JSON sidecar next to each CSV: what produced it (model, backend, detector, pose source, versions), written
and read here."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np

__all__ = ["versions", "write_sidecar", "read_sidecar"]


def versions() -> Dict[str, str]:
    """Versions of the libraries that shape the numbers in the CSV."""
    out = {"python": platform.python_version()}
    for mod in ("facecycle", "numpy", "onnxruntime", "av", "cv2", "scipy"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001
            pass
    return out


def write_sidecar(path: Union[str, Path], info: Dict[str, Any]) -> None:
    """Write ``info`` (plus ``versions`` and ``written_at``) atomically (temp file + rename)."""
    p = Path(path)
    d = dict(info)
    d.setdefault("versions", versions())
    d["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(d, indent=2, default=_default) + "\n")
    os.replace(tmp, p)


def read_sidecar(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The sidecar's JSON, or None when it is missing or unreadable (a torn write counts as missing)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
