"""The VGG-19 front (conv1_1 … conv3_1) used by the generator and the normalizer.

ImageNet weights cannot be downloaded here. :func:`load_vgg19_front` copies
them from a local torchvision ``vgg19`` state-dict file when the user has
one; otherwise the front is trained with the rest of the model.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Tuple, Union

import torch
from torch import nn

from ..config import FaceCycleConfig
from .blocks import conv

__all__ = ["VGGFront", "TORCHVISION_VGG19_MAP", "load_vgg19_front"]

log = logging.getLogger(__name__)

# our layer name -> index in torchvision's vgg19().features
TORCHVISION_VGG19_MAP: Dict[str, int] = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
    "conv3_2": 12, "conv3_3": 14, "conv3_4": 16, "conv4_1": 19,
}


class VGGFront(nn.Module):
    """conv1_1..conv3_1 of VGG-19 with ReLUs and two max-pools.

    Shapes: x (B, 3, S, S) -> f2 (B, c128, S/2, S/2) after relu2_1,
    f3 (B, c256, S/4, S/4) after relu3_1.
    """

    def __init__(self, cfg: FaceCycleConfig) -> None:
        super().__init__()
        c64, c128, c256 = cfg.ch(64), cfg.ch(128), cfg.ch(256)
        self.conv1_1 = nn.Sequential(conv(3, c64), nn.ReLU())
        self.conv1_2 = nn.Sequential(conv(c64, c64), nn.ReLU())
        self.conv2_1 = nn.Sequential(conv(c64, c128), nn.ReLU())
        self.conv2_2 = nn.Sequential(conv(c128, c128), nn.ReLU())
        self.conv3_1 = nn.Sequential(conv(c128, c256), nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2)

    def front(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        f2 = self.conv2_1(self.pool(self.conv1_2(self.conv1_1(x))))
        f3 = self.conv3_1(self.pool(self.conv2_2(f2)))
        return f2, f3


def load_vgg19_front(module: nn.Module, path: Union[str, Path]) -> int:
    """Copy ImageNet VGG-19 weights from a torchvision state-dict file into ``module``.

    ``module`` is anything with ``conv1_1`` … ``conv3_1`` sub-modules (a
    :class:`VGGFront` subclass). The file is read with ``weights_only=True``.
    Returns the number of layers copied. Raises ``ValueError`` on a width
    mismatch (ImageNet weights fit only width 1.0 configs).
    """
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    n = 0
    for name, idx in TORCHVISION_VGG19_MAP.items():
        layer = getattr(module, name, None)
        if layer is None:
            continue
        convm = layer[0]
        w, b = sd.get(f"features.{idx}.weight"), sd.get(f"features.{idx}.bias")
        if w is None or b is None:
            raise ValueError(f"{path}: no features.{idx}.weight/bias (is it a torchvision vgg19 file?)")
        if tuple(w.shape) != tuple(convm.weight.shape):
            raise ValueError(
                f"{path}: features.{idx}.weight has shape {tuple(w.shape)}, {name} needs "
                f"{tuple(convm.weight.shape)} (ImageNet weights fit width 1.0 configs only)"
            )
        with torch.no_grad():
            convm.weight.copy_(w)
            convm.bias.copy_(b)
        n += 1
    log.info("loaded %d VGG-19 layers from %s", n, path)
    return n
