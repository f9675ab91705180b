"""Expression encoder [codegeneration] (the identity encoder [idcodegen] shares it)."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FaceCycleConfig
from .blocks import ResBlock, SelfAttention, conv, init_weights, lrelu

__all__ = ["Encoder", "lowpass_matrix"]


def lowpass_matrix(size: int, px: int) -> torch.Tensor:
    """(size, size) float32 ``A`` such that ``A @ x @ A.T`` is the (…, size, size) image ``x`` resized to ``px``
    pixels (bilinear, antialiased) and back to ``size`` (bilinear, half-pixel centres): a low-pass that keeps
    the detail of a ``px``-pixel image. Rows sum to 1, so it commutes with per-channel normalisation."""
    e = torch.eye(size, dtype=torch.float64).view(1, 1, size, size)
    down = F.interpolate(e, size=(px, size), mode="bilinear", antialias=True, align_corners=False)
    up = F.interpolate(down, size=(size, size), mode="bilinear", align_corners=False)
    return up[0, 0].float()


class Encoder(nn.Module):
    """Face crop -> (conv feature, code).

    Shapes: image (B, 3, S, S) float, RGB, ImageNet-normalised ->
    feature (B, feature_dim) (2048 for the paper config), code (B, code_dim) in (−1, 1).
    ``identity=True`` builds the identity encoder: channels from ``config.width`` (not
    ``encoder_width``), so its feature is ``config.ch(128) * 4 * 4`` long; only its code is used.
    With ``config.detail_px`` the expression encoder's :meth:`features` (what the emotion head reads) see the
    input low-passed to that many pixels (:func:`lowpass_matrix`; a fixed buffer, not in the state dict); the
    code (:meth:`forward`) and the identity encoder read the sharp image.
    """

    def __init__(self, cfg: FaceCycleConfig, identity: bool = False) -> None:
        super().__init__()
        # ``config.encoder_width`` widens the expression encoder alone; the identity encoder keeps ``width``
        ch = cfg.ch if identity else cfg.enc_ch
        c64, c128, c256 = ch(64), ch(128), ch(256)
        self.conv1 = nn.Sequential(conv(3, c64, 7, 2), lrelu(), conv(c64, c64), lrelu())
        self.layer1 = nn.Sequential(conv(c64, c64), lrelu(), SelfAttention(c64), conv(c64, c64), lrelu())
        self.layer2_1 = nn.Sequential(
            conv(c64, c128, 3, 2), lrelu(), SelfAttention(c128), conv(c128, c128), lrelu()
        )
        for i in range(cfg.enc_res_blocks):
            self.add_module(f"resblock{i + 1}", ResBlock(c128))
        self.n_res = cfg.enc_res_blocks
        self.gray = bool(cfg.gray_input)
        if self.gray:
            m = torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1)
            s = torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1)
            self.register_buffer("_mean", m, persistent=False)
            self.register_buffer("_std", s, persistent=False)
            self.register_buffer("_luma", torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1), persistent=False)
        px = 0 if identity else int(cfg.detail_px or 0)
        self.lowpass = 0 < px < cfg.image_size
        if self.lowpass:
            self.register_buffer("_lowpass", lowpass_matrix(cfg.image_size, px), persistent=False)
        self.layer2_2 = nn.Sequential(conv(c128, c128, 3, 2), lrelu(), conv(c128, c128), lrelu())
        self.layer3_1 = nn.Sequential(conv(c128, c256, 3, 2), lrelu(), conv(c256, c256), lrelu())
        self.layer3_2 = nn.Sequential(conv(c256, c256), lrelu(), conv(c256, c128), lrelu())
        _, fh, fw = cfg.feature_shape
        self.feature_dim = c128 * fh * fw
        self.expresscode = nn.Sequential(
            nn.Linear(self.feature_dim, cfg.hidden_dim), lrelu(), nn.Linear(cfg.hidden_dim, cfg.code_dim), nn.Tanh()
        )
        init_weights(self)

    def to_gray(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB (B, 3, S, S) -> the normalised image of its luma (B, 3, S, S), all channels equal grey."""
        y = ((x * self._std + self._mean) * self._luma).sum(dim=1, keepdim=True)
        return (y - self._mean) / self._std

    def low(self, x: torch.Tensor) -> torch.Tensor:
        """(…, S, S) -> the same low-passed to ``config.detail_px`` pixels (unchanged when that is off)."""
        if not self.lowpass:
            return x
        a = self._lowpass.to(x.dtype)
        return a @ x @ a.transpose(0, 1)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> flattened conv feature (B, feature_dim) of ``x`` as given (no low-pass).

        With ``config.gray_input`` only the luma of ``x`` is read.
        """
        if self.gray:
            x = self.to_gray(x)
        x = self.layer2_1(self.layer1(self.conv1(x)))
        for i in range(self.n_res):
            x = getattr(self, f"resblock{i + 1}")(x)
        x = self.layer3_2(self.layer3_1(self.layer2_2(x)))
        return x.flatten(1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> the feature the emotion head reads (B, feature_dim): the conv feature of ``x``
        low-passed to ``config.detail_px`` (of ``x`` itself when that is off)."""
        return self.trunk(self.low(x))

    def read(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (the feature the emotion head reads, code): :meth:`features` and :meth:`forward`'s
        code, in one batched pass of the sharp and the low-passed ``x`` when ``config.detail_px`` is set (what
        training uses, so that the head learns on the reading it is shipped with)."""
        if not self.lowpass:
            return self(x)
        b = x.shape[0]
        f = self.trunk(torch.cat([x, self.low(x)]))
        return f[b:], self.expresscode(f[:b])

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (conv feature, code) of the sharp ``x``: the code, which drives the motion decoder,
        reads every detail; only :meth:`features` is low-passed."""
        feat = self.trunk(x)
        return feat, self.expresscode(feat)
