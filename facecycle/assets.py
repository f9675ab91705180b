"""Files shipped inside the package (the default model)."""
from __future__ import annotations

from pathlib import Path

from .errors import ModelError

__all__ = ["default_model_dir"]


def default_model_dir() -> Path:
    """The shipped default model: ``facecycle/assets/default`` (``manifest.json`` + ONNX graphs).

    Raises:
        ModelError: the directory has no ``manifest.json`` (not installed/trained yet).
    """
    d = Path(__file__).resolve().parent / "assets" / "default"
    if not (d / "manifest.json").is_file():
        raise ModelError(f"no default model at {d} (manifest.json missing); pass --model DIR with an exported "
                         "model (facecycle export --checkpoint C --out DIR) or reinstall the package")
    return d
