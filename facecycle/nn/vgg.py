"""The VGG-19 front (conv1_1 … conv3_1) used by the generator and the normalizer.

ImageNet weights cannot be downloaded here. :func:`load_vgg19_front` copies
them from a local torchvision ``vgg19`` state-dict file when the user has
one; otherwise the front is trained with the rest of the model. The file is read weights-only and checked
(:func:`read_vgg19_state`): a bad one is a one-line :class:`~facecycle.checkpoint.CheckpointError`.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import torch
from torch import nn

from ..config import FaceCycleConfig
from .blocks import conv

__all__ = ["VGGFront", "TORCHVISION_VGG19_MAP", "VGG19_CHANNELS", "load_vgg19_front", "read_vgg19_state"]

log = logging.getLogger(__name__)

# our layer name -> index in torchvision's vgg19().features
TORCHVISION_VGG19_MAP: Dict[str, int] = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10,
    "conv3_2": 12, "conv3_3": 14, "conv3_4": 16, "conv4_1": 19,
}
#: (out, in) channels of each of those layers in VGG-19 (3×3 convolutions)
VGG19_CHANNELS: Dict[str, Tuple[int, int]] = {
    "conv1_1": (64, 3), "conv1_2": (64, 64), "conv2_1": (128, 64), "conv2_2": (128, 128), "conv3_1": (256, 128),
    "conv3_2": (256, 256), "conv3_3": (256, 256), "conv3_4": (256, 256), "conv4_1": (512, 256),
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


def read_vgg19_state(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The VGG-19 layers of a torchvision ``vgg19`` state-dict file (``features.<i>.weight``/``bias`` of every layer
    in :data:`TORCHVISION_VGG19_MAP`; a ``{"state_dict": ...}`` wrapper is unwrapped), read weights-only by
    :func:`facecycle.checkpoint.load_weights_only`. A :class:`~facecycle.checkpoint.CheckpointError` (one line naming
    the file) for a file that is no such state dict: a crafted pickle (nothing of it runs), an empty file, other
    keys, other shapes, NaN or inf."""
    from ..checkpoint import CheckpointError, load_weights_only

    sd = load_weights_only(path)
    if isinstance(sd, Mapping) and isinstance(sd.get("state_dict"), Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: a {type(sd).__name__}, not a torchvision vgg19 state dict")
    out: Dict[str, torch.Tensor] = {}
    for name, idx in TORCHVISION_VGG19_MAP.items():
        cout, cin = VGG19_CHANNELS[name]
        for part, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{idx}.{part}"
            t = sd.get(key)
            if t is None:
                raise CheckpointError(f"{path}: no {key} (not a torchvision vgg19 state dict?)")
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise CheckpointError(f"{path}: {key} is a {type(t).__name__}"
                                      f"{' of ' + str(t.dtype) if isinstance(t, torch.Tensor) else ''}, not a "
                                      "tensor of weights")
            if tuple(t.shape) != shape:
                raise CheckpointError(f"{path}: {key} has shape {tuple(t.shape)}; VGG-19's {name} has {shape} "
                                      "(not a torchvision vgg19 state dict?)")
            if not bool(torch.isfinite(t).all()):
                raise CheckpointError(f"{path}: {key} holds non-finite weights (NaN or inf)")
            out[key] = t
    return out


def load_vgg19_front(module: nn.Module, weights: Union[str, Path, Mapping[str, torch.Tensor], None] = None,
                     source: Union[str, Path, None] = None, *, path: Union[str, Path, None] = None) -> int:
    """Copy ImageNet VGG-19 weights into ``module``: from a torchvision state-dict file (read by
    :func:`read_vgg19_state`), or the state :func:`read_vgg19_state` returned (to read the file once for several
    modules; ``source``, the file's name, then names it in errors).

    ``module`` is anything with some of the ``conv1_1`` … ``conv4_1`` layers (a :class:`VGGFront` subclass, whose
    layers are ``Sequential(conv, ReLU)``, or :class:`facecycle.losses.PerceptualNet`, whose layers are the convs).
    Returns the number of layers copied. Raises :class:`~facecycle.checkpoint.CheckpointError` (a ValueError too)
    for a file that is no vgg19 state dict, or on a width mismatch (ImageNet weights fit only width 1.0 configs).
    ``path=`` is the keyword's earlier name (deprecated: a DeprecationWarning; ``weights=`` takes a file too).
    """
    from ..checkpoint import CheckpointError

    if path is not None:
        if weights is not None:
            raise TypeError("load_vgg19_front(): give weights= or its deprecated name path=, not both")
        warnings.warn("load_vgg19_front(path=...) is deprecated: the argument is weights= (a file or a state dict)",
                      DeprecationWarning, stacklevel=2)
        weights = path
    if weights is None:
        raise TypeError("load_vgg19_front() missing the weights (a torchvision vgg19 state-dict file or state)")

    if source is None:
        source = weights if isinstance(weights, (str, Path)) else "the VGG-19 weights"
    sd = read_vgg19_state(weights) if isinstance(weights, (str, Path)) else weights
    n = 0
    for name, idx in TORCHVISION_VGG19_MAP.items():
        layer = getattr(module, name, None)
        if layer is None:
            continue
        convm = layer[0] if isinstance(layer, nn.Sequential) else layer
        w, b = sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"]
        if tuple(w.shape) != tuple(convm.weight.shape):
            raise CheckpointError(
                f"{source}: features.{idx}.weight has shape {tuple(w.shape)}, {name} needs "
                f"{tuple(convm.weight.shape)} (ImageNet weights fit width 1.0 configs only)"
            )
        with torch.no_grad():
            convm.weight.copy_(w)
            convm.bias.copy_(b)
        n += 1
    log.info("loaded %d VGG-19 layers from %s", n, source)
    return n
