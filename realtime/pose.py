"""Geometric head pose from the 5 detector landmarks (``pose_source: "landmarks-pnp"``).

``cv2.solvePnP`` fits a generic 3D five-point face (millimetres, x right, y
down, z away from the camera; origin between the eyes) to the landmarks with a
pinhole camera of focal length = the frame's longer side and the principal
point at the frame centre. A face at the frame centre looking into the lens
gives (0, 0, 0); the angles are about the camera's axes, so the same face near
an edge (or beside black bars, which move the centre) reads a yaw or pitch of
about atan(offset / focal length) even when it looks into the lens. ``focal`` (``pose_focal``, ``--pose-focal``)
gives the real camera's focal length in pixels instead, so that a face's pose no longer depends on the frame's size
(a crop's focal length scales with the crop). ``pose_camera="face"`` puts the principal
point at the face's own centre instead (:data:`POSE_CAMERAS`): each face its own camera, for composited frames
(screen recordings, video-call galleries, picture-in-picture insets), where a tile's place on the screen otherwise
read as 15-35° of yaw and pitch. Angles follow OpenFace:
``R = Rx(pitch)·Ry(yaw)·Rz(roll)``, radians, camera axes (x right, y down,
z forward): Rx > 0 looks down, Ry > 0 turns to the image left... (see docs/csv.md).
This is a coarse estimate (5 points, generic shape): ±10° is typical.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import cv2
import numpy as np

__all__ = ["POSE_SOURCE", "POSE_CAMERAS", "FACE_MODEL_5", "estimate_pose", "rotation_to_euler", "euler_to_rotation",
           "camera_matrix", "face_turn"]

POSE_SOURCE = "landmarks-pnp"

#: where the pose's pinhole camera has its principal point (``Analyzer(pose_camera=...)``, ``--pose-camera``):
#: ``"frame"`` at the frame's centre (one camera filmed the frame: the default), ``"face"`` at the face's own box
#: centre (each face its own camera: a gallery tile or a webcam inset in a screen recording). The focal length is
#: the frame's longer side in both, unless given (``Analyzer(pose_focal=...)``, ``--pose-focal``).
POSE_CAMERAS = ("frame", "face")

#: generic 3D positions (mm) of: image-left eye, image-right eye, nose tip, image-left / -right mouth corner
FACE_MODEL_5 = np.array([
    [-32.0, 0.0, 0.0],
    [32.0, 0.0, 0.0],
    [0.0, 38.0, -28.0],
    [-25.0, 72.0, -5.0],
    [25.0, 72.0, -5.0],
], np.float64)


def face_turn(landmarks: Optional[np.ndarray]) -> Optional[float]:
    """How far a face is turned in the picture from upright, degrees clockwise in (-180, 180]: the direction from
    the eyes' midpoint to the mouth corners' midpoint (straight down on an upright face). Unlike the eye line
    (:func:`realtime.crops.level_angle`), it holds for a face upside down, whose eyes the detector may place in
    either order. None for missing or non-finite landmarks, or eyes and mouth at one point.

    Args:
        landmarks: (5, 2) frame pixels (x, y): the eyes, the nose, the mouth corners.
    """
    if landmarks is None:
        return None
    lm = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if lm.shape[0] < 5 or not np.isfinite(lm).all():
        return None
    vx, vy = (lm[3] + lm[4] - lm[0] - lm[1]) / 2.0
    if vx == 0.0 and vy == 0.0:
        return None
    turn = -math.degrees(math.atan2(vx, vy)) + 0.0  # (+ 0.0: no -0.0)
    return 180.0 if turn <= -180.0 else turn


def rotation_to_euler(R: np.ndarray) -> np.ndarray:
    """3×3 rotation -> (Rx, Ry, Rz) radians with R = Rx·Ry·Rz (OpenFace's convention)."""
    q0 = math.atan2(-R[1, 2], R[2, 2])
    q1 = math.asin(max(-1.0, min(1.0, R[0, 2])))
    q2 = math.atan2(-R[0, 1], R[0, 0])
    return np.array([q0, q1, q2], np.float32)


def euler_to_rotation(e) -> np.ndarray:
    """(Rx, Ry, Rz) radians -> 3×3 rotation R = Rx·Ry·Rz."""
    a, b, c = (float(v) for v in e)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def camera_matrix(width: int, height: int, center: Optional[Tuple[float, float]] = None,
                  focal: Optional[float] = None) -> np.ndarray:
    """The pose's pinhole camera: focal length ``focal`` pixels (None: the frame's longer side), principal point at
    ``center`` (x, y pixels; None: the frame's centre)."""
    f = float(max(width, height)) if focal is None else float(focal)
    cx, cy = (width / 2.0, height / 2.0) if center is None else (float(center[0]), float(center[1]))
    return np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], np.float64)


def estimate_pose(landmarks: np.ndarray, width: int, height: int,
                  center: Optional[Tuple[float, float]] = None, focal: Optional[float] = None) -> np.ndarray:
    """Head pose of one face.

    Args:
        landmarks: (5, 2) float pixels (see :class:`realtime.types.Detections`).
        width, height: frame size in pixels.
        center: the camera's principal point (x, y pixels); None = the frame's centre. The face's own box centre
            (``pose_camera="face"``) reads the pose as the face's own camera saw it, wherever the face is.
        focal: the camera's focal length in pixels of this frame (``pose_focal``); None = the frame's longer side.
            Given the real camera's, yaw and pitch no longer depend on how much of the frame the face fills.

    Returns:
        (3,) float32 (Rx pitch, Ry yaw, Rz roll) radians; NaNs if the fit fails or the landmarks are NaN
        (a detector without landmarks: no pose is computed).
    """
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.all(np.isfinite(pts)):
        return np.full(3, np.nan, np.float32)
    if center is not None and not all(math.isfinite(float(c)) for c in center):
        return np.full(3, np.nan, np.float32)
    if focal is not None and not (math.isfinite(float(focal)) and float(focal) > 0):
        return np.full(3, np.nan, np.float32)
    K = camera_matrix(width, height, center, focal)
    ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_5, pts, K, None, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_5, pts, K, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(rvec)):
        return np.full(3, np.nan, np.float32)
    if tvec[2, 0] < 0:  # the mirrored solution (face behind the camera): flip
        return np.full(3, np.nan, np.float32)
    R, _ = cv2.Rodrigues(rvec)
    return rotation_to_euler(R)
