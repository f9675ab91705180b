"""Architecture configs for FaceCycle, kept in a small registry (timm style).

A config names every size the model depends on. ``paper`` is the published
architecture at 64 px; ``paper128`` the same at 128 px; ``small`` halves the
widths (our shipped default is trained from it); ``tiny`` is for fast tests.

This module imports no torch: the inference path reads configs too.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List

from .errors import UsageError

__all__ = [
    "FaceCycleConfig",
    "register_config",
    "get_config",
    "list_configs",
    "UnknownConfig",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FaceCycleConfig:
    """Sizes of every FaceCycle module.

    Attributes:
        name: registry name.
        image_size: square input side in pixels (64 in the paper; 128 optional).
        width: channel multiplier applied to every hidden width (1.0 = paper).
        code_dim: size of the expression and identity codes (256 in the paper).
        hidden_dim: hidden size of the code MLP (512 in the paper).
        gen_blocks: residual blocks in the generator (8 in the paper).
        norm_blocks: residual blocks in the normalizer before its last block (6).
        enc_res_blocks: residual blocks of the encoders at 1/4 resolution (2).
        dec_res_blocks: residual blocks of the motion decoder (2).
        noise_std: std of the Gaussian noise the generator adds to its
            feature statistics while training (0 in eval mode, so inference
            is deterministic).
        mean: input normalisation mean (RGB).
        std: input normalisation std (RGB).
        crop_scale: face framing the model was trained on: side of the square
            crop / longer side of the face detector's box (1.7 = the paper's
            loose VoxCeleb-like crop; ~1.0 = FER-2013's tight framing).
            Inference crops with this value (:mod:`realtime.crops`).
        encoder_width: channel multiplier of the expression encoder alone (0 = ``width``):
            a wider expression encoder with a narrower generator (the identity encoder keeps ``width``).
        feature_flip: the model's ``feature`` (the emotion head's input) is the mean of the
            encoder feature of the image and of its mirror image (test-time flip averaging;
            the expression code and the flow still come from the image alone).
        gray_input: the encoders read the luma of the input only (colour
            invariant expression code; FER-2013 is greyscale). The generator
            still warps and renders the colour image.
        detail_px: the model's ``feature`` (the emotion head's input) is the expression encoder's
            feature of the input low-passed to this many pixels across (antialiased bilinear down to
            ``detail_px``, bilinear back up to ``image_size``; :func:`facecycle.nn.encoder.lowpass_matrix`),
            0 = off. Set it to the resolution of the labelled stills (FER-2013: 48 px) so that sharp
            video crops reach the head with the stills' detail (MODEL_CARD.md, experiment 19). The
            expression code (and so the flow and the neutral face) and the identity code still read
            the sharp image.
    """

    name: str = "paper"
    image_size: int = 64
    width: float = 1.0
    code_dim: int = 256
    hidden_dim: int = 512
    gen_blocks: int = 8
    norm_blocks: int = 6
    enc_res_blocks: int = 2
    dec_res_blocks: int = 2
    noise_std: float = 1.0
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_scale: float = 1.7
    gray_input: bool = False
    encoder_width: float = 0.0
    feature_flip: bool = False
    detail_px: int = 0

    def enc_ch(self, c: int) -> int:
        """Channel count of the expression encoder: ``encoder_width`` when set (> 0), else ``width``."""
        w = self.encoder_width or self.width
        return max(4, int(round(c * w)))

    def ch(self, c: int) -> int:
        """Scale a paper channel count by ``width`` (at least 4 channels)."""
        return max(4, int(round(c * self.width)))

    @property
    def feature_shape(self) -> tuple:
        """Shape (C, H, W) of the encoder's conv feature for ``image_size``."""
        s = self.image_size
        # conv7/2, conv3/2, conv3/2, conv3/2 with padding k//2: ceil halvings
        for _ in range(4):
            s = (s + 1) // 2
        return (self.enc_ch(128), s, s)

    @property
    def feature_dim(self) -> int:
        """Length of the flattened conv feature (2048 for the paper config)."""
        c, h, w = self.feature_shape
        return c * h * w

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FaceCycleConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        d = dict(d)
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(float(v) for v in d[k])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **kw: Any) -> "FaceCycleConfig":
        return dataclasses.replace(self, **kw)


