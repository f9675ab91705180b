"""Small file utilities shared by export, engines and data tools (no torch)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union

__all__ = ["sha256_file"]


def sha256_file(path: Union[str, Path]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
