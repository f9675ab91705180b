"""The paper's training augmentations, batched in torch with an explicit generator.

Random resized crop (scale 0.95–1.05, ratio 0.95–1.05, output the input size),
colour jitter (brightness, contrast, saturation 0.05, hue 0.01) with p 0.8,
horizontal flip p 0.5 — drawn independently for every image. A mirror pair's
second image is flipped relative to the first before augmentation.
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = ["augment_pairs", "augment_batch", "color_jitter", "warp_affine", "normalize", "resize_blur",
           "affine_jitter", "brightness_contrast", "random_erase"]


def _rgb_to_yiq_rot(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB (B, 3, H, W) by ``angle`` radians (B,) in YIQ space."""
    m = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=x.dtype)
    minv = torch.linalg.inv(m)
    c, s = torch.cos(angle), torch.sin(angle)
    z, o = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([torch.stack([o, z, z], -1), torch.stack([z, c, -s], -1), torch.stack([z, s, c], -1)], -2)
    t = minv @ rot @ m  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", t, x)


def color_jitter(x: torch.Tensor, g: torch.Generator, b: float = 0.05, c: float = 0.05, s: float = 0.05,
                 h: float = 0.01, p: float = 0.8) -> torch.Tensor:
    """x: (B, 3, H, W) float RGB in [0, 1] -> jittered, clipped to [0, 1]."""
    n = x.shape[0]
    on = (torch.rand(n, generator=g) < p).to(x.dtype).view(n, 1, 1, 1)
    fb = 1 + (torch.rand(n, generator=g) * 2 - 1) * b
    fc = 1 + (torch.rand(n, generator=g) * 2 - 1) * c
    fs = 1 + (torch.rand(n, generator=g) * 2 - 1) * s
    fh = (torch.rand(n, generator=g) * 2 - 1) * h * 2 * math.pi
    y = x * fb.view(n, 1, 1, 1)
    gray = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]).unsqueeze(1)
    y = (y - gray.mean(dim=(2, 3), keepdim=True)) * fc.view(n, 1, 1, 1) + gray.mean(dim=(2, 3), keepdim=True)
    gray = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]).unsqueeze(1)
    y = (y - gray) * fs.view(n, 1, 1, 1) + gray
    y = _rgb_to_yiq_rot(y, fh)
    y = y.clamp(0, 1)
    return on * y + (1 - on) * x


def warp_affine(x: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """Sample (B, C, H, W) float images through (B, 2, 3) affine ``theta`` (grid units) into (B, C, size, size);
    bilinear, border padding."""
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize_blur(x: torch.Tensor, small: int, antialias: bool = False) -> torch.Tensor:
    """Blur (B, C, S, S) images by a bilinear resize to ``small`` px and back to S (``antialias``: on the way
    down, a proper low-pass; otherwise the plain bilinear resize, a milder blur)."""
    size = x.shape[-1]
    y = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=antialias)
    return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[0, 1] RGB (B, 3, H, W) -> (x − mean) / std, contiguous (the inverse of :func:`facecycle.losses.denormalize`)."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


def augment_batch(x: torch.Tensor, g: torch.Generator, flip: torch.Tensor,
                  scale=(0.95, 1.05), ratio=(0.95, 1.05)) -> torch.Tensor:
    """Random resized crop + flip of (B, 3, S, S) float in [0, 1] (edge padding beyond the border)."""
    n = x.shape[0]
    area = scale[0] + torch.rand(n, generator=g) * (scale[1] - scale[0])
    logr = math.log(ratio[0]) + torch.rand(n, generator=g) * (math.log(ratio[1]) - math.log(ratio[0]))
    r = torch.exp(logr)
    sw, sh = torch.sqrt(area * r), torch.sqrt(area / r)  # crop side / image side
    tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - sw).abs()
    ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - sh).abs()
    sx = torch.where(flip, -sw, sw)
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, tx
    theta[:, 1, 1], theta[:, 1, 2] = sh, ty
    return warp_affine(x, theta, x.shape[-1])


def augment_pairs(a: torch.Tensor, b: torch.Tensor, mirror: torch.Tensor, g: torch.Generator,
                  mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (P, S, S, 3) RGB pairs -> normalised float32 X = [a; b] (2P, 3, S, S).

    ``mirror[i]`` makes b[i] the mirror of a[i] (b[i] itself is ignored then).
    """
    x = torch.cat((a, b)).permute(0, 3, 1, 2).float().div_(255.0)
    p = a.shape[0]
    fa = torch.rand(p, generator=g) < 0.5
    fb_ = torch.rand(p, generator=g) < 0.5
    # a mirror pair uses a's image for b with the opposite flip
    x[p:][mirror] = x[:p][mirror]
    fb_ = torch.where(mirror, ~fa, fb_)
    x = augment_batch(x, g, torch.cat((fa, fb_)))
    x = color_jitter(x, g)
    return normalize(x, mean, std)


def affine_jitter(x: torch.Tensor, g: torch.Generator, scale: Tuple[float, float] = (0.88, 1.12),
                  rot_deg: float = 12.0, shift: float = 0.08, flip: bool = True, zoom: float = 1.0) -> torch.Tensor:
    """Random similarity transform (+ flip) of (B, C, H, W) float images, border padding.

    ``zoom`` < 1 first cuts the centre ``zoom`` fraction (a tighter framing).
    """
    n = x.shape[0]
    s = scale[0] + torch.rand(n, generator=g) * (scale[1] - scale[0])
    a = (torch.rand(n, generator=g) * 2 - 1) * math.radians(rot_deg)
    tx = (torch.rand(n, generator=g) * 2 - 1) * shift
    ty = (torch.rand(n, generator=g) * 2 - 1) * shift
    fl = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    k = zoom / s
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = k * torch.cos(a) * fl
    theta[:, 0, 1] = -k * torch.sin(a)
    theta[:, 1, 0] = k * torch.sin(a) * fl
    theta[:, 1, 1] = k * torch.cos(a)
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    return theta


def brightness_contrast(x: torch.Tensor, g: torch.Generator, b: float, c: float) -> torch.Tensor:
    """Brightness / contrast jitter of [0, 1] images (B, C, H, W)."""
    n = x.shape[0]
    fb = (torch.rand(n, generator=g) * 2 - 1) * b
    fc = 1 + (torch.rand(n, generator=g) * 2 - 1) * c
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * fc.view(n, 1, 1, 1) + m + fb.view(n, 1, 1, 1)).clamp(0, 1)


def random_erase(x: torch.Tensor, g: torch.Generator, p: float = 0.5,
                 frac: Tuple[float, float] = (0.1, 0.3)) -> torch.Tensor:
    """Random erasing: a grey rectangle (side fraction in ``frac``) on a fraction ``p`` of the images."""
    n, _, h, w = x.shape
    on = torch.rand(n, generator=g) < p
    sw = (frac[0] + torch.rand(n, generator=g) * (frac[1] - frac[0])) * w
    sh = (frac[0] + torch.rand(n, generator=g) * (frac[1] - frac[0])) * h
    cx = torch.rand(n, generator=g) * w
    cy = torch.rand(n, generator=g) * h
    xs = torch.arange(w).view(1, 1, w)
    ys = torch.arange(h).view(1, h, 1)
    m = ((xs - cx.view(n, 1, 1)).abs() < sw.view(n, 1, 1) / 2) & ((ys - cy.view(n, 1, 1)).abs() < sh.view(n, 1, 1) / 2)
    m = m & on.view(n, 1, 1)
    return torch.where(m.unsqueeze(1), torch.full_like(x, 0.5), x)
