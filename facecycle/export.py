"""ONNX export of FaceCycle graphs plus ``manifest.json``, validated with ONNX Runtime.

Graphs (every axis 0 is a dynamic ``batch``):

* ``analyze``: image -> feature, code, flow, backflow, intensity
* ``neutralize``: image, flow -> neutral
* ``reexpress``: neutral, backflow -> image (expression transfer / reconstruction)
* ``identity``: image -> identity (identity-stage models only)

Images are (B, 3, S, S) float32 RGB normalised with the manifest's
``input.mean``/``input.std`` (see :func:`facecycle.preprocess.to_input`).

With ``weights=True`` the weights the graphs were exported from go with them as ``model.safetensors`` (our
format; what the PyTorch backend runs), and the manifest's ``weights`` entry records their sha256; with
``head=`` the emotion head goes as ``expression_head.safetensors``, recorded in ``head``. Weights and a head left
in the folder by an earlier export are removed either way: they belong to another model. Where the manifest records
them, loading checks their sha256 (the PyTorch backend the weights', ``realtime.heads.ExpressionHead.find`` the
head's, ``facecycle model info`` both): a file replaced after the export is a ModelError, as a graph is.

Graphs are written and checked in a hidden staging folder inside the output folder, ``.export-HOST-PID-XXXXXXXX``,
then moved in. An export that is killed leaves it behind; the next export into that folder removes the staging
folders of exporters of this host whose process is gone (:func:`remove_dead_stages`) and an older version's
``.export-XXXXXXXX`` untouched for a day, and leaves any other alone. A failed export removes the output folder
again where it made it and left it empty.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from . import __version__
from .assets import HEAD_FILE, WEIGHT_NAMES
from .errors import ModelError, OutputError, UsageError
from .files import pid_alive, sha256_file, write_atomic
from .model import IDENTITY_MODULES, FaceCycle

__all__ = ["GRAPHS", "export_onnx", "validate_export", "sha256_file", "ExportError", "MANIFEST_VERSION",
           "check_exportable", "WEIGHTS_FILE", "HEAD_FILE", "remove_dead_stages", "STAGE_PREFIX"]

log = logging.getLogger(__name__)
MANIFEST_VERSION = 1
#: the weights an export writes beside its graphs (the PyTorch backend reads any of WEIGHT_NAMES)
WEIGHTS_FILE = WEIGHT_NAMES[0]


class ExportError(ModelError):
    pass


#: the start of an export's staging folder's name: ``.export-HOST-PID-XXXXXXXX`` (:func:`_stage_prefix`)
STAGE_PREFIX = ".export-"
#: a staging folder's name: the host and pid of its exporter, then :func:`tempfile.mkdtemp`'s 8 random characters
_STAGE_RE = re.compile(r"^\.export-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]{8}$")
#: an older version's staging folder (``.export-XXXXXXXX``: no host or pid named)
_OLD_STAGE_RE = re.compile(r"^\.export-[a-z0-9_]{8}$")
#: how long after its last change an older version's staging folder counts as left by a killed export (no
#: export takes a day)
OLD_STAGE_AGE_S = 24 * 3600.0


def _host_tag() -> str:
    """This host's name as a staging folder's name holds it: its first label, of letters, digits, ``_`` and ``-``
    only (others as ``_``); where that changed it or made it longer than 24 characters, 15 of them then 8 hex digits
    of the full name's digest (hosts of one short name in two domains stay two)."""
    full = socket.gethostname() or "localhost"
    short = re.sub(r"[^A-Za-z0-9_-]", "_", full.split(".", 1)[0]) or "host"
    if short == full and len(short) <= 24:
        return short
    return f"{short[:15]}_{hashlib.sha256(full.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def _stage_prefix() -> str:
    """This process's staging folders' prefix: ``.export-HOST-PID-``."""
    return f"{STAGE_PREFIX}{_host_tag()}-{os.getpid()}-"


