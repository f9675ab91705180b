"""The checked reader of an exported model directory's ``manifest.json`` (written by :mod:`facecycle.export`).

It lives here, below :mod:`engines`, so that every reader of a model folder uses it: the backends
(:mod:`engines.base` re-exports these names) and the probes' ONNX feature (:mod:`facecycle.probe.features`), which
cannot import :mod:`engines`. A manifest that is not what an export writes is a :class:`~facecycle.errors.ModelError`
naming the file: its structure (every graph entry, its file inside the folder, its inputs and outputs) and the
values the pipeline computes with (the input normalisation and size, the face framing), where a NaN or a zero std
ran without an error and gave empty emotion columns labelled "angry".
"""
from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ModelError
from .files import check_sha256
from .jsonvalues import is_finite, is_int, is_number

__all__ = ["GraphSpec", "read_manifest", "graph_file", "model_file", "io_mismatch", "READ_VERSIONS",
           "INPUT_SIZES", "CROP_SCALES"]

#: the ``manifest_version`` values this facecycle reads (:data:`facecycle.export.MANIFEST_VERSION` is one of them);
#: a manifest without the field is read as version 1
READ_VERSIONS: Tuple[int, ...] = (1,)
#: the input sides (pixels) accepted: the configs are 32 (tiny) to 128 (paper128); 1e30 failed in OpenCV's resize
INPUT_SIZES: Tuple[int, int] = (16, 1024)
#: the framings (crop side / face box side) accepted: the configs use 1.0 to 1.7; NaN failed in ``int(round())``
CROP_SCALES: Tuple[float, float] = (0.25, 8.0)

