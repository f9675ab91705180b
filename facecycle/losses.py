"""FaceCycle training losses (FACECYCLE.md, "Training").

Images are (B, 3, S, S) float tensors. SSIM is computed on images mapped back
to [0, 1] (``denormalize``); the pixel L1 terms work in the normalised space
the model outputs, as the authors' code does.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import IMAGENET_MEAN, IMAGENET_STD
from .data.augment import resize_blur
from .nn.warp import warp

__all__ = [
    "gaussian_window", "ssim", "gram", "symmetry_loss", "denormalize", "PerceptualNet",
    "perceptual_loss", "motion_losses", "identity_losses", "scale_grad",
]


def denormalize(x: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> [0, 1]-range RGB (not clipped)."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * s + m


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32) -> torch.Tensor:
    """(size, size) Gaussian window summing to 1."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
         data_range: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11×11 Gaussian window (σ 1.5).

    Statistics over the valid region (no padding), population covariances,
    K1 0.01, K2 0.03 — equal to ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=data_range, channel_axis=...)``.

    Args:
        x, y: (B, C, H, W), H and W >= ``window``.
        reduction: "mean" (scalar) or "none" (per image, (B,)).
    """
    c = x.shape[1]
    w = gaussian_window(window, sigma, x.dtype).to(x.device).expand(c, 1, window, window)
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x * mu_x
    syy = F.conv2d(y * y, w, groups=c) - mu_y * mu_y
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2))
    if reduction == "none":
        return s.mean(dim=(1, 2, 3))
    return s.mean()


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix F·Fᵀ / (h·w) of a (B, C, h, w) feature map -> (B, C, C)."""
    b, c, h, w = f.shape
    v = f.reshape(b, c, h * w)
    return torch.bmm(v, v.transpose(1, 2)) / (h * w)


def symmetry_loss(x: torch.Tensor) -> torch.Tensor:
    """L1 between the left half of ``x`` and the mirrored right half (odd widths drop the centre column)."""
    w = x.shape[-1]
    half = w // 2
    left = x[..., :half]
    right = x[..., w - half:].flip(-1)
    return (left - right).abs().mean()


