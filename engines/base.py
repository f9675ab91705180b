"""The one inference interface every backend implements.

A backend is opened on an exported model directory (``manifest.json`` plus
ONNX graphs, see :mod:`facecycle.export`) and runs a named graph on a batch:
numpy in, numpy out. Batches of any size are accepted: a backend splits
batches above its maximum and pads to the sizes an engine was built for.
"""
from __future__ import annotations

import abc
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, TypeVar, Union

import numpy as np

if TYPE_CHECKING:
    from .select import Choice

from facecycle.errors import ModelError

# the checked manifest reader lives below engines (the probes read model folders too and cannot import engines);
# re-exported here, where the backends and the CLI have always found it
from facecycle.manifest import GraphSpec, graph_file, io_mismatch, model_file, read_manifest

__all__ = ["Backend", "GraphSpec", "GraphMismatch", "read_manifest", "graph_file", "model_file", "io_mismatch"]

log = logging.getLogger(__name__)


class GraphMismatch(ModelError):
    """A graph file that is not the one the manifest describes (other input / output names, count or static
    dims). The model's fault, not a backend's: :func:`engines.open_backend` never falls back on it (another backend
    would fail the same way, or worse, run a different graph)."""


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
