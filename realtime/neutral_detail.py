"""Sharp neutral faces: the generator's low-resolution neutral face plus the detail of the warped crop.

FaceCycle's generator renders the neutral face at the model's input size (48 or
64 px), which is blurry next to the camera's crop. The flow that neutralizes the
face is known, so the full-resolution crop can be warped with the same flow:
that image has the crop's detail (skin, hair, eyes) but only moves pixels, so it
cannot close a smile on its own. :func:`sharpen_neutral` keeps the generator's
image below its own resolution and adds the warped crop's detail above it (a
two-band Laplacian blend), at the crop's size, and takes the image's outer band
from the warped crop, where the generator draws a frame. The generator's colours
drift (greyish, purple-tinted skin): its chroma is shifted to the warped crop's. Its
upsampling leaves a pixel-period dot grid on the skin, which a [1 2 1] filter removes first.

numpy / OpenCV only. Images are (H, W, 3) uint8 **RGB**.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

__all__ = ["warp_by_flow", "warp_by_flows", "sharpen_neutral", "match_chroma", "mean_chroma", "BORDER"]


def _sample_map(flow: np.ndarray, w: int, h: int) -> tuple:
    """(map_x, map_y) float32 (h, w): where each output pixel samples the image, for one flow (see
    :func:`warp_by_flow`)."""
    f = np.clip(np.asarray(flow, np.float32), -1.0, 1.0)
    fx = cv2.resize(f[0], (w, h), interpolation=cv2.INTER_LINEAR)
    fy = cv2.resize(f[1], (w, h), interpolation=cv2.INTER_LINEAR)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + fx * (w - 1) / 2.0, gy + fy * (h - 1) / 2.0


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Warp ``image`` as :func:`facecycle.nn.warp.warp` does, at the image's own size.

    Args:
        image: (H, W, C) uint8.
        flow: (2, h, w) float displacement (x, y) in normalised grid units
            (−1…1 spans the image, align-corners), clamped to [−1, 1].

    Returns:
        (H, W, C) uint8; outside the image the border is replicated.
    """
    h, w = image.shape[:2]
    mx, my = _sample_map(flow, w, h)
    return cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_by_flows(image: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """``image`` warped by one flow (2, h, w), or by several (K, 2, h, w) one after the other (the flows of
    successive neutralization passes: flow k moves the result of flows 1…k−1).

    The K sampling maps are composed first and the image is resampled once, so it is interpolated once,
    not K times (sharper than K calls of :func:`warp_by_flow`; the same up to interpolation).
    """
    f = np.asarray(flows, np.float32)
    if f.ndim == 3:
        return warp_by_flow(image, f)
    h, w = image.shape[:2]
    mx, my = _sample_map(f[-1], w, h)
    for earlier in f[-2::-1]:  # I_k(p) = I_{k-1}(M_k(p)): the total map is M_1(M_2(...M_K(p)))
        ex, ey = _sample_map(earlier, w, h)
        mx, my = (cv2.remap(ex, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE),
                  cv2.remap(ey, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return cv2.remap(image, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: the outer fraction of the neutral face taken from the flow-warped crop instead of the generator (feathered)
BORDER = 0.08


@lru_cache(maxsize=8)
def _border_weight(size: int, border: float) -> np.ndarray:
    """(size, size, 1) float32: 0 at the image's edge, rising linearly to 1 at ``border`` of the side inwards."""
    r = np.arange(size, dtype=np.float32)
    d = np.minimum(r, size - 1 - r)
    d = np.minimum(d[:, None], d[None, :])
    return np.clip(d / max(1e-6, border * size), 0.0, 1.0)[..., None]


def _centre_chroma(lab: np.ndarray, centre: float) -> np.ndarray:
    s = lab.shape[0]
    m = int(round(s * (1.0 - centre) / 2))
    return lab[m:s - m, m:s - m, 1:].astype(np.float32).mean(axis=(0, 1))


def mean_chroma(image: np.ndarray, centre: float = 0.75) -> np.ndarray:
    """(2,) float32: the mean CIELAB a*, b* (OpenCV's 8-bit scale) of (S, S, 3) uint8 RGB ``image`` over the
    centre ``centre`` of its side."""
    return _centre_chroma(cv2.cvtColor(image, cv2.COLOR_RGB2LAB), centre)


def match_chroma(image: np.ndarray, reference: np.ndarray, centre: float = 0.75) -> np.ndarray:
    """``image`` with its mean chroma (:func:`mean_chroma`) shifted to ``reference``'s; lightness is kept. Both
    (S, S, 3) uint8 RGB of the same size."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 1:] += mean_chroma(reference, centre) - _centre_chroma(lab, centre)
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def sharpen_neutral(neutral: np.ndarray, crop_hr: np.ndarray, flow: np.ndarray, border: float = BORDER,
                    chroma: bool = True, smooth: bool = True) -> np.ndarray:
    """The generator's neutral face with the detail of the flow-warped full-resolution crop.

    Args:
        neutral: (S, S, 3) uint8 RGB, the generator's output.
        crop_hr: (H, H, 3) uint8 RGB, the same square crop at a higher resolution (H ≥ S; H = S adds no detail).
        flow: (2, h, w) the neutralizing flow the generator used; or (K, 2, h, w), the flows of K successive
            passes (the generator's image is then the last pass's; the crop is warped by all K in order,
            :func:`warp_by_flows`).
        border: the outer fraction of the image where the warped crop replaces the generator's image (a
            linear feather from the edge inwards; 0 = none). The generator's padding leaves a grey frame and
            coloured bands along the edges, which the warped crop does not have (MODEL_CARD.md: 0.08 raised
            SSIM to the input from 0.65 to 0.71 on held-out frames).
        chroma: first shift the generator's mean chroma to the warped crop's (:func:`match_chroma`).
        smooth: first filter the generator's image with a 3×3 binomial kernel ([1 2 1]/4 each way), which
            removes its pixel-period checkerboard (the dot grid its upsampling leaves on skin) and keeps its lower
            frequencies (MODEL_CARD.md, experiment 16).

    Returns:
        (H, H, 3) uint8 RGB: ``up(neutral) + (warped − up(down(warped)))``, its border feathered into ``warped``.
    """
    s = neutral.shape[0]
    hh = crop_hr.shape[0]
    if hh < s or (hh == s and border <= 0 and not chroma and not smooth):
        return neutral
    warped = warp_by_flows(crop_hr, flow).astype(np.float32)
    small = warped if hh == s else cv2.resize(warped, (s, s), interpolation=cv2.INTER_AREA)
    if smooth:
        k = np.array([0.25, 0.5, 0.25], np.float32)
        neutral = np.clip(cv2.sepFilter2D(neutral.astype(np.float32), -1, k, k, borderType=cv2.BORDER_REPLICATE)
                          + 0.5, 0, 255).astype(np.uint8)
    if chroma:
        neutral = match_chroma(neutral, np.clip(small, 0, 255).astype(np.uint8))
    if hh == s:
        out = neutral.astype(np.float32)
    else:
        low = cv2.resize(small, (hh, hh), interpolation=cv2.INTER_CUBIC)
        base = cv2.resize(neutral.astype(np.float32), (hh, hh), interpolation=cv2.INTER_CUBIC)
        out = base + (warped - low)
    if border > 0:
        w = _border_weight(hh, float(border))
        out = w * out + (1.0 - w) * warped
    return np.clip(out, 0, 255).astype(np.uint8)
