"""Feature extractors for the probes: the FaceCycle conv feature (ONNX or torch) and the baselines.

Every extractor maps (N, S, S, 3) uint8 **RGB** images (any S; resized to its
own input size) to (N, D) float32 features and describes itself as a dict
stored in the probe head's metadata.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import InputError, ModelError
from ..preprocess import to_input

__all__ = ["FeatureExtractor", "PixelFeatures", "OnnxFeatures", "TorchFeatures", "random_encoder", "resize_batch"]

log = logging.getLogger(__name__)


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8 (area when shrinking, linear when enlarging)."""
    import cv2

    if images.shape[1] == size and images.shape[2] == size:
        return images
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


class FeatureExtractor:
    """Base: ``__call__(images uint8 (N, S, S, 3) RGB) -> (N, D) float32``.

    ``crop_scale`` is the face framing the features expect (side of the square / the detector box's longer
    side), used when stills are framed by a face detector: FER-2013's own framing (1.03, measured with
    CenterFace; ``docs/training.md``) unless a model says otherwise.
    """

    image_size: int = 64
    batch: int = 256
    crop_scale: float = 1.03
    #: the feature of an image is that of its mirror image (a model with ``feature_flip``: the mean of both)
    mirror_invariant: bool = False

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = resize_batch(np.asarray(images), self.image_size)
        outs = [self._run(images[i:i + self.batch]) for i in range(0, len(images), self.batch)]
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)

    def describe(self) -> Dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError


class PixelFeatures(FeatureExtractor):
    """Baseline: raw grayscale pixels at ``size``² (4096-d at 64), in [0, 1]."""

    def __init__(self, size: int = 64) -> None:
        self.image_size = size

    def _run(self, x: np.ndarray) -> np.ndarray:
        g = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return (g / 255.0).reshape(len(x), -1)

    def describe(self) -> Dict[str, str]:
        return {"feature": "pixels", "image_size": str(self.image_size), "feature_dim": str(self.image_size ** 2)}


class OnnxFeatures(FeatureExtractor):
    """The ``feature`` output of an exported model's ``analyze.onnx`` (ONNX Runtime, no torch)."""

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        from ..manifest import GraphSpec, graph_file, io_mismatch, read_manifest

        model_dir = Path(model_dir)
        # the checked reader the backends use: a truncated manifest, a std of 0, a graph outside the folder or one
        # whose sha256 is not the manifest's were internal errors, files read from elsewhere or silent garbage here
        self.manifest = read_manifest(model_dir)
        mf = model_dir / "manifest.json"
        if "analyze" not in self.manifest["graphs"]:
            raise ModelError(f"{mf}: no 'analyze' graph (the probes read its 'feature' output)")
        spec = GraphSpec("analyze", self.manifest["graphs"]["analyze"])
        feature = next((o for o in spec.outputs if o["name"] == "feature"), None)
        if feature is None or not spec.inputs:
            raise ModelError(f"{mf}: graph 'analyze' has no 'feature' output (the probes read it)")
        path = graph_file(model_dir, spec, verify=True)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        try:
            self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own InvalidProtobuf/Fail/... types
            msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ModelError(f"{path}: ONNX Runtime cannot load this graph ({msg})") from None
        diff = io_mismatch(spec, [(i.name, i.shape) for i in self.sess.get_inputs()],
                           [(o.name, o.shape) for o in self.sess.get_outputs()])
        if diff is not None:
            raise ModelError(f"{path}: {diff} (graph 'analyze' of {mf}); re-export the model")
        self.input_name = spec.inputs[0]["name"]
        self.feature_dim = feature["shape"][-1]
        cfg = self.manifest.get("config", {})
        self.cfg = cfg
        inp = self.manifest["input"]  # (read_manifest checked it: a size in range, finite mean, std > 0)
        self.image_size = int(inp["size"])  # the pipeline's size too (config.image_size, where given, is the same)
        self.mean = inp["mean"]
        self.std = inp["std"]
        self.crop_scale = float(cfg.get("crop_scale", 1.7))  # 1.7: configs older than the field (as the pipeline)
        self.mirror_invariant = bool(cfg.get("feature_flip", False))
        self.model_dir = model_dir

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(["feature"], {self.input_name: to_input(x, self.mean, self.std)})[0]

    def describe(self) -> Dict[str, str]:
        return {"feature": "facecycle", "config": json.dumps(self.cfg), "config_name": str(self.cfg.get("name")),
                "image_size": str(self.image_size), "feature_dim": str(self.feature_dim)}


class TorchFeatures(FeatureExtractor):
    """The conv feature of a torch :class:`~facecycle.model.FaceCycle` (eval mode, no grad)."""

    def __init__(self, model, kind: str = "facecycle", extra: Optional[Dict[str, str]] = None,
                 threads: int = 0) -> None:
        self.model = model.eval()
        self.image_size = model.config.image_size
        self.crop_scale = float(model.config.crop_scale)
        self.mirror_invariant = bool(model.config.feature_flip)
        self.kind = kind
        self.extra = extra or {}
        self.threads = threads

    def _run(self, x: np.ndarray) -> np.ndarray:
        import torch

        if self.threads:
            torch.set_num_threads(self.threads)
        c = self.model.config
        with torch.no_grad():
            return self.model.features(torch.from_numpy(to_input(x, c.mean, c.std))).numpy()

    def describe(self) -> Dict[str, str]:
        c = self.model.config
        return {"feature": self.kind, "config": c.to_json(), "config_name": c.name,
                "image_size": str(c.image_size), "feature_dim": str(c.feature_dim), **self.extra}


def random_encoder(config, seed: int = 0, threads: int = 0) -> TorchFeatures:
    """Baseline: a randomly initialised expression encoder of ``config`` (a name, dict or config)."""
    import torch

    from ..config import FaceCycleConfig, get_config
    from ..model import FaceCycle

    if isinstance(config, str):
        cfg = get_config(config)
    elif isinstance(config, dict):
        cfg = FaceCycleConfig.from_dict(config)
    else:
        cfg = config
    torch.manual_seed(seed)
    m = FaceCycle(cfg, modules=("codegeneration",))
    return TorchFeatures(m, kind="random-encoder", extra={"seed": str(seed)}, threads=threads)


def extractor_from_meta(meta: Dict[str, str], model_dir: Optional[Path] = None, checkpoint: Optional[Path] = None,
                        threads: int = 0) -> FeatureExtractor:
    """Rebuild the extractor a head was fitted with (from the head's metadata)."""
    kind = meta.get("feature", "facecycle")
    if kind == "pixels":
        return PixelFeatures(int(meta.get("image_size", 64)))
    if kind == "random-encoder":
        return random_encoder(json.loads(meta["config"]), int(meta.get("seed", 0)), threads)
    if checkpoint is not None:
        from ..checkpoint import load_checkpoint

        ex: FeatureExtractor = TorchFeatures(load_checkpoint(checkpoint), threads=threads)
        where: Path = checkpoint
    else:
        if model_dir is None:
            from ..assets import default_model_dir

            model_dir = default_model_dir()
        ex, where = OnnxFeatures(model_dir, threads), model_dir
    want = meta.get("feature_dim")
    if want and str(ex.describe()["feature_dim"]) != str(want):  # (before any image is read)
        raise InputError(f"the head expects {want}-d features, {where} gives {ex.describe()['feature_dim']}-d")
    return ex