_REGISTRY: Dict[str, Callable[[], FaceCycleConfig]] = {}


def register_config(fn: Callable[[], FaceCycleConfig]) -> Callable[[], FaceCycleConfig]:
    """Decorator: register a zero-argument config factory under its config's name."""
    cfg = fn()
    _REGISTRY[cfg.name] = fn
    return fn


class UnknownConfig(UsageError, ValueError):
    """A config name that is not registered: a usage error (exit 2) wherever a command meets it (``--config`` of
    ``export``, ``model``, ``train``, ``bench``), and still a ``ValueError`` for code that catches that."""


def get_config(name: str) -> FaceCycleConfig:
    """Return the registered config ``name`` (:class:`UnknownConfig`, a ``ValueError``, listing the choices
    otherwise)."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):  # TypeError: a name that is no string (unhashable)
        raise UnknownConfig(f"unknown config {name!r}; choose from {', '.join(list_configs())}") from None
    return factory()


def list_configs() -> List[str]:
    return sorted(_REGISTRY)


@register_config
def paper() -> FaceCycleConfig:
    return FaceCycleConfig(name="paper")


@register_config
def paper128() -> FaceCycleConfig:
    return FaceCycleConfig(name="paper128", image_size=128)


@register_config
def small() -> FaceCycleConfig:
    return FaceCycleConfig(name="small", width=0.5, hidden_dim=256, gen_blocks=4, norm_blocks=3)


@register_config
def tiny() -> FaceCycleConfig:
    return FaceCycleConfig(
        name="tiny", image_size=32, width=0.125, code_dim=16, hidden_dim=32,
        gen_blocks=1, norm_blocks=1, enc_res_blocks=1, dec_res_blocks=1,
    )


@register_config
def small_w025() -> FaceCycleConfig:
    """``small`` at a quarter of the paper's width: the architecture of the shipped default model."""
    return FaceCycleConfig(name="small-w0.25", width=0.25, hidden_dim=256, gen_blocks=4, norm_blocks=3)


@register_config
def rt48() -> FaceCycleConfig:
    """A 48-px semi-supervised config: the expression encoder at 1/2 and the rest at 3/8 of the paper's width,
    FER-2013 framing (crop 1.03 × the face box), grey encoders."""
    return FaceCycleConfig(name="rt48", image_size=48, width=0.375, encoder_width=0.5, hidden_dim=256,
                           gen_blocks=4, norm_blocks=3, crop_scale=1.03, gray_input=True)


@register_config
def rt48_narrow() -> FaceCycleConfig:
    """``rt48`` at 3/8 of the paper's width (faster, a little less accurate)."""
    return FaceCycleConfig(name="rt48-w0.375", image_size=48, width=0.375, hidden_dim=256, gen_blocks=4,
                           norm_blocks=3, crop_scale=1.03, gray_input=True)


@register_config
def rt64w() -> FaceCycleConfig:
    """``rt64`` with the expression encoder at 1/2 of the paper's width (the rest, the identity encoder
    included, at 1/4): more capacity where the emotions are read, for ~1.5x the encoder's CPU time."""
    return FaceCycleConfig(name="rt64w", image_size=64, width=0.25, encoder_width=0.5, hidden_dim=256,
                           gen_blocks=4, norm_blocks=3, crop_scale=1.03, gray_input=True)


@register_config
def rt64w_d48() -> FaceCycleConfig:
    """``rt64w`` with the emotion head's feature read at 48 px (``detail_px``), as the shipped default reads it:
    train or fine-tune with this config to train the head and encoder on that reading too (same weights' shapes,
    so ``rt64w`` checkpoints start it)."""
    return rt64w().replace(name="rt64w-d48", detail_px=48)


@register_config
def rt64() -> FaceCycleConfig:
    """The semi-supervised real-time default: ``small-w0.25``'s sizes (64 px, 1/4 of the paper's width) with
    FER-2013's framing (crop 1.03 × the face box) and grey encoders."""
    return FaceCycleConfig(name="rt64", image_size=64, width=0.25, hidden_dim=256, gen_blocks=4, norm_blocks=3,
                           crop_scale=1.03, gray_input=True)
