"""Building blocks shared by the FaceCycle modules.

Names of sub-modules follow the authors' released checkpoints so that their
state dicts load without renaming.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LRELU_SLOPE", "conv", "SelfAttention", "ResBlock", "init_weights"]

LRELU_SLOPE = 0.1


def conv(cin: int, cout: int, k: int = 3, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """2-D convolution with padding ``k // 2`` (the paper's "conv k/s")."""
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=bias)


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE)


class SelfAttention(nn.Module):
    """Channel self-attention of FaceCycle.

    theta(x) is soft-maxed over positions (B×C×N), phi(x) is B×C×N,
    similarity = phi·thetaᵀ (B×C×C); g(x) is soft-maxed over channels;
    out = LeakyReLU(x + similarity·g).

    Shapes: x (B, C, H, W) float -> (B, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.g = nn.Conv2d(channels, channels, 1)
        self.theta = nn.Conv2d(channels, channels, 1)
        self.phi = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        theta = torch.softmax(self.theta(x).flatten(2), dim=2)  # B,C,N over positions
        phi = self.phi(x).flatten(2)  # B,C,N
        sim = torch.bmm(phi, theta.transpose(1, 2))  # B,C,C
        g = torch.softmax(self.g(x).flatten(2), dim=1)  # B,C,N over channels
        att = torch.bmm(sim, g).reshape(b, c, h, w)
        return F.leaky_relu(x + att, LRELU_SLOPE)


class ResBlock(nn.Module):
    """conv3 → LeakyReLU → conv3, plus the input, LeakyReLU. Shape-preserving."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv(channels, channels, 3)
        self.conv2 = conv(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.leaky_relu(self.conv1(x), LRELU_SLOPE))
        return F.leaky_relu(x + y, LRELU_SLOPE)


def init_weights(module: nn.Module) -> None:
    """The paper's init: conv N(0, sqrt(2/(k·k·out))), linear N(0, 0.01), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            k0, k1 = m.kernel_size
            n = k0 * k1 * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
