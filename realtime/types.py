"""The data that flows through the pipeline: one :class:`FramePacket` per decoded frame.

Colour order: every ``image`` in this package is **BGR** uint8 (OpenCV's order),
shape (H, W, 3), C-contiguous, in display orientation (rotation metadata already
applied). Model crops and the neutral face are **RGB** (the model's order); the
field docs say which.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from facecycle.errors import InputError

__all__ = ["Face", "FramePacket", "EMOTIONS", "Detections", "as_bgr_image", "ImageTypeError", "ImageValueError"]

#: FER-2013 class order used by the expression head and the CSV
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def _short(value: object) -> str:
    """A field's value for a ``repr``: arrays of more than 8 values as ``array(shape, dtype)``, floats to 4 digits."""
    if isinstance(value, np.ndarray):
        if value.size > 8:
            return f"array({'x'.join(map(str, value.shape))}, {value.dtype})"
        if value.dtype.kind == "f":  # rounded to what is shown, and -0 shown as 0 ("-0.    " read as a glitch)
            value = np.round(value, 4) + 0.0
        return np.array2string(value, precision=4, separator=", ", suppress_small=True)
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)


def _repr(obj: object, names: tuple) -> str:
    return f"{type(obj).__name__}({', '.join(f'{n}={_short(getattr(obj, n))}' for n in names)})"


def _uint8_hint(image: np.ndarray) -> str:
    """How to make ``image`` (not uint8) a uint8 image, judged from its dtype and values."""
    if image.dtype == np.uint16:
        return "(img >> 8).astype(np.uint8) for 16-bit"
    if image.dtype.kind not in "fiu" or image.size == 0:
        return "img.astype(np.uint8) after scaling it to 0-255"
    lo, hi = float(np.min(image)), float(np.max(image))
    if image.dtype.kind == "f" and hi <= 1.0:
        return "(img * 255).clip(0, 255).astype(np.uint8) (its values are in 0-1)"
    if lo >= 0 and hi <= 255:
        return "img.astype(np.uint8) (its values are already in 0-255)"
    return f"scale its values ({lo:g} to {hi:g}) to 0-255, then .astype(np.uint8)"


class ImageTypeError(InputError, TypeError):
    """An image of the wrong type (not an array or a path, not uint8, a PIL image): a :class:`TypeError` (what
    ``Analyzer.analyze_image`` has always raised for it) and a :class:`~facecycle.errors.InputError` (what a run's
    frames raise, exit 3 on the command line), so that one ``except`` catches one mistake wherever it is made."""


class ImageValueError(InputError, ValueError):
    """An image that cannot be read (an unreadable or too large file, a shape that is not an image, an empty one): a
    :class:`ValueError` and a :class:`~facecycle.errors.InputError` (see :class:`ImageTypeError`)."""


def _is_pil_image(obj: object) -> bool:
    """Whether ``obj`` is a PIL (Pillow) image, ``PIL.Image.Image`` or one of its plugins' subclasses
    (``PngImageFile``), told by its class's module and name: PIL is not imported here."""
    return any(c.__name__ == "Image" and c.__module__ == "PIL.Image" for c in type(obj).__mro__)


