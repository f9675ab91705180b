"""Input normalisation in numpy (no torch): what every engine feeds the graphs."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["to_input", "from_output"]


def to_input(crops: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
             std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """uint8 RGB crops -> model input.

    Args:
        crops: (N, S, S, 3) or (S, S, 3) uint8, **RGB**, channel-last.

    Returns:
        (N, 3, S, S) float32, C-contiguous, (x/255 − mean)/std.
    """
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, S, S, 3) RGB crops, got shape {x.shape}")
    m = np.asarray(mean, np.float32) * 255.0
    s = 1.0 / (np.asarray(std, np.float32) * 255.0)
    y = (x.astype(np.float32) - m) * s
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def from_output(images: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Model output -> uint8 RGB images.

    Args:
        images: (N, 3, S, S) float32 in the normalised space.

    Returns:
        (N, S, S, 3) uint8 RGB, clipped.
    """
    x = np.asarray(images, np.float32).transpose(0, 2, 3, 1)
    y = (x * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)