#: a graph's sha256 in the manifest: 64 hex digits (any case; kept lower case), or null / absent
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
#: a graph's name in the manifest (it becomes part of cache file names): letters, digits, ``_``, ``-``, ``.``
_GRAPH_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class GraphSpec:
    """Names, shapes and dtypes of one graph's inputs and outputs (from the manifest)."""

    def __init__(self, name: str, entry: Mapping) -> None:
        self.name = name
        if not isinstance(name, str) or not _GRAPH_NAME_RE.fullmatch(name):
            raise ModelError(f"manifest: graph name {str(name)[:80]!r} is not a name (letters, digits, '_', '-', "
                             "'.'; it names cache files)")
        if not isinstance(entry, Mapping):
            raise ModelError(f"manifest: graph {name!r} is a JSON {type(entry).__name__}, not an object")
        file = entry.get("file")
        if not isinstance(file, str) or not file:
            raise ModelError(f"manifest: graph {name!r} names no file")
        self.file = model_file(file, f"graph {name!r}")
        sha = entry.get("sha256")
        if sha is not None and not (isinstance(sha, str) and _SHA256_RE.fullmatch(sha)):
            # it names files in the engine cache (``onnx16/<sha[:16]>-fp16.onnx``): '../../x' wrote outside it
            raise ModelError(f"manifest: graph {name!r} ({file}) has a bad sha256 {str(sha)[:80]!r} (needs 64 hex "
                             "digits, or null)")
        #: the manifest's sha256 of the graph file, lower case ("" where the manifest gives none)
        self.sha256 = sha.lower() if sha is not None else ""
        self.inputs: List[dict] = _tensors(name, entry, "inputs")
        self.outputs: List[dict] = _tensors(name, entry, "outputs")

    @property
    def input_names(self) -> List[str]:
        return [i["name"] for i in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [o["name"] for o in self.outputs]

    def __repr__(self) -> str:
        return f"GraphSpec({self.name!r}, inputs={self.input_names}, outputs={self.output_names})"


def _dims_match(want: object, got: object) -> bool:
    """A manifest dim against a graph's: two fixed sizes must be equal; a symbolic one (``"batch"``, None, -1)
    matches anything."""
    fixed = [is_int(d) and d >= 0 for d in (want, got)]
    return not all(fixed) or want == got


def io_mismatch(spec: GraphSpec, inputs: Sequence[Tuple[str, Sequence]],
                outputs: Sequence[Tuple[str, Sequence]]) -> Optional[str]:
    """How a loaded graph's inputs and outputs (``(name, shape)`` each, as the runtime reports them) differ from
    the manifest's ``spec``: names, count, rank, static dims (symbolic dims such as ``"batch"`` match anything).
    None where they agree (the order of the names may differ)."""
    for kind, want, got in (("inputs", spec.inputs, inputs), ("outputs", spec.outputs, outputs)):
        want_names = [t["name"] for t in want]
        got_names = [str(n) for n, _ in got]
        if sorted(want_names) != sorted(got_names):
            return f"graph {kind} {got_names} do not match the manifest {want_names}"
        shapes = {str(n): list(s) if s is not None else None for n, s in got}
        for t in want:
            have = shapes[t["name"]]
            if have is None:  # the runtime does not know the rank
                continue
            if len(have) != len(t["shape"]) or not all(map(_dims_match, t["shape"], have)):
                return (f"graph {kind[:-1]} {t['name']!r} has shape {have}, the manifest says {list(t['shape'])}")
    return None


def model_file(name: str, what: str) -> str:
    """A file name the manifest gives, checked to stay inside the model folder (no absolute path, no ``..``)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    # a drive (``C:..\\x.onnx``, drive-relative on Windows: outside the folder) is refused on every platform
    if (PurePosixPath(name).is_absolute() or Path(name).is_absolute() or ".." in parts or not parts
            or ":" in name or PureWindowsPath(name).drive or PureWindowsPath(name).root):
        raise ModelError(f"manifest: {what} file {name!r} leaves the model folder")
    return name


def _tensors(graph: str, entry: Mapping, key: str) -> List[dict]:
    """A graph's ``inputs``/``outputs``: a list of ``{"name": str, "shape": ["batch", int, ...]}``."""
    items = entry.get(key)
    if not isinstance(items, list) or not items:
        raise ModelError(f"manifest: graph {graph!r} has no {key} list")
    for t in items:
        if not (isinstance(t, Mapping) and isinstance(t.get("name"), str) and isinstance(t.get("shape"), list)
                and t["shape"] and all(is_int(d) for d in t["shape"][1:])):
            raise ModelError(f"manifest: graph {graph!r} has a bad {key} entry {str(t)[:80]} (needs a name and a "
                             "shape [batch, int, ...])")
    names = [t["name"] for t in items]
    if len(set(names)) != len(names):
        raise ModelError(f"manifest: graph {graph!r} repeats {key[:-1]} names {names}")
    return list(items)


def read_manifest(model_dir: Union[str, Path]) -> Dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of an exported model directory: its ``manifest_version`` (one this
    facecycle reads), every graph entry (its file inside the folder, its inputs and outputs), the ``input`` and
    ``config`` sections (types and values: finite, std > 0, a size and a framing in range). A ModelError naming
    the file otherwise."""
    p = Path(model_dir) / "manifest.json"
    if not p.is_file():
        d = Path(model_dir)
        left = d.is_dir() and any(d.glob("*.onnx")) or (d / "model.safetensors").is_file() or any(d.glob(".export-*"))
        hint = "; an interrupted export? re-run facecycle export" if left else ""
        raise ModelError(f"{model_dir}: no manifest.json (not an exported model directory{hint})")
    try:
        man = json.loads(p.read_text(encoding="utf-8"))  # (the locale's code page on Windows otherwise)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: corrupt manifest ({e})") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read the manifest ({e.strerror or e})") from None
    except RecursionError:  # thousands of nested brackets: not a manifest an export writes
        raise ModelError(f"{p}: corrupt manifest (nested too deeply)") from None
    if not isinstance(man, dict) or man.get("format") != "facecycle-onnx" or not isinstance(man.get("graphs"), dict):
        raise ModelError(f"{p}: not a FaceCycle ONNX manifest")
    try:
        _check_version(man.get("manifest_version", 1))  # first: a newer layout may fail the checks below
        for name, entry in man["graphs"].items():
            GraphSpec(name, entry)
        for key in ("config", "input", "weights", "head"):
            if key in man and not isinstance(man[key], dict):
                raise ModelError(f"manifest: {key!r} is a JSON {type(man[key]).__name__}, not an object")
        _check_input(man.get("input"))
        _check_config(man.get("config", {}), man["input"]["size"])
        for key in ("weights", "head"):
            if key in man:
                f = man[key].get("file")
                if not isinstance(f, str) or not isinstance(man[key].get("sha256", ""), str):
                    raise ModelError(f"manifest: {key!r} needs a file and a sha256")
                model_file(f, key)
    except ModelError as e:
        raise ModelError(f"{p}: {str(e).removeprefix('manifest: ')}") from None
    return man


def _check_version(v: object) -> None:
    """Refuse a ``manifest_version`` this facecycle does not read: a later one was written by a newer facecycle,
    whose fields may mean other things (read as version 1, it gave numbers without a word)."""
    reads = ", ".join(map(str, READ_VERSIONS))
    if is_int(v):
        if v in READ_VERSIONS:
            return
        if v > max(READ_VERSIONS):
            raise ModelError(f"manifest: manifest_version {v} is newer than this facecycle reads ({reads}): made by "
                             "a newer facecycle? upgrade facecycle to use this model")
    raise ModelError(f"manifest: unknown manifest_version {str(v)[:40]!r} (this facecycle reads {reads})")


def _triple(v: object, what: str, positive: bool) -> None:
    """``mean`` / ``std``: 3 finite numbers (``positive``: each > 0, as the pipeline divides by them)."""
    if not (isinstance(v, list) and len(v) == 3 and all(is_number(x) for x in v)):
        raise ModelError(f"manifest: {what} needs 3 numbers, not {str(v)[:80]}")
    if not all(is_finite(x) for x in v) or (positive and not all(x > 0 for x in v)):
        raise ModelError(f"manifest: {what} {v} must be {'> 0 and ' if positive else ''}finite "
                         f"(the input is (pixel/255 - mean) / std)")


def _check_size(v: object, what: str) -> None:
    lo, hi = INPUT_SIZES
    if not is_int(v):
        raise ModelError(f"manifest: {what} needs an int, not {str(v)[:80]!r}")
    if not lo <= v <= hi:
        raise ModelError(f"manifest: {what} {v} is outside {lo}..{hi} pixels")


def _check_input(inp: object) -> None:
    """The ``input`` section: the pipeline resizes crops to ``size`` and normalises them with ``mean`` and ``std``
    (every export writes it; without it the pipeline failed with a KeyError)."""
    if not isinstance(inp, dict):
        raise ModelError("manifest: no 'input' section (the crops' size and normalisation)")
    size, mean, std = inp.get("size"), inp.get("mean"), inp.get("std")
    if not (is_int(size) and _is_triple(mean) and _is_triple(std)):
        raise ModelError("manifest: 'input' needs a size (int) and mean and std (3 numbers each)")
    _check_size(size, "input.size")
    _triple(mean, "input.mean", positive=False)
    _triple(std, "input.std", positive=True)


def _is_triple(v: object) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(is_number(x) for x in v)


def _check_config(cfg: Dict[str, Any], size: int) -> None:
    """The ``config`` fields the pipeline and the probes compute with, where present (older manifests lack some:
    their readers fall back to defaults)."""
    if "crop_scale" in cfg:
        s, (lo, hi) = cfg["crop_scale"], CROP_SCALES
        if not is_finite(s) or not lo <= s <= hi:
            shown = str(s)[:40] if is_number(s) else repr(s)[:40]
            raise ModelError(f"manifest: config.crop_scale {shown} is not a framing in {lo:g}..{hi:g} (the "
                             "crop's side over the face box's)")
    if "image_size" in cfg:
        _check_size(cfg["image_size"], "config.image_size")
        if cfg["image_size"] != size:  # the probes read this one, the pipeline input.size: one model, one size
            raise ModelError(f"manifest: config.image_size {cfg['image_size']} differs from input.size {size}")
    for key, positive in (("mean", False), ("std", True)):
        if key in cfg:
            _triple(cfg[key], f"config.{key}", positive)
    if "detail_px" in cfg:
        d = cfg["detail_px"]
        if not (is_int(d) and 0 <= d <= INPUT_SIZES[1]):
            raise ModelError(f"manifest: config.detail_px {str(d)[:40]!r} is not a size in pixels (0 = off)")
    for key in ("gray_input", "feature_flip"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise ModelError(f"manifest: config.{key} {str(cfg[key])[:40]!r} is not true or false")


def graph_file(model_dir: Union[str, Path], spec: GraphSpec, verify: bool = True) -> Path:
    """Path of a graph's ONNX file; ModelError if it is missing or (``verify``) its sha256 differs from the
    manifest's."""
    path = Path(model_dir) / spec.file  # (checked to stay inside the folder when the spec was read)
    if not path.is_file():
        raise ModelError(f"{path}: graph file missing from the model directory")
    if verify:
        check_sha256(path, spec.sha256, "graph")
    return path
