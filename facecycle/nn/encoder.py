"""Expression encoder [codegeneration] (the identity encoder [idcodegen] shares it)."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from ..config import FaceCycleConfig
from .blocks import ResBlock, SelfAttention, conv, init_weights, lrelu

__all__ = ["Encoder"]


class Encoder(nn.Module):
    """Face crop -> (conv feature, code).

    Shapes: image (B, 3, S, S) float, RGB, ImageNet-normalised ->
    feature (B, feature_dim) (2048 for the paper config), code (B, code_dim) in (−1, 1).
    """

    def __init__(self, cfg: FaceCycleConfig) -> None:
        super().__init__()
        c64, c128, c256 = cfg.ch(64), cfg.ch(128), cfg.ch(256)
        self.conv1 = nn.Sequential(conv(3, c64, 7, 2), lrelu(), conv(c64, c64), lrelu())
        self.layer1 = nn.Sequential(conv(c64, c64), lrelu(), SelfAttention(c64), conv(c64, c64), lrelu())
        self.layer2_1 = nn.Sequential(
            conv(c64, c128, 3, 2), lrelu(), SelfAttention(c128), conv(c128, c128), lrelu()
        )
        for i in range(cfg.enc_res_blocks):
            self.add_module(f"resblock{i + 1}", ResBlock(c128))
        self.n_res = cfg.enc_res_blocks
        self.layer2_2 = nn.Sequential(conv(c128, c128, 3, 2), lrelu(), conv(c128, c128), lrelu())
        self.layer3_1 = nn.Sequential(conv(c128, c256, 3, 2), lrelu(), conv(c256, c256), lrelu())
        self.layer3_2 = nn.Sequential(conv(c256, c256), lrelu(), conv(c256, c128), lrelu())
        self.expresscode = nn.Sequential(
            nn.Linear(cfg.feature_dim, cfg.hidden_dim), lrelu(), nn.Linear(cfg.hidden_dim, cfg.code_dim), nn.Tanh()
        )
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> flattened conv feature (B, feature_dim)."""
        x = self.layer2_1(self.layer1(self.conv1(x)))
        for i in range(self.n_res):
            x = getattr(self, f"resblock{i + 1}")(x)
        x = self.layer3_2(self.layer3_1(self.layer2_2(x)))
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feat = self.features(x)
        return feat, self.expresscode(feat)
