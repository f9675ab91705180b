"""The FaceCycle model object and its inference surface."""
from __future__ import annotations

from functools import partial
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from .config import FaceCycleConfig, get_config
from .nn import Encoder, Generator, MotionDecoder, Normalizer, flow_intensity

__all__ = ["FaceCycle", "Analysis", "MOTION_MODULES", "IDENTITY_MODULES", "ALL_MODULES", "neutralization_passes"]

#: modules of a motion-stage checkpoint (the authors' ``ExpCode_*.tar``)
MOTION_MODULES = ("codegeneration", "exptoflow", "Swap_Generator")
#: modules added by the identity stage (the authors' ``idcode_*.tar`` holds all five)
IDENTITY_MODULES = ("idcodegen", "Swap_Norm")
ALL_MODULES = MOTION_MODULES + IDENTITY_MODULES

_FACTORIES = {
    "codegeneration": Encoder,
    "exptoflow": MotionDecoder,
    "Swap_Generator": Generator,
    "idcodegen": partial(Encoder, identity=True),
    "Swap_Norm": Normalizer,
}


def neutralization_passes(encoder: nn.Module, motion: nn.Module, generator: nn.Module, x: torch.Tensor,
                          passes: int, flow: Optional[torch.Tensor] = None,
                          gain: float = 1.0) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Neutralize (B, 3, S, S) ``x`` ``passes`` times: pass k reads pass k−1's face with ``encoder`` and
    ``motion`` and neutralizes it with ``generator`` (the pipeline's ``--neutral-passes``).

    ``flow``: the first pass's (B, 2, h, w) flow when the input's analysis already has it; ``gain`` scales
    every pass's flow. Returns (faces, flows): one (B, 3, S, S) face and its flow per pass, in order.
    """
    faces: List[torch.Tensor] = []
    flows: List[torch.Tensor] = []
    n = x
    for k in range(passes):
        f = flow if k == 0 and flow is not None else motion(encoder(n)[1])[0]
        if gain != 1.0:
            f = f * gain
        n = generator(n, f)
        faces.append(n)
        flows.append(f)
    return faces, flows


class Analysis(NamedTuple):
    """What :meth:`FaceCycle.analyze` returns (batch first).

    feature (B, feature_dim) conv feature; code (B, code_dim) expression code;
    flow, backflow (B, 2, 16, 16) in grid units; intensity (B,) see
    :func:`facecycle.nn.flow_intensity`.
    """

    feature: torch.Tensor
    code: torch.Tensor
    flow: torch.Tensor
    backflow: torch.Tensor
    intensity: torch.Tensor


class FaceCycle(nn.Module):
    """FaceCycle: expression encoder, motion decoder, generator, identity encoder, normalizer.

    Sub-module names are those of the authors' checkpoints, so
    ``model.state_dict()`` keys read ``codegeneration.conv1.0.weight`` etc.
    All image tensors are (B, 3, S, S) float32, RGB, normalised with
    ``config.mean``/``config.std`` (see :mod:`facecycle.preprocess`).

    Args:
        config: a :class:`FaceCycleConfig` or a registered name.
        modules: which modules to build; a motion-stage model has no
            identity encoder / normalizer.
    """

    def __init__(self, config: "FaceCycleConfig | str" = "paper", modules: Sequence[str] = ALL_MODULES) -> None:
        super().__init__()
        self.config = get_config(config) if isinstance(config, str) else config
        unknown = [m for m in modules if m not in _FACTORIES]
        if unknown:
            raise ValueError(f"unknown modules {unknown}; known: {list(_FACTORIES)}")
        self.module_names = tuple(m for m in ALL_MODULES if m in modules)
        for name in self.module_names:
            self.add_module(name, _FACTORIES[name](self.config))

    # ------------------------------------------------------------------ info
    @property
    def has_identity(self) -> bool:
        return all(m in self.module_names for m in IDENTITY_MODULES)

    def parameter_counts(self) -> Dict[str, int]:
        """Number of parameters of each module."""
        return {n: sum(p.numel() for p in getattr(self, n).parameters()) for n in self.module_names}

    def _need(self, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.module_names]
        if missing:
            raise RuntimeError(
                f"this model has no {', '.join(missing)} (a motion-stage checkpoint?); "
                "identity functions need an identity-stage model"
            )

    # -------------------------------------------------------------- motion
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> (B, feature_dim) conv feature (2048-d in the paper config), what the emotion head reads.

        With ``config.detail_px`` the image is low-passed first (:meth:`Encoder.features`); with
        ``config.feature_flip`` the mean of the features of ``x`` and of its mirror.
        """
        views = self._head_views(x)
        return self._mean_views(self.codegeneration.trunk(torch.cat(views)), len(views))

    def _head_views(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The images the emotion head's feature averages: ``x`` low-passed (``config.detail_px``; as is when
        off), and its mirror when ``config.feature_flip``."""
        low = self.codegeneration.low(x)
        return [low, low.flip(-1)] if self.config.feature_flip else [low]

    @staticmethod
    def _mean_views(f: torch.Tensor, n: int) -> torch.Tensor:
        """The mean over ``n`` views of batch-concatenated features (n·B, D) -> (B, D)."""
        return f.view(n, -1, f.shape[-1]).mean(0)

    def encode(self, x: torch.Tensor):
        """Image -> (feature, expression code)."""
        return self.codegeneration(x)

    def motion(self, code: torch.Tensor):
        """Expression code -> (flow, backflow), each (B, 2, 16, 16)."""
        return self.exptoflow(code)

    def analyze(self, x: torch.Tensor) -> Analysis:
        """Image -> :class:`Analysis` (feature, code, flow, backflow, intensity).

        One batched encoder pass: the code reads the sharp image, the feature the head's views
        (:meth:`_head_views`). Without ``config.detail_px`` the sharp image is the first view, and its pass
        serves both.
        """
        enc = self.codegeneration
        b = x.shape[0]
        views = self._head_views(x)
        shared = not enc.lowpass
        f = enc.trunk(torch.cat(views if shared else [x, *views]))
        code, feat = enc.expresscode(f[:b]), self._mean_views(f if shared else f[b:], len(views))
        flow, back = self.exptoflow(code)
        return Analysis(feat, code, flow, back, flow_intensity(flow))

    def neutralize(self, x: torch.Tensor, flow: Optional[torch.Tensor] = None) -> torch.Tensor:
        """De-expression: G(x, flow). Computes the flow when not given."""
        if flow is None:
            flow = self.motion(self.encode(x)[1])[0]
        return self.Swap_Generator(x, flow)

    def neutralize_passes(self, x: torch.Tensor, passes: int, flow: Optional[torch.Tensor] = None,
                          gain: float = 1.0) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """:func:`neutralization_passes` with this model's E, M and G."""
        return neutralization_passes(self.codegeneration, self.exptoflow, self.Swap_Generator, x, passes, flow, gain)

    def reexpress(self, neutral: torch.Tensor, backflow: torch.Tensor) -> torch.Tensor:
        """Re-expression: G(neutral, backflow)."""
        return self.Swap_Generator(neutral, backflow)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """De-expression then re-expression of ``x`` (the motion cycle)."""
        a = self.analyze(x)
        return self.reexpress(self.Swap_Generator(x, a.flow), a.backflow)

    def transfer(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Expression transfer: the neutral face of ``target`` re-expressed with ``source``'s backflow."""
        back = self.analyze(source).backflow
        return self.reexpress(self.neutralize(target), back)

    # ------------------------------------------------------------ identity
    def identity(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> (B, code_dim) identity code."""
        self._need(IDENTITY_MODULES)
        return self.idcodegen(x)[1]

    def deidentify(self, neutral: torch.Tensor, id_code: torch.Tensor) -> torch.Tensor:
        """De-identity: N(neutral, denorm, id) (towards the mean face)."""
        self._need(IDENTITY_MODULES)
        return self.Swap_Norm(neutral, id_code, "denorm")

    def reidentify(self, mean_face: torch.Tensor, id_code: torch.Tensor) -> torch.Tensor:
        """Re-identity: N(mean face, renorm, id)."""
        self._need(IDENTITY_MODULES)
        return self.Swap_Norm(mean_face, id_code, "renorm")

    def swap_identity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """N(mean face of a, renorm, identity code of b)."""
        mean_a = self.deidentify(self.neutralize(a), self.identity(a))
        return self.reidentify(mean_a, self.identity(b))