def as_bgr_image(image: Union[np.ndarray, str, Path]) -> np.ndarray:
    """The pipeline's image from what a caller has: (H, W, 3) BGR uint8, C-contiguous.

    Accepts a uint8 array (H, W) or (H, W, 1) grey, (H, W, 3) BGR or (H, W, 4) BGRA (alpha dropped), or the
    path of an image file (read as OpenCV reads it: BGR, EXIF orientation applied). A PIL image is refused with
    the line that converts it (``np.asarray(img.convert("RGB"))[:, :, ::-1]``: RGB to BGR).

    Raises:
        ImageTypeError: (a TypeError and an InputError) not an array or path (a PIL image: the conversion is
            named), or not uint8 (a float image in 0-1 would find no face).
        ImageValueError: (a ValueError and an InputError) an unreadable file or one too large to read
            (``facecycle.imageio.MAX_PIXELS``), a shape that is not an image, or an empty image.
    """
    if isinstance(image, (str, Path)):
        from facecycle.imageio import PictureTooLarge, read_image

        if not Path(image).is_file():
            raise ImageValueError(f"{image}: " + ("a folder, not an image file" if Path(image).is_dir()
                                                  else "no such file"))
        try:
            img = read_image(image)
        except PictureTooLarge as e:
            raise ImageValueError(str(e)) from None
        if img is None:
            raise ImageValueError(f"{image}: not a readable image file")
        return np.ascontiguousarray(img)
    if _is_pil_image(image):
        raise ImageTypeError(f"expected a BGR uint8 numpy array or an image path, got a PIL image "
                             f"({type(image).__name__}): convert it with "
                             'np.asarray(img.convert("RGB"))[:, :, ::-1] (PIL gives RGB; [:, :, ::-1] makes it BGR)')
    if not isinstance(image, np.ndarray):
        raise ImageTypeError(f"expected a BGR uint8 numpy array or an image path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageTypeError(f"expected a uint8 image (0-255), got {image.dtype}: convert it first, e.g. "
                             f"{_uint8_hint(image)}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    elif not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageValueError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageValueError(f"empty image (shape {image.shape})")
    return np.ascontiguousarray(image)


@dataclass
class Detections:
    """Raw detector output for one frame, in frame pixel coordinates.

    Attributes:
        boxes: (N, 4) float32 xyxy.
        scores: (N,) float32 in [0, 1].
        landmarks: (N, 5, 2) float32 (x, y): left eye, right eye, nose tip, left
            mouth corner, right mouth corner ("left" = image left).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, idx) -> "Detections":
        return Detections(self.boxes[idx], self.scores[idx], self.landmarks[idx])

    def largest(self, n: int) -> "Detections":
        """The ``n`` largest boxes, in their order here."""
        if len(self) <= n:
            return self
        area = (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])
        return self.select(np.sort(np.argsort(-area)[:n]))


@dataclass(eq=False)
class Face:
    """One face in one frame.

    Attributes:
        box: (4,) float32 xyxy in frame pixels.
        score: detector confidence in [0, 1] (the last detection's score on
            tracked-only frames).
        landmarks: (5, 2) float32 (x, y) frame pixels (see :class:`Detections`).
        track_id: stable id of the face across frames (-1 before tracking).
        detected: True when the detector ran on this frame and found this face,
            False when its box was carried by the tracker.
        code: (code_dim,) float32 expression code, or None before inference.
        feature: (feature_dim,) float32 encoder feature (input of the emotion head).
        intensity: expression intensity in [0, 1]: the probability mass the
            emotion head puts on the six non-neutral classes (1 − P(neutral)); 0 for
            a neutral face. Without an expression head: ``flow_intensity``.
        flow_intensity: mean length of the neutralizing flow in crop-side units
            (FaceCycle's motion; head motion raises it too).
        flow: (2, h, w) float32 the neutralizing flow itself, the ``analyze`` graph's ``flow`` output (16×16 for
            the published sizes), or None before inference.
        emotions: (7,) float32 probabilities in :data:`EMOTIONS` order, or None
            when no expression head is present.
        pose: (3,) float32 (Rx pitch, Ry yaw, Rz roll) radians, OpenFace convention.
        neutral: (N, N, 3) uint8 **RGB** neutral face, or None (only with neutralize): N from the model's input
            size S up to ``neutral_size`` (192 by default; the face's crop side where smaller), so it may differ
            from frame to frame.
        neutral_from: the frame index whose neutral face ``neutral`` is (the track's reference,
            :mod:`realtime.neutral_reference`), or -1 when it is this frame's own.
        identity: (code_dim,) float32 identity code, or None.
        crop_box: (x0, y0, side) of the square crop in frame pixels.
        crop_outside: the share (0–1) of ``crop_box``, in frame pixels, that lies outside the frame and was filled
            by repeating edge pixels (:func:`realtime.crops.outside_share`): 0 for a face wholly inside, more for a
            face cut by the frame's edge (its box is clipped to the visible part, the square centred on that);
            NaN where unknown (before inference). Set where the crop box is made (:mod:`realtime.inference`); the
            CSV's ``crop_outside`` (docs/csv.md: from about 0.2 the readings and the pose are not to be trusted).
        lift: the gain a dark face's crop was brightened by before its expression and flow were read (1.0: as it
            was; :func:`realtime.inference.lift_dark`: a crop whose middle half's mean level is under 50 is scaled
            so that it is 110, at most 10 times). The
            neutral face and the identity code are the crop's as it was.
        read_angle: degrees the crop was turned by about its centre before the expression (``feature``, ``code``,
            ``emotions``, ``intensity``) was read from it, so that a tilted head's eyes come out level
            (:func:`realtime.crops.level_angle`; 0: upright). ``flow`` and ``neutral`` are the upright ``crop_box``'s.
        rel_intensity, rel_emotions, rel_code_dist, baseline_ready: the face
            against the person's own running neutral (:mod:`realtime.baseline`);
            NaN / None until ``baseline_ready``.
        label: the index into :data:`EMOTIONS` of the label the pipeline holds for the track (smoothing's
            hysteresis, :meth:`realtime.smoothing.TrackSmoother.label`), or None: :attr:`emotion` is then the most
            probable class of ``emotions``.

    Faces compare and hash by identity (``face in packet.faces``, sets, dict keys): their fields hold arrays, whose
    ``==`` is element-wise, so a field-by-field ``==`` raised "truth value of an array is ambiguous".
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    track_id: int = -1
    detected: bool = True
    code: Optional[np.ndarray] = None
    feature: Optional[np.ndarray] = None
    intensity: float = float("nan")
    emotions: Optional[np.ndarray] = None
    pose: Optional[np.ndarray] = None
    neutral: Optional[np.ndarray] = None
    neutral_from: int = -1
    identity: Optional[np.ndarray] = None
    crop_box: Optional[tuple] = None
    crop_outside: float = float("nan")
    lift: float = 1.0
    read_angle: float = 0.0
    flow_intensity: float = float("nan")
    rel_intensity: float = float("nan")
    rel_emotions: Optional[np.ndarray] = None
    rel_code_dist: float = float("nan")
    baseline_ready: bool = False
    flow: Optional[np.ndarray] = None
    label: Optional[int] = None

    def __repr__(self) -> str:
        # the fields a reader looks at first; arrays (code, feature, neutral face, flow) by their shape only
        names = ("track_id", "box", "score", "emotion", "intensity", "pose", "detected", "code", "neutral")
        return _repr(self, names)

    @property
    def emotion(self) -> Optional[str]:
        """The emotion's name: the label the pipeline holds for the track (:attr:`label`: with smoothing on, it
        changes when another class leads it by 0.10), else the most probable class; None without an expression
        head."""
        if self.emotions is None:
            return None
        if self.label is not None:
            return EMOTIONS[self.label]
        return EMOTIONS[int(np.argmax(self.emotions))]

    @property
    def emotion_probs(self) -> Dict[str, float]:
        """``emotions`` by name, in :data:`EMOTIONS` order (``{"angry": p, ...}``); empty without a head."""
        if self.emotions is None:
            return {}
        return {name: float(p) for name, p in zip(EMOTIONS, self.emotions, strict=True)}

    @property
    def area(self) -> float:
        """Area of ``box`` in frame pixels²."""
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


@dataclass(eq=False)
class FramePacket:
    """One decoded frame and everything computed about it.

    Attributes:
        index: 0-based index of the frame among the decoded frames of the source.
        pts: presentation timestamp in ``time_base`` units (None if the container has none).
        time_base: the stream's time base (seconds per pts unit).
        timestamp: seconds from the start of the source (pts·time_base minus the
            first frame's; wall-clock seconds for cameras).
        image: (H, W, 3) uint8 **BGR**, display orientation.
        faces: the faces found, sorted by track id.
        source: name of the source (file path, ``camera:0``, folder).
        stats: per-stage timings in seconds (``decode``, ``detect``, ``infer``, ...), and ``t0``, the
            ``time.perf_counter()`` reading when the frame was read (a clock reading, not a duration: latency is
            a later reading minus it).
        annotated: (H', W', 3) uint8 BGR rendered image once an annotator ran, else None: the frame's size, or a
            whole multiple of it where the frame is small (under 320 px, enlarged so that the overlay can be read).
        scene_cut: True when the tracker saw a scene cut just before this frame: every track
            ended there, so the faces of this frame have new ids.
        file: for a frame that is a file of its own (an image folder's), its path relative to the folder
            (``/``-separated); "" otherwise.

    Packets compare and hash by identity, as :class:`Face` does.
    """

    index: int
    pts: Optional[int]
    time_base: Fraction
    timestamp: float
    image: np.ndarray
    faces: List[Face] = field(default_factory=list)
    source: str = ""
    stats: Dict[str, float] = field(default_factory=dict)
    annotated: Optional[np.ndarray] = None
    scene_cut: bool = False
    file: str = ""

    def __repr__(self) -> str:
        # the image by its shape; the faces in full (their own repr is short)
        return _repr(self, ("index", "timestamp", "pts", "time_base", "source", "file", "image", "faces",
                            "scene_cut"))

    @property
    def largest_face(self) -> Optional[Face]:
        """The face with the largest box (the first of equals), or None when there is none."""
        return max(self.faces, key=lambda f: f.area) if self.faces else None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
