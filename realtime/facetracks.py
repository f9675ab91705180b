"""The faces of a whole video or image folder as tracks of square crops (training data preparation).

The pipeline's own pieces do every step, so training sees faces exactly as
inference does: :func:`realtime.sources.open_source` decodes (rotation applied,
damaged packets skipped), a :class:`realtime.detectors.Detector` finds the faces,
:class:`realtime.tracking.Tracker` links them into tracks (IoU + Hungarian
matching after moving the tracks by optical flow from the last used frame, then by centre distance; a lost track is
remembered for ``max_gap`` frames; the tracker's times are frame numbers here, so its distance matching of lost
tracks, ``reach_lost_s``, lasts under one used frame: more careful than the pipeline's) and
:func:`realtime.crops.crop_faces` cuts the loose squares. Writing the dataset
(layout, index, resume) is :mod:`facecycle.data.prepare`'s job.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from .crops import DEFAULT_SCALE, crop_faces, framing_scale
from .detectors import Detector
from .sources import open_source
from .tracking import Tracker, detect_faces

__all__ = ["FaceTracks", "face_tracks"]

#: track id -> [(frame index, square (x0, y0, x1, y1) in frame pixels, crop (size, size, 3) uint8 RGB), ...]
FaceTracks = Dict[int, List[Tuple[int, Tuple[float, float, float, float], np.ndarray]]]


def face_tracks(source: Union[str, Path], detector: Detector, *, size: int = 64, scale: float = DEFAULT_SCALE,
                every: int = 1, min_face: int = 32, min_iou: float = 0.3, max_gap: int = 10) -> FaceTracks:
    """Detect and track every face of ``source`` (every ``every``-th frame) and crop it.

    Args:
        source: a video file or an image folder (frames in name order; read as the pipeline reads it: separate
            photos are stills, each face a track of its own, :class:`realtime.sources.ImageFolderSource`).
        detector: the face detector (detection on every used frame; the tracks are moved by optical flow from the
            last used frame before they are matched, as on the pipeline's detection frames).
        size: crop side in pixels.
        scale: square side / longer side of a CenterFace box (other detectors' boxes: divided by their
            ``box_scale``, :func:`realtime.crops.framing_scale`, as inference frames faces).
        every: use every N-th frame.
        min_face: faces whose box is smaller than this (pixels, shorter side) are ignored.
        min_iou: minimum IoU to continue a track.
        max_gap: used frames a face may be missing before its track ends.

    Returns:
        tracks by id, each a list of (frame index, square xyxy, RGB crop) in frame order.
    """
    # the tracker's clock is the frame index: a track lost for more than max_gap used frames is forgotten
    tracker = Tracker(iou_threshold=min_iou, lost_buffer=float(max_gap * max(1, every)))
    tracks: FaceTracks = {}
    with open_source(source) as src:
        for packet in src:
            if packet.index % every:
                continue
            # separate pictures (an image folder read as stills): each face a track of its own
            faces = detect_faces(detector, tracker, packet.image, float(packet.index), still=src.stills,
                                 keep=lambda d: d.select(np.minimum(d.boxes[:, 2] - d.boxes[:, 0],
                                                                    d.boxes[:, 3] - d.boxes[:, 1]) >= min_face))
            if not faces:
                continue
            crops, squares = crop_faces(packet.image, np.stack([f.box for f in faces]), size,
                                        framing_scale(scale, detector))
            for f, crop, (x0, y0, side) in zip(faces, crops, squares, strict=True):
                tracks.setdefault(f.track_id, []).append(
                    (packet.index, (float(x0), float(y0), float(x0 + side), float(y0 + side)), crop))
    return tracks
