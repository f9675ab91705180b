"""The one inference interface every backend implements.

A backend is opened on an exported model directory (``manifest.json`` plus
ONNX graphs, see :mod:`facecycle.export`) and runs a named graph on a batch:
numpy in, numpy out. Batches of any size are accepted: a backend splits
batches above its maximum and pads to the sizes an engine was built for.
"""
from __future__ import annotations

import abc
import json
import logging
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

if TYPE_CHECKING:
    from .select import Choice

from facecycle.errors import ModelError
from facecycle.files import check_sha256

__all__ = ["Backend", "GraphSpec", "GraphMismatch", "read_manifest", "graph_file", "model_file", "io_mismatch"]

log = logging.getLogger(__name__)

#: a graph's sha256 in the manifest: 64 hex digits (any case; kept lower case), or null / absent
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
#: a graph's name in the manifest (it becomes part of cache file names): letters, digits, ``_``, ``-``, ``.``
_GRAPH_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


class GraphMismatch(ModelError):
    """A graph file that is not the one the manifest describes (other input / output names, count or static
    dims). The model's fault, not a backend's: :func:`engines.open_backend` never falls back on it (another backend
    would fail the same way, or worse, run a different graph)."""


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
    fixed = [isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in (want, got)]
    return not all(fixed) or want == got


def io_mismatch(spec: "GraphSpec", inputs: Sequence[Tuple[str, Sequence]],
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
    if PurePosixPath(name).is_absolute() or Path(name).is_absolute() or ".." in parts or not parts:
        raise ModelError(f"manifest: {what} file {name!r} leaves the model folder")
    return name


def _tensors(graph: str, entry: Mapping, key: str) -> List[dict]:
    """A graph's ``inputs``/``outputs``: a list of ``{"name": str, "shape": ["batch", int, ...]}``."""
    items = entry.get(key)
    if not isinstance(items, list) or not items:
        raise ModelError(f"manifest: graph {graph!r} has no {key} list")
    for t in items:
        if not (isinstance(t, Mapping) and isinstance(t.get("name"), str) and isinstance(t.get("shape"), list)
                and t["shape"] and all(isinstance(d, int) and not isinstance(d, bool) for d in t["shape"][1:])):
            raise ModelError(f"manifest: graph {graph!r} has a bad {key} entry {str(t)[:80]} (needs a name and a "
                             "shape [batch, int, ...])")
    names = [t["name"] for t in items]
    if len(set(names)) != len(names):
        raise ModelError(f"manifest: graph {graph!r} repeats {key[:-1]} names {names}")
    return list(items)


def read_manifest(model_dir: Union[str, Path]) -> Dict[str, Any]:
    """Read and sanity-check ``manifest.json`` of an exported model directory: every graph entry (its file inside
    the folder, its inputs and outputs), the ``input`` and ``config`` sections' types. A ModelError otherwise."""
    p = Path(model_dir) / "manifest.json"
    if not p.is_file():
        raise ModelError(f"{model_dir}: no manifest.json (not an exported model directory)")
    try:
        man = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: corrupt manifest ({e})") from None
    except OSError as e:
        raise ModelError(f"{p}: cannot read the manifest ({e.strerror or e})") from None
    if not isinstance(man, dict) or man.get("format") != "facecycle-onnx" or not isinstance(man.get("graphs"), dict):
        raise ModelError(f"{p}: not a FaceCycle ONNX manifest")
    try:
        for name, entry in man["graphs"].items():
            GraphSpec(name, entry)
        for key in ("config", "input", "weights", "head"):
            if key in man and not isinstance(man[key], dict):
                raise ModelError(f"manifest: {key!r} is a JSON {type(man[key]).__name__}, not an object")
        inp = man.get("input")
        if inp is not None:
            size, mean, std = inp.get("size"), inp.get("mean"), inp.get("std")
            if not (isinstance(size, int) and size > 0 and _numbers(mean) and _numbers(std)):
                raise ModelError("manifest: 'input' needs a size (int) and mean and std (3 numbers each)")
        for key in ("weights", "head"):
            if key in man:
                f = man[key].get("file")
                if not isinstance(f, str) or not isinstance(man[key].get("sha256", ""), str):
                    raise ModelError(f"manifest: {key!r} needs a file and a sha256")
                model_file(f, key)
    except ModelError as e:
        raise ModelError(f"{p}: {str(e).removeprefix('manifest: ')}") from None
    return man


def _numbers(v: object) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                       for x in v)


def graph_file(model_dir: Union[str, Path], spec: GraphSpec, verify: bool = True) -> Path:
    """Path of a graph's ONNX file; ModelError if it is missing or (``verify``) its sha256 differs from the
    manifest's."""
    path = Path(model_dir) / spec.file  # (checked to stay inside the folder when the spec was read)
    if not path.is_file():
        raise ModelError(f"{path}: graph file missing from the model directory")
    if verify:
        check_sha256(path, spec.sha256, "graph")
    return path


_B = TypeVar("_B", bound="Backend")


