"""A compact single-file copy of the semi-supervised training data, for machines without ``../shared``.

The device machine (a lent GPU) receives only the repository, at most 64 MiB of
it. ``facecycle train --stage semisup ... --write-pack FILE`` stores what the
run loads — the labelled stills, the held-out stills, the video crops and, when
the run has them, the video crops' clip labels (``--video-labels``) — as
JPEG bytes (quality 92; stills grey) in one ``.npz`` of plain arrays (no
pickle); ``--pack FILE`` trains from it with no other data. A pack of FER-2013
(48 px) and the shared clips' crops is about 50 MB.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..errors import InputError

__all__ = ["write_pack", "read_pack", "read_pack_video_labels"]

Arrays = Tuple[np.ndarray, np.ndarray]


def _encode(images: np.ndarray, grey: bool, quality: int) -> Tuple[np.ndarray, np.ndarray]:
    import cv2

    blobs, offs = [], [0]
    for im in images:
        src = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if grey else cv2.cvtColor(im, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", src, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise InputError("JPEG encoding failed while writing a pack")
        blobs.append(buf.reshape(-1))
        offs.append(offs[-1] + buf.size)
    data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    return data.astype(np.uint8), np.asarray(offs, np.int64)


def _decode(data: np.ndarray, offs: np.ndarray) -> np.ndarray:
    import cv2

    out = []
    for i in range(len(offs) - 1):
        im = cv2.imdecode(data[offs[i]:offs[i + 1]], cv2.IMREAD_COLOR)
        if im is None:
            raise InputError(f"pack: image {i} does not decode")
        out.append(cv2.cvtColor(im, cv2.COLOR_BGR2RGB))
    return np.stack(out) if out else np.zeros((0, 1, 1, 3), np.uint8)


def write_pack(path: Path, stills: Arrays, val: Arrays, video: Arrays, quality: int = 92,
               video_labels: Optional[np.ndarray] = None) -> int:
    """Write the three data sets to ``path`` (.npz); returns its size in bytes.

    stills/val: ((N, S, S, 3) uint8 RGB grey-valued images, (N,) labels); video: (crops, track ids);
    video_labels: optional (M,) int64 clip label of each video crop (-1: none).
    """
    arrays = {}
    if video_labels is not None:
        if len(video_labels) != len(video[0]):
            raise InputError(f"{len(video_labels)} video labels for {len(video[0])} crops")
        arrays["video_label"] = np.asarray(video_labels, np.int64)
    for name, (x, y), grey in (("stills", stills, True), ("val", val, True), ("video", video, False)):
        d, o = _encode(np.asarray(x), grey, quality)
        arrays[f"{name}_jpg"] = d
        arrays[f"{name}_off"] = o
        arrays[f"{name}_y"] = np.asarray(y, np.int64)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path.stat().st_size


def read_pack(path: Path) -> Tuple[Arrays, Arrays, Arrays]:
    """(stills, val, video) as written by :func:`write_pack` (images decoded to RGB uint8)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such pack file")
    try:
        z = np.load(path, allow_pickle=False)
        return tuple((_decode(z[f"{n}_jpg"], z[f"{n}_off"]), z[f"{n}_y"]) for n in ("stills", "val", "video"))
    except (KeyError, ValueError, OSError) as e:
        raise InputError(f"{path}: not a training pack ({e})") from None


def read_pack_video_labels(path: Path) -> Optional[np.ndarray]:
    """The video crops' clip labels stored in a pack, or None when it has none."""
    try:
        z = np.load(Path(path), allow_pickle=False)
        return np.asarray(z["video_label"], np.int64) if "video_label" in z.files else None
    except (ValueError, OSError) as e:
        raise InputError(f"{path}: not a training pack ({e})") from None
