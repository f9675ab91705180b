"""ONNX export of FaceCycle graphs plus ``manifest.json``, validated with ONNX Runtime.

Graphs (every axis 0 is a dynamic ``batch``):

* ``analyze``: image -> feature, code, flow, backflow, intensity
* ``neutralize``: image, flow -> neutral
* ``reexpress``: neutral, backflow -> image (expression transfer / reconstruction)
* ``identity``: image -> identity (identity-stage models only)

Images are (B, 3, S, S) float32 RGB normalised with the manifest's
``input.mean``/``input.std`` (see :func:`facecycle.preprocess.to_input`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import __version__
from .errors import ModelError
from .files import sha256_file
from .model import FaceCycle

__all__ = ["GRAPHS", "export_onnx", "validate_export", "sha256_file", "ExportError", "MANIFEST_VERSION"]

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1


class ExportError(ModelError):
    pass


class _Analyze(nn.Module):
    def __init__(self, m: FaceCycle) -> None:
        super().__init__()
        self.m = m

    def forward(self, image):
        return tuple(self.m.analyze(image))


class _Neutralize(nn.Module):
    def __init__(self, m: FaceCycle) -> None:
        super().__init__()
        self.m = m

    def forward(self, image, flow):
        return self.m.Swap_Generator(image, flow)


class _Reexpress(_Neutralize):
    def forward(self, neutral, backflow):
        return self.m.Swap_Generator(neutral, backflow)


class _Identity(_Analyze):
    def forward(self, image):
        return self.m.identity(image)


def _specs(m: FaceCycle) -> Dict[str, dict]:
    c = m.config
    img = ["batch", 3, c.image_size, c.image_size]
    flow = ["batch", 2, 16, 16]
    specs = {
        "analyze": dict(wrapper=_Analyze, inputs={"image": img}, outputs={
            "feature": ["batch", c.feature_dim], "code": ["batch", c.code_dim],
            "flow": flow, "backflow": flow, "intensity": ["batch"]}),
        "neutralize": dict(wrapper=_Neutralize, inputs={"image": img, "flow": flow}, outputs={"neutral": img}),
        "reexpress": dict(wrapper=_Reexpress, inputs={"neutral": img, "backflow": flow}, outputs={"image": img}),
    }
    if m.has_identity:
        specs["identity"] = dict(wrapper=_Identity, inputs={"image": img}, outputs={"identity": ["batch", c.code_dim]})
    return specs


GRAPHS = ("analyze", "neutralize", "reexpress", "identity")


def _example(shape: Sequence, batch: int, gen: torch.Generator) -> torch.Tensor:
    dims = [batch if d == "batch" else int(d) for d in shape]
    t = torch.randn(*dims, generator=gen)
    return t.clamp(-1, 1) * 0.5 if len(dims) == 4 and dims[1] == 2 else t


def export_onnx(model: FaceCycle, out_dir: Union[str, Path], graphs: Optional[Sequence[str]] = None,
                opset: int = 17, validate: bool = True, atol: float = 1e-4,
                source: Optional[str] = None) -> dict:
    """Export ``model`` to ``out_dir`` (``<graph>.onnx`` + ``manifest.json``).

    Each graph is checked against PyTorch with ONNX Runtime at batch 1 and 5
    before anything reaches ``out_dir`` (graphs are written and checked in a folder aside, then moved in, the
    manifest last); a mismatch above ``atol`` raises :class:`ExportError` and leaves ``out_dir`` as it was (a
    model exported there before still loads).

    Returns:
        the manifest dict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    specs = _specs(model)
    names = list(graphs) if graphs else list(specs)
    for n in names:
        if n not in specs:
            raise ExportError(f"graph {n!r} not available for this model; choose from {', '.join(specs)}")
    if not atol >= 0:
        raise ExportError(f"atol must be >= 0, not {atol}")
    manifest: dict = {
        "format": "facecycle-onnx", "manifest_version": MANIFEST_VERSION, "facecycle_version": __version__,
        "opset": opset, "config": model.config.to_dict(),
        "input": {"layout": "NCHW", "color": "RGB", "dtype": "float32", "size": model.config.image_size,
                  "scale": 1.0 / 255.0, "mean": list(model.config.mean), "std": list(model.config.std),
                  "formula": "(pixel/255 - mean) / std"},
        "graphs": {}, "source": source,
    }
    # written and validated aside, then moved in: a failed export leaves a model already in ``out_dir`` whole (its
    # manifest used to go first, and its graphs were overwritten before the validation failed)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        gen = torch.Generator().manual_seed(0)
        for name in names:
            spec = specs[name]
            wrapper = spec["wrapper"](model).eval()
            args = tuple(_example(s, 2, gen) for s in spec["inputs"].values())
            path = stage / f"{name}.onnx"
            dyn = {k: {0: "batch"} for k in list(spec["inputs"]) + list(spec["outputs"])}
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about shape checks
                torch.onnx.export(
                    wrapper, args, str(path), input_names=list(spec["inputs"]), output_names=list(spec["outputs"]),
                    dynamic_axes=dyn, opset_version=opset, do_constant_folding=True, dynamo=False,
                )
            manifest["graphs"][name] = {
                "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                "inputs": [{"name": k, "shape": v, "dtype": "float32"} for k, v in spec["inputs"].items()],
                "outputs": [{"name": k, "shape": v, "dtype": "float32"} for k, v in spec["outputs"].items()],
            }
            log.info("exported %s (%d bytes)", name, path.stat().st_size)
        if validate:
            manifest["validation"] = validate_export(model, stage, manifest, atol=atol)
        (out / "manifest.json").unlink(missing_ok=True)  # no manifest rather than one naming the old graphs
        for name in names:
            os.replace(stage / f"{name}.onnx", out / f"{name}.onnx")
        tmp = out / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, out / "manifest.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def validate_export(model: FaceCycle, out_dir: Union[str, Path], manifest: dict, atol: float = 1e-4,
                    batches: Sequence[int] = (1, 5), inputs: Optional[Dict[str, np.ndarray]] = None) -> dict:
    """Run every graph in ONNX Runtime and PyTorch; return max abs errors, raise above ``atol``."""
    import onnxruntime as ort

    specs = _specs(model)
    gen = torch.Generator().manual_seed(1)
    report: Dict[str, Dict[str, float]] = {}
    for name, g in manifest["graphs"].items():
        sess = ort.InferenceSession(str(Path(out_dir) / g["file"]), providers=["CPUExecutionProvider"])
        wrapper = specs[name]["wrapper"](model).eval()
        errs: List[float] = []
        scale = 1.0
        for b in batches:
            args = tuple(_example(i["shape"], b, gen) for i in g["inputs"])
            with torch.no_grad():
                ref = wrapper(*args)
            ref = ref if isinstance(ref, tuple) else (ref,)
            got = sess.run(None, {i["name"]: a.numpy() for i, a in zip(g["inputs"], args, strict=True)})
            errs.append(max(float(np.abs(r.numpy() - o).max()) for r, o in zip(ref, got, strict=True)))
            scale = max([scale] + [float(r.abs().max()) for r in ref])
        err = max(errs)
        # Absolute tolerance for outputs of unit scale (trained models: images of about ±2);
        # untrained generators emit values in the hundreds, where fp32 rounding alone exceeds 1e-4.
        report[name] = {"max_abs_err": err, "output_scale": scale, "batches": list(batches)}
        if not err <= atol * scale:
            raise ExportError(f"{name}: ONNX Runtime differs from PyTorch by {err:.3g} "
                              f"(> {atol} x output scale {scale:.3g})")
        log.info("validated %s: max abs err %.2e", name, err)
    return report
