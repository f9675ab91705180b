"""Training pairs for FaceCycle, held in memory, sampled deterministically per step.

A pair (a, b) is two frames of one face track or (with ``mirror_prob``) a
frame and its mirror image. Optional still-image pools (FER-2013 faces) give
mirror pairs only. The batch of step ``k`` depends only on ``(seed, k)``, so a
resumed run sees exactly the data an uninterrupted run would.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError
from ..imageio import read_image
from .augment import augment_pairs
from .prepare import read_index

__all__ = ["PairSource", "load_track_dataset", "load_image_pool", "track_index"]

log = logging.getLogger(__name__)


def load_track_dataset(dirs: Sequence[Path], size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Load every crop of prepared datasets -> (images (N, S, S, 3) uint8 RGB, track id (N,) int64)."""
    import cv2

    imgs: List[np.ndarray] = []
    tids: List[int] = []
    names = {}
    for d in dirs:
        d = Path(d)
        rows = read_index(d)
        if not rows:
            raise InputError(f"{d}: no index.csv rows (run `facecycle data prepare` first)")
        for r in rows:
            img = read_image(d / r["file"])
            if img is None:
                raise InputError(f"{d / r['file']}: unreadable crop")
            if img.shape[0] != size:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            imgs.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            key = (str(d), r["track"])
            tids.append(names.setdefault(key, len(names)))
    return np.stack(imgs), np.asarray(tids, np.int64)


def load_image_pool(paths: Sequence[Path], size: int) -> np.ndarray:
    """Still face images (e.g. FER-2013) as (N, S, S, 3) uint8 RGB."""
    from ..probe.datasets import load_images

    return load_images(list(paths), size)


def track_index(tracks: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For sampling a second frame of the same track: (order, start, length), int64 tensors of (N,).

    ``order`` sorts the images by track (stably); image i's track occupies
    ``order[start[i]:start[i] + length[i]]``.
    """
    tracks = np.asarray(tracks)
    order = np.argsort(tracks, kind="stable")
    t_sorted = tracks[order]
    starts = np.searchsorted(t_sorted, t_sorted, side="left")
    ends = np.searchsorted(t_sorted, t_sorted, side="right")
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return torch.from_numpy(order), torch.from_numpy(starts[inv]), torch.from_numpy((ends - starts)[inv])


@dataclass
class PairSource:
    """Deterministic pair sampler over track crops plus an optional still-image pool.

    Args:
        images: (N, S, S, 3) uint8 RGB track crops; tracks: (N,) track id.
        pool: (M, S, S, 3) uint8 RGB still images (mirror pairs only) or None.
        pool_frac: fraction of pairs drawn from ``pool``.
        mirror_prob: probability that a track pair is (frame, its mirror).
    """

    images: np.ndarray
    tracks: np.ndarray
    pool: Optional[np.ndarray] = None
    pool_frac: float = 0.0
    mirror_prob: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        self._img = torch.from_numpy(np.ascontiguousarray(self.images))
        self._pool = torch.from_numpy(np.ascontiguousarray(self.pool)) if self.pool is not None else None
        self._order, self._start, self._len = track_index(self.tracks)

    def generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + step) % (2 ** 63))

    def batch(self, step: int, pairs: int, mean, std) -> torch.Tensor:
        """Augmented, normalised batch X = [a; b] of step ``step``: (2·pairs, 3, S, S) float32."""
        g = self.generator(step)
        n = self._img.shape[0]
        n_pool = 0
        if self._pool is not None and self.pool_frac > 0:
            n_pool = int((torch.rand(pairs, generator=g) < self.pool_frac).sum().item())
        n_trk = pairs - n_pool
        i = torch.randint(0, n, (n_trk,), generator=g)
        off = (torch.rand(n_trk, generator=g) * self._len[i]).long()
        j = self._order[self._start[i] + off]
        mirror = torch.rand(n_trk, generator=g) < self.mirror_prob
        a = self._img[i]
        b = self._img[j]
        if n_pool:
            k = torch.randint(0, self._pool.shape[0], (n_pool,), generator=g)
            a = torch.cat((a, self._pool[k]))
            b = torch.cat((b, self._pool[k]))
            mirror = torch.cat((mirror, torch.ones(n_pool, dtype=torch.bool)))
        return augment_pairs(a, b, mirror, g, mean, std)
