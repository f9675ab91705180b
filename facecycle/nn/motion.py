"""Motion decoder [exptoflow]: expression code -> flow and backflow."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..config import FaceCycleConfig
from .blocks import ResBlock, SelfAttention, conv, init_weights, lrelu
from .warp import backflow

__all__ = ["MotionDecoder"]


class MotionDecoder(nn.Module):
    """Code (B, code_dim) -> flow, backflow, each (B, 2, 16, 16) in [−1, 1] (x, y)."""

    def __init__(self, cfg: FaceCycleConfig) -> None:
        super().__init__()
        c64, c128, c256 = cfg.ch(64), cfg.ch(128), cfg.ch(256)
        up = lambda: nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
        self.motiongen1 = nn.Sequential(
            conv(cfg.code_dim, c256 * 16, 1), nn.PixelShuffle(4), lrelu(), SelfAttention(c256),
            conv(c256, c256), lrelu(),
        )
        self.motiongen2 = nn.Sequential(
            up(), conv(c256, c128), lrelu(), SelfAttention(c128), conv(c128, c128), lrelu()
        )
        for i in range(cfg.dec_res_blocks):
            self.add_module(f"resblock{i + 1}", ResBlock(c128))
        self.n_res = cfg.dec_res_blocks
        self.toflow4 = nn.Sequential(up(), conv(c128, c64), lrelu(), conv(c64, 2, 1, bias=False), nn.Tanh())
        init_weights(self)
        nn.init.normal_(self.toflow4[3].weight, 0.0, 0.05)

    def forward(self, code: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.motiongen2(self.motiongen1(code.reshape(code.shape[0], -1, 1, 1)))
        for i in range(self.n_res):
            x = getattr(self, f"resblock{i + 1}")(x)
        flow = self.toflow4(x)
        return flow, backflow(flow)
