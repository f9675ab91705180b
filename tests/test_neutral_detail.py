"""Sharp neutral faces: the numpy flow warp matches the model's torch warp; detail transfer keeps detail."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.neutral_detail import match_chroma, sharpen_neutral, warp_by_flow, warp_by_flows


def _face_like(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 120, np.uint8)
    cv2.ellipse(img, (size // 2, size // 2), (size // 3, size // 2 - 4), 0, 0, 360, (180, 150, 130), -1)
    noise = rng.integers(-30, 30, (size, size, 3))
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def test_zero_flow_is_identity():
    img = _face_like(96)
    out = warp_by_flow(img, np.zeros((2, 16, 16), np.float32))
    assert np.array_equal(out, img)


def test_numpy_warp_matches_the_model_warp():
    torch = pytest.importorskip("torch", reason="the reference warp is torch (pip install torch)")
    from facecycle.nn.warp import warp

    img = _face_like(64, 1)
    rng = np.random.default_rng(2)
    flow = (rng.normal(size=(2, 4, 4)) * 0.05).astype(np.float32)
    flow = cv2.resize(flow.transpose(1, 2, 0), (16, 16), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
    ref = warp(torch.from_numpy(img.transpose(2, 0, 1)[None].astype(np.float32)),
               torch.from_numpy(np.ascontiguousarray(flow)[None]))[0].numpy().transpose(1, 2, 0)
    ours = warp_by_flow(img, flow).astype(np.float32)
    inner = (slice(6, -6), slice(6, -6))  # borders differ by design (replicate vs zeros)
    # flow resizing differs slightly between cv2 and torch's align_corners interpolation
    assert np.abs(ours[inner] - ref[inner]).mean() < 6.0


def _smooth_flow(seed: int, scale: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = (rng.normal(size=(4, 4, 2)) * scale).astype(np.float32)
    return np.ascontiguousarray(cv2.resize(f, (16, 16), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1))


def test_several_passes_warp_the_crop_by_each_flow_in_order_and_resample_it_once():
    """Successive neutralization passes: the crop is warped by pass 1's flow, then by pass 2's; the maps are
    composed, so the image is interpolated once (sharper than two warps, otherwise the same)."""
    img = cv2.resize(_face_like(48, 4), (192, 192), interpolation=cv2.INTER_CUBIC)
    f1, f2 = _smooth_flow(5), _smooth_flow(6)
    both = warp_by_flows(img, np.stack([f1, f2])).astype(float)
    twice = warp_by_flow(warp_by_flow(img, f1), f2).astype(float)
    swapped = warp_by_flow(warp_by_flow(img, f2), f1).astype(float)
    inner = (slice(12, -12), slice(12, -12))
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im.astype(np.uint8), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert np.abs(both - twice)[inner].mean() < 0.5 * np.abs(swapped - twice)[inner].mean()  # order matters
    assert np.abs(both - twice)[inner].mean() < 4.0
    assert lap(both) > 1.05 * lap(twice)  # one interpolation, not two
    assert np.array_equal(warp_by_flows(img, f1), warp_by_flow(img, f1))  # one (2, h, w) flow: one warp
    assert np.array_equal(warp_by_flows(img, f1[None]), warp_by_flow(img, f1))
    zero = np.zeros_like(f1)
    assert np.array_equal(warp_by_flows(img, np.stack([f1, zero])), warp_by_flow(img, f1))
    gen = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    assert np.array_equal(sharpen_neutral(gen, img, f1[None]), sharpen_neutral(gen, img, f1))
    assert not np.array_equal(sharpen_neutral(gen, img, np.stack([f1, f2])), sharpen_neutral(gen, img, f1))


def test_detail_transfer_keeps_the_generators_content_and_the_crops_detail():
    hr = _face_like(192, 3)
    s = 48
    blurry = cv2.resize(cv2.GaussianBlur(cv2.resize(hr, (s, s), interpolation=cv2.INTER_AREA), (3, 3), 1.0), (s, s))
    flow = np.zeros((2, 16, 16), np.float32)
    out = sharpen_neutral(blurry, hr, flow, chroma=False)
    assert out.shape == (192, 192, 3)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    up = cv2.resize(blurry, (192, 192), interpolation=cv2.INTER_CUBIC)
    assert lap(out) > 0.5 * lap(hr) > lap(up)
    # the low band is the generator's
    low = cv2.resize(out, (s, s), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(low - blurry.astype(float)).mean() < 4.0
    # no larger output than asked for: an S×S crop gives the generator's image back (without a border)
    assert sharpen_neutral(blurry, blurry, flow, border=0, chroma=False, smooth=False) is blurry
    assert sharpen_neutral(blurry, blurry, flow).shape == blurry.shape


def test_the_border_comes_from_the_warped_crop_and_the_centre_from_the_generator():
    """The generator draws a frame along the image's edges (padding); the outer band is the warped crop's."""
    hr = _face_like(192, 4)
    gen = cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA)
    gen[:3, :] = gen[-3:, :] = gen[:, :3] = gen[:, -3:] = (90, 60, 140)  # a purple frame, as the generator's
    flow = np.zeros((2, 16, 16), np.float32)
    plain = sharpen_neutral(gen, hr, flow, border=0, chroma=False).astype(float)
    out = sharpen_neutral(gen, hr, flow, chroma=False).astype(float)
    edge = np.zeros((192, 192), bool)
    edge[:4, :] = edge[-4:, :] = edge[:, :4] = edge[:, -4:] = True
    assert np.abs(out[edge] - hr[edge]).mean() < 0.3 * np.abs(plain[edge] - hr[edge]).mean()
    centre = (slice(40, 152), slice(40, 152))
    assert np.array_equal(out[centre], plain[centre])  # inside the band: unchanged
    # at the model's size (a small face) the border is fixed too, and nothing else changes
    small = sharpen_neutral(gen, gen.copy(), flow, chroma=False, smooth=False)
    assert small.shape == gen.shape and np.array_equal(small[20:44, 20:44], gen[20:44, 20:44])


def _chroma(im: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(im, cv2.COLOR_RGB2LAB)[24:-24, 24:-24, 1:].astype(float).mean(axis=(0, 1))


def test_chroma_match_restores_the_crops_colour_and_keeps_lightness_and_shape():
    """The generator's colours drift (greyish, purple-tinted skin): its mean chroma is shifted to the crop's."""
    hr = _face_like(192, 5)
    gen = cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA).astype(int)
    gen = np.clip(gen + np.array([12, -10, 14]), 0, 255).astype(np.uint8)  # a purple cast
    flow = np.zeros((2, 16, 16), np.float32)
    off = sharpen_neutral(gen, hr, flow, chroma=False)
    on = sharpen_neutral(gen, hr, flow)
    err = lambda im: np.abs(_chroma(im) - _chroma(hr)).sum()  # noqa: E731
    assert err(off) > 8 and err(on) < 0.2 * err(off)
    grey = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(float)  # noqa: E731
    assert np.abs(grey(on) - grey(off)).mean() < 4.0  # lightness (and so the expression's shading) is kept
    m = match_chroma(gen, cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA))
    assert m.shape == gen.shape and m.dtype == np.uint8


def test_smoothing_removes_the_generators_dot_grid_and_keeps_its_face():
    """The generator leaves a pixel-period checkerboard on skin; smooth (the default) removes it from the neutral
    face and leaves the generator's smooth content and the crop's detail as they were."""
    hr = _face_like(192, 5)
    clean = cv2.GaussianBlur(cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA), (5, 5), 1.5)
    grid = np.indices((64, 64)).sum(0) % 2 * 2 - 1  # +1 / -1 checkerboard
    dotted = np.clip(clean.astype(int) + 12 * grid[..., None], 0, 255).astype(np.uint8)
    flow = np.zeros((2, 16, 16), np.float32)

    def grid_energy(im):  # the checkerboard's amplitude in the 64-px image under the output
        g = cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (64, 64), interpolation=cv2.INTER_AREA).astype(float)
        return abs(float((g * grid).mean()))

    raw = sharpen_neutral(dotted, hr, flow, chroma=False, smooth=False)
    out = sharpen_neutral(dotted, hr, flow, chroma=False)
    assert grid_energy(raw) > 4.0 and grid_energy(out) < 0.25 * grid_energy(raw)
    ref = sharpen_neutral(clean, hr, flow, chroma=False, smooth=False).astype(float)
    assert np.abs(out.astype(float) - ref).mean() < 0.5 * np.abs(raw.astype(float) - ref).mean()
    # at the model's size too
    small = sharpen_neutral(dotted, dotted.copy(), flow, border=0, chroma=False)
    assert grid_energy(small) < 0.25 * grid_energy(dotted)