class Backend(abc.ABC):
    """Runs the graphs of one exported model directory.

    Attributes:
        name: backend name (``"onnxruntime"``, ``"torch"``, ``"tensorrt"``).
        device: where it runs, in words (``"cpu"``, ``"cuda:0 (NVIDIA H100)"``).
        precision: ``"fp32"`` or ``"fp16"``.
        manifest: the parsed manifest.
        graphs: the available graph specs by name.
        max_batch: the largest batch one call sends to the device (larger
            batches are split).

    Thread-safety: each backend documents its own; the default is that one
    instance may be used from one thread at a time.
    """

    name: str = "base"
    #: how :func:`engines.open_backend` chose it (None where it was made directly)
    choice: Optional["Choice"] = None
    #: the backends :func:`engines.open_backend` tried before this one: ``{"backend", "error"}`` each
    fallbacks: List[Dict[str, str]] = []

    def __init__(self, model_dir: Union[str, Path]) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = read_manifest(self.model_dir)
        self.graphs: Dict[str, GraphSpec] = {k: GraphSpec(k, v) for k, v in self.manifest["graphs"].items()}
        self.device: str = "cpu"
        self.precision: str = "fp32"
        self.max_batch: int = 64

    # ---------------------------------------------------------------- API
    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run ``graph`` on a batch.

        Args:
            graph: a graph name of the manifest (``"analyze"``, ...).
            inputs: arrays by input name, float32, batch first; all the same batch size. An image input is
                (N, 3, S, S) **RGB**, normalised as the manifest's ``input`` says (``(pixel/255 - mean) / std``):
                :func:`facecycle.preprocess.to_input` makes it from crops; BGR or unnormalised pixels give wrong
                outputs without an error.

        Returns:
            float32 arrays by output name, batch first, same batch size as the inputs.
        """
        spec = self._spec(graph)
        arrs = self._check_inputs(spec, inputs)
        n = next(iter(arrs.values())).shape[0]
        if n == 0:
            return {o["name"]: np.zeros([0] + [int(d) for d in o["shape"][1:]], np.float32) for o in spec.outputs}
        if n <= self.max_batch:
            return self._run(spec, arrs)
        parts = [self._run(spec, {k: v[i:i + self.max_batch] for k, v in arrs.items()})
                 for i in range(0, n, self.max_batch)]
        return {k: np.concatenate([p[k] for p in parts]) for k in spec.output_names}

    def warmup(self, batch_sizes: Sequence[int] = (1,), graphs: Optional[Sequence[str]] = None) -> None:
        """Run each graph once per batch size on zeros (allocations, autotuning, graph capture)."""
        for g in graphs or list(self.graphs):
            spec = self.graphs[g]
            for b in batch_sizes:
                self.run(g, {i["name"]: np.zeros([b] + [int(d) for d in i["shape"][1:]], np.float32)
                             for i in spec.inputs})

    def close(self) -> None:
        """Release device resources."""

    def describe(self) -> Dict[str, Any]:
        d = {"backend": self.name, "device": self.device, "precision": self.precision,
             "max_batch": self.max_batch, "graphs": sorted(self.graphs)}
        choice = getattr(self, "choice", None)
        if choice is not None:  # set by engines.open_backend
            d["selected"] = choice.reason
            d["fallbacks"] = list(getattr(self, "fallbacks", []))
        return d

    def __enter__(self: _B) -> _B:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------- to implement
    @abc.abstractmethod
    def _run(self, spec: GraphSpec, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch of at most ``max_batch`` items."""

    def run_torch(self, graph: str, tensors: Mapping[str, "object"]) -> Dict[str, "object"]:
        """Run ``graph`` on torch tensors and return torch tensors.

        Backends with a zero-copy device path (PyTorch, TensorRT) override this
        and keep CUDA tensors on the GPU; this fallback goes through numpy
        (host copies) and returns CPU tensors.
        """
        import torch

        arrs = {k: t.detach().float().cpu().numpy() for k, t in tensors.items()}
        return {k: torch.from_numpy(v) for k, v in self.run(graph, arrs).items()}

    # ------------------------------------------------------------ helpers
    def _graph_file(self, spec: GraphSpec, verify: bool = True) -> Path:
        """Path of a graph's ONNX file; ModelError if it is missing or its sha256 differs from the manifest."""
        return graph_file(self.model_dir, spec, verify)

    def _spec(self, graph: str) -> GraphSpec:
        try:
            return self.graphs[graph]
        except KeyError:
            raise ModelError(f"graph {graph!r} not in {self.model_dir} (has {', '.join(self.graphs)})") from None

    @staticmethod
    def _check_inputs(spec: GraphSpec, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        missing = [n for n in spec.input_names if n not in inputs]
        if missing:
            raise ValueError(f"{spec.name}: missing inputs {missing}")
        arrs = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in spec.input_names}
        sizes = {a.shape[0] for a in arrs.values()}
        if len(sizes) != 1:
            raise ValueError(f"{spec.name}: inputs disagree on batch size {sorted(sizes)}")
        for i in spec.inputs:
            want = [int(d) for d in i["shape"][1:]]
            got = list(arrs[i["name"]].shape[1:])
            if got != want:
                raise ValueError(f"{spec.name}: input {i['name']} has shape {got} per item, expected {want}")
        return arrs
