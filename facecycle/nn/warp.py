"""Flow warping used by FaceCycle (de-expression / re-expression)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["identity_grid", "warp", "backflow", "flow_intensity"]


def identity_grid(b: int, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Identity sampling grid, (B, H, W, 2) with x then y in [-1, 1] (align_corners)."""
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), dim=-1).unsqueeze(0).expand(b, h, w, 2)


def warp(x: torch.Tensor, flow: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Sample ``x`` at the identity grid displaced by ``flow``.

    Args:
        x: (B, C, H, W) float tensor (image or feature map).
        flow: (B, 2, h, w) displacement in normalised grid units (x, y), where
            −1…1 spans the image; resized bilinearly to (H, W).
        clamp: clamp the flow to [−1, 1] first (as the paper's warps do).

    Returns:
        (B, C, H, W) warped tensor; bilinear, align_corners, zeros outside.
    """
    b, _, h, w = x.shape
    if flow.shape[-2:] != (h, w):
        flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=True)
    if clamp:
        flow = flow.clamp(-1.0, 1.0)
    grid = identity_grid(b, h, w, x.device, x.dtype) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def backflow(flow: torch.Tensor) -> torch.Tensor:
    """Inverse of a flow: −warp(flow, flow), clamped to [−1, 1]. (B, 2, h, w) -> same."""
    return (-warp(flow, flow)).clamp(-1.0, 1.0)


def flow_intensity(flow: torch.Tensor) -> torch.Tensor:
    """Expression intensity of a flow: (B, 2, h, w) -> (B,).

    The mean length of the displacement vectors, in units of the crop side
    (the grid spans 2 units, so the norm is halved): 0 for a face already in
    its neutral state, 0.05 when pixels move by 5 % of the crop on average.
    Head motion is part of the flow, so a turned head also raises it.
    """
    return 0.5 * torch.sqrt((flow * flow).sum(dim=1) + 1e-12).mean(dim=(1, 2))
