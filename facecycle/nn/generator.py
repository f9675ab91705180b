"""Generator [Swap_Generator]: image (+ flow) -> image (de-/re-expression)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..config import FaceCycleConfig
from .blocks import ResBlock, conv, init_weights
from .vgg import VGGFront
from .warp import warp

__all__ = ["Generator"]


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.ReLU(), conv(cout, cout), nn.ReLU())


class Generator(VGGFront):
    """Warp the VGG features of an image by a flow and decode an image.

    Shapes: image (B, 3, S, S) normalised RGB, flow (B, 2, h, w) or None ->
    image (B, 3, S, S) in the same normalised space (no output activation).
    In training mode Gaussian noise (``cfg.noise_std``) is added to the
    feature statistics that feed the residual branches; in eval mode the
    noise is zero, so inference is deterministic.
    """

    def __init__(self, cfg: FaceCycleConfig) -> None:
        super().__init__(cfg)
        c128, c256 = cfg.ch(128), cfg.ch(256)
        self.noise_std = cfg.noise_std
        self.redconv = nn.Sequential(conv(c256, c256), nn.ReLU())
        self.cnn = nn.Sequential(*[ResBlock(c256) for _ in range(cfg.gen_blocks)])
        self.up = _up(c256, c128)
        self.up2 = _up(c128 + c128, c128)
        self.torgb = conv(c128, 3)
        self.noise_encoding1 = nn.Sequential(conv(c128, c128), nn.ReLU(), conv(c128, c128), nn.ReLU())
        self.noise_encoding0 = nn.Sequential(conv(c256, c256), nn.ReLU(), conv(c256, c256), nn.ReLU())
        init_weights(self)

    def _residual(self, f: torch.Tensor, enc: nn.Module) -> torch.Tensor:
        stat = f.mean(dim=(2, 3), keepdim=True).expand_as(f)
        if self.training and self.noise_std > 0:
            stat = stat + torch.randn_like(f) * self.noise_std
        return enc(stat)

    def forward(self, x: torch.Tensor, flow: Optional[torch.Tensor] = None) -> torch.Tensor:
        f2, f3 = self.front(x)
        if flow is not None:
            f3 = warp(f3, flow) + self._residual(f3, self.noise_encoding0)
            f2 = warp(f2, flow) + self._residual(f2, self.noise_encoding1)
        y = self.up(self.cnn(self.redconv(f3)))
        y = self.up2(torch.cat((y, f2), dim=1))
        return self.torgb(y)
