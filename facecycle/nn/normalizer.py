"""Normalizer [Swap_Norm]: remove (denorm) or add (renorm) identity on a neutral face."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FaceCycleConfig
from .blocks import ResBlock, conv, init_weights
from .vgg import VGGFront

__all__ = ["CondNorm", "Normalizer"]


class CondNorm(nn.Module):
    """InstanceNorm (no affine) × γ(code) + β(code); γ, β are 1×1 convs on the code.

    Shapes: x (B, C, H, W), code (B, D) -> (B, C, H, W).
    """

    def __init__(self, code_dim: int, channels: int) -> None:
        super().__init__()
        self.beta = nn.Conv2d(code_dim, channels, 1)  # declared first: the authors' key order
        self.gamma = nn.Conv2d(code_dim, channels, 1)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        c = code.reshape(code.shape[0], -1, 1, 1)
        return F.instance_norm(x, eps=1e-5) * self.gamma(c) + self.beta(c)


class Normalizer(VGGFront):
    """Shapes: image (B, 3, S, S) normalised RGB, code (B, code_dim) -> image (B, 3, S, S)."""

    def __init__(self, cfg: FaceCycleConfig) -> None:
        super().__init__(cfg)
        c128, c256 = cfg.ch(128), cfg.ch(256)
        self.denorm = CondNorm(cfg.code_dim, c256)
        self.renorm = CondNorm(cfg.code_dim, c256)
        self.cnn = nn.Sequential(*[ResBlock(c256) for _ in range(cfg.norm_blocks)])
        self.cnn3 = nn.Sequential(ResBlock(c256))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(c256, c128, 4, 2, 1), nn.ReLU(), conv(c128, c128), nn.ReLU(),
            nn.ConvTranspose2d(c128, c128, 4, 2, 1), nn.ReLU(),
        )
        self.torgb = conv(c128, 3, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor, code: torch.Tensor, mode: str = "denorm") -> torch.Tensor:
        """``mode`` is ``"denorm"`` (de-identity, towards the mean face) or ``"renorm"``."""
        if mode not in ("denorm", "renorm"):
            raise ValueError(f"mode must be 'denorm' or 'renorm', not {mode!r}")
        _, f3 = self.front(x)
        y = getattr(self, mode)(f3, code)
        return self.torgb(self.up(self.cnn3(self.cnn(y))))