class PerceptualNet(nn.Module):
    """VGG-19 up to relu4_1, returning relu2_1, relu3_1, relu4_1 (frozen).

    ``width`` scales the channels (64, 128, 256, 512). With ImageNet weights
    (``load_vgg19_front``-compatible file, width 1) it is the paper's loss
    network; without them it is a fixed random VGG-19 seeded by ``seed``
    (Kaiming-normal weights, zero biases) — a random-feature texture loss,
    not the paper's perceptual loss.
    Input: (B, 3, H, W) in the ImageNet-normalised space.
    """

    LAYERS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool", ("conv2_1", 64, 128), "out",
              ("conv2_2", 128, 128), "pool", ("conv3_1", 128, 256), "out", ("conv3_2", 256, 256),
              ("conv3_3", 256, 256), ("conv3_4", 256, 256), "pool", ("conv4_1", 256, 512), "out"]

    def __init__(self, width: float = 1.0, seed: int = 0, weights: Optional[str] = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.plan: List[str] = []
        ch = lambda c: c if c == 3 else max(4, int(round(c * width)))  # noqa: E731
        for item in self.LAYERS:
            if isinstance(item, str):
                self.plan.append(item)
                continue
            name, cin, cout = item
            m = nn.Conv2d(ch(cin), ch(cout), 3, 1, 1)
            with torch.no_grad():
                std = math.sqrt(2.0 / (9 * ch(cin)))
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                m.bias.zero_()
            self.add_module(name, m)
            self.plan.append(name)
        if weights:
            from .nn.vgg import TORCHVISION_VGG19_MAP

            sd = torch.load(str(weights), map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd:
                sd = sd["state_dict"]
            with torch.no_grad():
                for name, idx in TORCHVISION_VGG19_MAP.items():
                    getattr(self, name).weight.copy_(sd[f"features.{idx}.weight"])
                    getattr(self, name).bias.copy_(sd[f"features.{idx}.bias"])
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        outs = []
        for step in self.plan:
            if step == "pool":
                x = F.max_pool2d(x, 2, 2)
            elif step == "out":
                outs.append(x)
            else:
                x = F.relu(getattr(self, step)(x))
        return outs


def perceptual_loss(net: PerceptualNet, preds: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Σ over layers of MSE between Gram matrices of each prediction and of ``target``.

    All predictions go through the network in one batch with the target.
    """
    n = len(preds)
    feats = net(torch.cat(list(preds) + [target], dim=0))
    b = target.shape[0]
    total = target.new_zeros(())
    for f in feats:
        g = gram(f)
        gt = g[n * b:].detach()
        for i in range(n):
            total = total + F.mse_loss(g[i * b:(i + 1) * b], gt)
    return total


def detail_excess(y: torch.Tensor, ref: torch.Tensor, low: int = 16, window: int = 5) -> torch.Tensor:
    """How much fine detail ``y`` has where ``ref`` has less: the mean of ReLU(local RMS of y's high band −
    local RMS of ref's), for (B, C, S, S) images; differentiable in ``y``.

    The high band is what a bilinear resize to ``low`` px and back loses (periods below S/low · 2 px); the
    local RMS is over ``window``² pixels. A generator may remove detail (close a mouth, smooth a fold) at no
    cost but pays for detail the input does not have where it is: the stripes and dots with which a strong
    critic is fooled (MODEL_CARD.md, experiment 9; the refit's ``detail_excess_weight``).
    """
    def band(z: torch.Tensor) -> torch.Tensor:
        e = (z - resize_blur(z, low, antialias=True)).square().mean(1, keepdim=True)
        return (F.avg_pool2d(e, window, 1, window // 2, count_include_pad=False) + 1e-6).sqrt()

    return F.relu(band(y) - band(ref.detach())).mean()


def scale_grad(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``t`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass (1: unchanged)."""
    return t if scale == 1.0 else t * scale + t.detach() * (1.0 - scale)


def _swap(t: torch.Tensor) -> torch.Tensor:
    """Exchange the two halves of a batch [a; b] -> [b; a]."""
    h = t.shape[0] // 2
    return torch.cat((t[h:], t[:h]), dim=0)


def motion_losses(model, x: torch.Tensor, pnet: Optional[PerceptualNet],
                  mean=IMAGENET_MEAN, std=IMAGENET_STD, perceptual_weight: float = 0.01,
                  enc_grad_scale: float = 1.0) -> Dict[str, torch.Tensor]:
    """Stage-1 loss of a batch X = [a; b] (2B images). Returns terms and ``loss``, plus outputs for previews.

    ``enc_grad_scale`` scales the gradient that reaches the expression encoder
    (the forward pass is unchanged); the semi-supervised recipe uses < 1 so
    that the cycle losses shape the encoder without outweighing supervision.
    ``_neutral_live`` / ``_recon_live`` / ``_flow_live`` are the neutral face, the reconstruction and the
    neutralizing flow with their graphs (for further losses); ``_feat`` is the (detached) feature the emotion head
    reads of ``x`` (:meth:`Encoder.read`: low-passed with ``config.detail_px``); ``_warped`` is ``x`` warped by
    the neutralizing flow (detached).
    """
    feat, code = model.codegeneration.read(x)  # the head's feature, the (sharp) code
    code = scale_grad(code, enc_grad_scale)
    flow, back = model.exptoflow(code)
    G = model.Swap_Generator
    neutral = G(x, flow)
    swapped = _swap(neutral)
    recon = G(swapped, back)
    rec_img = G(x, None)
    direct_fwd = warp(x, flow)
    direct_bwd = warp(_swap(direct_fwd), back)
    swap_bwd = warp(swapped, back)
    pixel = (F.l1_loss(recon, x) + F.l1_loss(rec_img, x) + F.l1_loss(swap_bwd, x)
             + 1.5 * F.l1_loss(direct_bwd, x))
    perc = (perceptual_loss(pnet, [neutral, swap_bwd, direct_bwd, recon], x)
            if pnet is not None and perceptual_weight > 0 else x.new_zeros(()))
    xd = denormalize(x, mean, std)
    s = ((1 - ssim(xd, denormalize(recon, mean, std))) + (1 - ssim(xd, denormalize(rec_img, mean, std)))
         + 1.5 * (1 - ssim(xd, denormalize(direct_bwd, mean, std))))
    sym = symmetry_loss(neutral) + 0.5 * symmetry_loss(direct_fwd)
    loss = pixel + perceptual_weight * perc + 5 * s + 1.5 * sym
    return {"loss": loss, "pixel": pixel.detach(), "perc": perc.detach(), "ssim": s.detach(),
            "sym": sym.detach(), "_neutral": neutral.detach(), "_recon": recon.detach(), "_flow": flow.detach(),
            "_neutral_live": neutral, "_recon_live": recon, "_flow_live": flow, "_feat": feat.detach(),
            "_warped": direct_fwd.detach()}


def identity_losses(model, x: torch.Tensor, pnet: Optional[PerceptualNet],
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, perceptual_weight: float = 0.01) -> Dict[str, torch.Tensor]:
    """Stage-2 loss (E, M, G frozen; trains the identity encoder and the normalizer)."""
    with torch.no_grad():
        _, code = model.codegeneration(x)
        flow, back = model.exptoflow(code)
        neutral = model.Swap_Generator(x, flow)
    idc = model.idcodegen(x)[1]
    mean_i = model.Swap_Norm(neutral, idc, "denorm")
    mean_face = mean_i.mean(dim=0, keepdim=True).expand_as(mean_i)
    rec_neutral = model.Swap_Norm(mean_face, idc, "renorm")
    recon = model.Swap_Generator(rec_neutral, back)
    direct_bwd = warp(rec_neutral, back)
    perc = (perceptual_loss(pnet, [direct_bwd, recon], x)
            if pnet is not None and perceptual_weight > 0 else x.new_zeros(()))
    xd = denormalize(x, mean, std)
    s = (1 - ssim(xd, denormalize(recon, mean, std))) + 0.8 * (1 - ssim(xd, denormalize(direct_bwd, mean, std)))
    pixel = F.l1_loss(recon, x) + 0.8 * F.l1_loss(direct_bwd, x) + F.l1_loss(rec_neutral, neutral)
    sym = symmetry_loss(rec_neutral)
    meanl = (mean_face - neutral).abs().mean()
    loss = pixel + perceptual_weight * perc + 5 * s + 1.5 * sym + meanl
    return {"loss": loss, "pixel": pixel.detach(), "perc": perc.detach(), "ssim": s.detach(),
            "sym": sym.detach(), "mean": meanl.detach(), "_neutral": rec_neutral.detach(),
            "_recon": recon.detach(), "_flow": flow.detach()}
