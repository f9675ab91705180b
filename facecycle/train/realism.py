"""A realism term for refits of the generator: a small patch discriminator trained beside it.

The critics that ask a neutral face to *read* neutral (the frozen emotion head, :mod:`.critic`) can be pleased by
patterns no face has: stripes, dot grids, coloured bands (MODEL_CARD.md, experiment 9). A discriminator that
learns, during the refit, to tell the generator's neutral faces from real video frames penalises exactly what
makes them unlike a photograph, at every place in the image (a PatchGAN: one logit per 26-px patch), and it
keeps learning as the generator changes, where a frozen penalty (:func:`facecycle.losses.detail_excess`) only
catches what it was written for.

Losses are the non-saturating logistic ones (softplus); the discriminator is spectrally normalised, so no
gradient penalty is needed at this size. Images are (B, 3, S, S) float, normalised as the model's input
(any S divisible by 4).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .freeze import frozen
from .state import SideModule

__all__ = ["PatchDiscriminator", "realism_loss", "Realism"]


class PatchDiscriminator(nn.Module):
    """(B, 3, S, S) normalised image -> (B, 1, S/4, S/4) logits, real > 0.

    Four spectrally normalised convolutions (4×4/2, 4×4/2, 3×3, 3×3), widths ``width``, 2×, 4×; receptive field
    26 px. ``width`` 32: 0.11 M parameters.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        w = width
        self.net = nn.Sequential(
            sn(nn.Conv2d(3, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 3, 1, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * w, 1, 3, 1, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def realism_loss(d: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's loss: softplus(−D(fake)), the patch mean; gradients reach ``fake`` only (D is frozen)."""
    with frozen(d):
        return F.softplus(-d(fake)).mean()


class Realism(SideModule):
    """A discriminator with its optimizer, saved beside a run (``disc.safetensors``: weights and Adam state).

    Args:
        device: where it trains.
        lr: Adam's learning rate (betas 0.5, 0.999).
        width: :class:`PatchDiscriminator` width.
    """

    FILE = "disc.safetensors"

    def __init__(self, device: torch.device | str = "cpu", lr: float = 2e-4, width: int = 32) -> None:
        self.d = self.module = PatchDiscriminator(width).to(device)
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        """:func:`realism_loss` of ``fake`` (B, 3, S, S)."""
        return realism_loss(self.d, fake)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> dict:
        """One discriminator update on softplus(−D(real)) + softplus(D(fake)) (patch means; neither input
        carries gradients back); returns that loss and the mean real / fake logits."""
        self.d.train()
        dr, df = self.d(real.detach()), self.d(fake.detach())
        loss = F.softplus(-dr).mean() + F.softplus(df).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"disc": float(loss.detach()), "disc_real": float(dr.detach().mean()),
                "disc_fake": float(df.detach().mean())}