def remove_dead_stages(out_dir: Union[str, Path]) -> int:
    """Remove the staging folders (``.export-HOST-PID-XXXXXXXX``) that exporters killed before their clean-up left
    in ``out_dir``: those of this host whose process no longer runs (:func:`facecycle.files.pid_alive`). Another
    host's (its pid says nothing here), a live exporter's, and older versions' ``.export-XXXXXXXX`` (no pid named)
    are left alone, unless an older version's is untouched for :data:`OLD_STAGE_AGE_S` (a day: no export takes that
    long). Returns how many were removed; errors are ignored."""
    host, n, now = _host_tag(), 0, time.time()
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return 0
    for e in entries:
        m = _STAGE_RE.match(e.name)
        old = m is None and _OLD_STAGE_RE.match(e.name) is not None
        if not old and (not m or m["host"] != host or int(m["pid"]) == os.getpid() or pid_alive(int(m["pid"]))):
            continue
        try:
            if not e.is_dir(follow_symlinks=False) or (old and now - e.stat(follow_symlinks=False).st_mtime
                                                       < OLD_STAGE_AGE_S):
                continue
        except OSError:
            continue
        shutil.rmtree(e.path, ignore_errors=True)
        if not os.path.lexists(e.path):
            n += 1
            log.info("%s: removed %s, the staging folder of an export that was killed (%s)", out_dir, e.name,
                     "an older version's, untouched for a day" if old else f"pid {m['pid']}")
    return n


