"""A compact single-file copy of the semi-supervised training data, for machines without ``../shared``.

The device machine (a lent GPU) receives only the repository, at most 64 MiB of
it. ``facecycle train --stage semisup ... --write-pack FILE`` stores what the
run loads — the labelled stills, the held-out stills, the video crops and, when
the run has them, the video crops' clip labels (``--video-labels``) — as
JPEG bytes (quality 92, optimized Huffman tables; stills grey) in one ``.npz``
of plain arrays (no pickle); ``--pack FILE`` trains from it with no other data.
Grey images whose side is a multiple of 8 are stored as 8 x 8 mosaics, one
JPEG per 64 images: JPEG codes 8 x 8 blocks independently, so no block spans two
images and the decoded pixels are those of one JPEG per image, without 64 headers
(a quarter smaller). A pack of FER-2013 (at the model's 64 px) and the shared
clips' crops (9,407) is about 52 MB (66 MB as one JPEG per image).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..errors import InputError

__all__ = ["write_pack", "read_pack", "read_pack_video_labels"]

Arrays = Tuple[np.ndarray, np.ndarray]


TILE = 8  # mosaics of TILE x TILE grey images

#: what reading a damaged pack raises: a truncated one is no zip (BadZipFile, an internal error before, as
#: ``read_still_targets`` already knew), a member cut short an EOFError, a compressed one a zlib.error
_DAMAGED = (KeyError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


def _why(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _mosaics(images: np.ndarray) -> List[np.ndarray]:
    """(N, S, S) grey -> ceil(N / TILE^2) (TILE*S, TILE*S) mosaics, row-major, the last one padded with zeros."""
    n, s = len(images), images.shape[1]
    per = TILE * TILE
    pad = np.zeros(((-n) % per, s, s), np.uint8)
    tiles = np.concatenate([images, pad]).reshape(-1, TILE, TILE, s, s)
    return list(tiles.transpose(0, 1, 3, 2, 4).reshape(-1, TILE * s, TILE * s))


def _encode(images: np.ndarray, grey: bool, quality: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """JPEG bytes, their offsets and the tile (images per mosaic side; 0: one JPEG per image)."""
    import cv2

    if grey:
        src = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images]
    else:
        src = [cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in images]
    tile = TILE if grey and len(images) and images.shape[1] == images.shape[2] and images.shape[1] % 8 == 0 else 0
    if tile:
        src = _mosaics(np.stack(src))
    blobs, offs = [], [0]
    for im in src:
        ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
        if not ok:
            raise InputError("JPEG encoding failed while writing a pack")
        blobs.append(buf.reshape(-1))
        offs.append(offs[-1] + buf.size)
    data = np.concatenate(blobs) if blobs else np.zeros(0, np.uint8)
    return data.astype(np.uint8), np.asarray(offs, np.int64), tile


def _decode(data: np.ndarray, offs: np.ndarray, tile: int = 0, count: int = 0) -> np.ndarray:
    """RGB uint8 images; with ``tile``, the first ``count`` tiles of the mosaics."""
    import cv2

    offs = np.asarray(offs)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError("its image bytes are not a byte array")  # cv2.imdecode raised cv2.error (exit 1)
    if offs.ndim != 1 or len(offs) < 1 or offs[0] != 0 or np.any(np.diff(offs) <= 0) or offs[-1] > len(data):
        raise ValueError("its image offsets do not fit its bytes")  # an empty slice stopped cv2.imdecode (exit 1)
    out = []
    for i in range(len(offs) - 1):
        im = cv2.imdecode(data[offs[i]:offs[i + 1]], cv2.IMREAD_COLOR)
        if im is None:
            raise ValueError(f"image {i} does not decode")  # read_pack names the file
        im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
        if tile:
            s = im.shape[0] // tile
            out.extend(im.reshape(tile, s, tile, s, 3).transpose(0, 2, 1, 3, 4).reshape(-1, s, s, 3))
        else:
            out.append(im)
    if tile:
        out = out[:count]
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
        d, o, tile = _encode(np.asarray(x), grey, quality)
        arrays[f"{name}_jpg"] = d
        arrays[f"{name}_off"] = o
        arrays[f"{name}_tile"] = np.asarray(tile, np.int64)
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
        out = []
        for n in ("stills", "val", "video"):
            y = z[f"{n}_y"]
            tile = int(z[f"{n}_tile"]) if f"{n}_tile" in z.files else 0  # packs before mosaics: one JPEG each
            images = _decode(z[f"{n}_jpg"], z[f"{n}_off"], tile, len(y))
            if len(images) != len(y):  # a pack cut short decoded fewer images than labels
                raise ValueError(f"{len(images)} {n} images for {len(y)} labels")
            out.append((images, y))
        return tuple(out)
    except _DAMAGED as e:
        raise InputError(f"{path}: not a training pack ({_why(e)})") from None


def read_pack_video_labels(path: Path) -> Optional[np.ndarray]:
    """The video crops' clip labels stored in a pack, or None when it has none."""
    try:
        z = np.load(Path(path), allow_pickle=False)
        return np.asarray(z["video_label"], np.int64) if "video_label" in z.files else None
    except _DAMAGED as e:
        raise InputError(f"{path}: not a training pack ({_why(e)})") from None
