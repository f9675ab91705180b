"""Files shipped inside the package (the default model)."""
from __future__ import annotations

from pathlib import Path

from .errors import ModelError

__all__ = ["default_model_dir", "HEAD_FILE", "WEIGHT_NAMES"]

#: a model folder's files beside its graphs and manifest (here, below everything that reads or writes them):
#: the emotion head, and the PyTorch weights (``facecycle export`` writes the first name; the torch backend reads
#: either)
HEAD_FILE = "expression_head.safetensors"
WEIGHT_NAMES = ("model.safetensors", "weights.safetensors")


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