def _missing_folders(path: Path) -> List[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what ``mkdir(parents=True)`` makes."""
    made: List[Path] = []
    q = path
    while not (q.exists() or q.is_symlink()) and q != q.parent:
        made.append(q)
        q = q.parent
    return made


def _remove_if_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: an export that failed leaves no folder it made."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


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
#: the modules each graph runs
_NEEDS = {"analyze": ("codegeneration", "exptoflow"), "neutralize": ("Swap_Generator",),
          "reexpress": ("Swap_Generator",), "identity": IDENTITY_MODULES}


def check_exportable(model: FaceCycle, graphs: Optional[Sequence[str]] = None) -> List[str]:
    """The graphs to export (``graphs``, else every one the model has), or :class:`ExportError` naming the modules
    a graph needs that the model lacks (a checkpoint holding some modules only), a
    :class:`~facecycle.errors.UsageError` for a graph that is no graph (``analyse``).
    Touches no file: call it before creating the output folder."""
    specs = _specs(model)
    names = list(graphs) if graphs else [g for g in specs if g != "identity" or model.has_identity]
    for n in names:
        if n not in GRAPHS:  # a name that is no graph: a usage error (exit 2), not a model's
            close = difflib.get_close_matches(str(n), list(specs), n=1)
            raise UsageError(f"no graph {n!r}{f' (did you mean {close[0]!r}?)' if close else ''}; choose from "
                             f"{', '.join(specs)}")
    lacking = {n: [m for m in _NEEDS[n] if m not in model.module_names] for n in names}
    lacking = {n: ms for n, ms in lacking.items() if ms}
    if lacking:
        mods = sorted({m for ms in lacking.values() for m in ms}, key=list(_NEEDS["analyze"] + _NEEDS["neutralize"]
                                                                         + IDENTITY_MODULES).index)
        raise ExportError(f"the model has no {', '.join(mods)} (needed by graph{'s' if len(lacking) > 1 else ''} "
                          f"{', '.join(lacking)}; it holds {', '.join(model.module_names) or 'no module'}): "
                          "export a checkpoint with these modules, or choose graphs it can run (--graphs)")
    return names


def _example(shape: Sequence, batch: int, gen: torch.Generator) -> torch.Tensor:
    dims = [batch if d == "batch" else int(d) for d in shape]
    t = torch.randn(*dims, generator=gen)
    return t.clamp(-1, 1) * 0.5 if len(dims) == 4 and dims[1] == 2 else t


def export_onnx(model: FaceCycle, out_dir: Union[str, Path], graphs: Optional[Sequence[str]] = None,
                opset: int = 17, validate: bool = True, atol: float = 1e-4,
                source: Optional[str] = None, weights: bool = False, head: Optional[object] = None) -> dict:
    """Export ``model`` to ``out_dir`` (``<graph>.onnx`` + ``manifest.json``).

    Each graph is checked against PyTorch with ONNX Runtime at batch 1 and 5
    before anything reaches ``out_dir`` (graphs are written and checked in a folder aside, then moved in, the
    manifest last); a mismatch above ``atol`` raises :class:`ExportError` and leaves ``out_dir`` as it was (a
    model exported there before still loads).

    Args:
        weights: also write the model's weights as ``model.safetensors`` (float32, our format) and record their
            sha256 in the manifest (``weights``), which the PyTorch backend checks. Without it, weights an earlier
            export left in ``out_dir`` are removed (the caller may write its own afterwards).
        head: an emotion head (:class:`facecycle.probe.linear.Head`) to write as ``expression_head.safetensors``,
            its sha256 recorded in the manifest (``head``), which loading checks. Without it, a head an earlier
            export left in ``out_dir`` is removed.

    Returns:
        the manifest dict.

    Raises:
        ExportError: a graph the model cannot run (missing modules), a validation failure.
        UsageError: a graph name that is no graph.
        OutputError: ``out_dir`` cannot be created or written.

    Staging folders that killed exports left in ``out_dir`` are removed first (:func:`remove_dead_stages`); a failed
    export removes ``out_dir`` again where it made it and left it empty.
    """
    out = Path(out_dir)
    model = model.float().eval()
    specs = _specs(model)
    names = check_exportable(model, graphs)  # before anything is created
    if not atol >= 0:
        raise ExportError(f"atol must be >= 0, not {atol}")
    made = _missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_dead_stages(out)
        stage = Path(tempfile.mkdtemp(prefix=_stage_prefix(), dir=out))
    except OSError as e:
        _remove_if_empty(made)
        raise OutputError(f"{out}: cannot write there ({e.strerror or e})") from None
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
    done = False
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
        extra = _write_extras(model, stage, manifest, weights, head)
        try:
            (out / "manifest.json").unlink(missing_ok=True)  # no manifest rather than one naming the old graphs
            for stale in WEIGHT_NAMES + (HEAD_FILE,):  # an earlier export's weights and head: another model's
                if stale not in extra and (out / stale).is_file():
                    log.info("%s: removing %s left by an earlier export", out, stale)
                    (out / stale).unlink()
            for name in [f"{n}.onnx" for n in names] + extra:
                os.replace(stage / name, out / name)
            write_atomic(out / "manifest.json", json.dumps(manifest, indent=2))
        except OSError as e:
            raise OutputError(f"{out}: cannot write the exported model ({e.strerror or e})") from None
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:  # an --out the failed export made holds nothing: it goes too
            _remove_if_empty(made)
    return manifest


def _write_extras(model: FaceCycle, stage: Path, manifest: dict, weights: bool, head: Optional[object]) -> List[str]:
    """Write the weights and the head into ``stage``, record them in ``manifest``; return their file names."""
    from .checkpoint import save_checkpoint

    names: List[str] = []
    if weights:
        path = save_checkpoint(model, stage / WEIGHTS_FILE)
        manifest["weights"] = {"file": WEIGHTS_FILE, "format": "facecycle-rt", "sha256": sha256_file(path),
                               "bytes": path.stat().st_size}
        names.append(WEIGHTS_FILE)
    if head is not None:
        from .probe.linear import save_head

        try:
            path = save_head(head, stage / HEAD_FILE)
        except OSError as e:
            raise OutputError(f"{stage / HEAD_FILE}: cannot write ({e.strerror or e})") from None
        manifest["head"] = {"file": HEAD_FILE, "sha256": sha256_file(path), "bytes": path.stat().st_size}
        names.append(HEAD_FILE)
    return names


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
