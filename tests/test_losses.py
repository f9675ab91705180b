"""Losses: SSIM against scikit-image, Gram matrix, symmetry, warps of zero / constant flows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facecycle.losses import PerceptualNet, gaussian_window, gram, perceptual_loss, ssim, symmetry_loss
from facecycle.nn.warp import backflow, warp


def test_ssim_matches_skimage():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 32, 40)).astype(np.float64)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    got = ssim(torch.from_numpy(a), torch.from_numpy(b), reduction="none").numpy()
    for i in range(2):
        ref = skm.structural_similarity(a[i], b[i], channel_axis=0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, data_range=1.0)
        assert got[i] == pytest.approx(ref, abs=1e-6)
    assert float(ssim(torch.from_numpy(a), torch.from_numpy(a))) == pytest.approx(1.0, abs=1e-9)


def test_ssim_by_hand_on_constant_images():
    # constant images x=0.2, y=0.6: variances 0, so SSIM = (2·μx·μy + C1) / (μx² + μy² + C1)
    c1 = 0.01 ** 2
    x = torch.full((1, 1, 11, 11), 0.2, dtype=torch.float64)
    y = torch.full((1, 1, 11, 11), 0.6, dtype=torch.float64)
    want = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    assert float(ssim(x, y)) == pytest.approx(want, rel=1e-9)
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11) and float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert int(w.argmax()) == 60  # the centre


def test_gram_by_hand():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    g = gram(f)
    v = f.reshape(2, 4)
    assert torch.allclose(g[0], v @ v.T / 4)
    assert g[0, 0, 0].item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert g[0, 0, 1].item() == pytest.approx((2 + 4) / 4)


def test_symmetry_loss():
    x = torch.rand(2, 3, 8, 8)
    sym = (x + x.flip(-1)) / 2
    assert symmetry_loss(sym).item() == pytest.approx(0.0, abs=1e-7)
    # left half 1, right half 0 -> |1 - 0| everywhere
    y = torch.zeros(1, 1, 4, 6)
    y[..., :3] = 1
    assert symmetry_loss(y).item() == pytest.approx(1.0)


def test_zero_flow_warps_to_identity():
    x = torch.rand(2, 3, 16, 20)
    out = warp(x, torch.zeros(2, 2, 4, 4))
    assert torch.allclose(out, x, atol=1e-5)


def test_backflow_of_constant_flow_is_its_negative():
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0], flow[:, 1] = 0.25, -0.125  # 2 and 1 cells on the 16-grid (spacing 2/15)
    bf = backflow(flow)
    # interior points sample inside the flow field: the backflow is exactly −flow there
    inner = bf[:, :, 3:-3, 3:-3]
    assert torch.allclose(inner[:, 0], torch.full_like(inner[:, 0], -0.25), atol=1e-5)
    assert torch.allclose(inner[:, 1], torch.full_like(inner[:, 1], 0.125), atol=1e-5)


def test_perceptual_loss_zero_for_identical_and_seeded():
    net_a, net_b = PerceptualNet(width=0.125, seed=3), PerceptualNet(width=0.125, seed=3)
    for p, q in zip(net_a.parameters(), net_b.parameters(), strict=True):
        assert torch.equal(p, q) and not p.requires_grad
    x = torch.randn(2, 3, 32, 32)
    assert perceptual_loss(net_a, [x.clone()], x).item() == pytest.approx(0.0, abs=1e-8)
    assert perceptual_loss(net_a, [torch.randn_like(x)], x).item() > 0
