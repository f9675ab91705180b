"""PyTorch backend: the reference implementation, CPU and CUDA, from our safetensors weights.

Weights: ``checkpoint=PATH`` (ours or the authors' layout, see
:mod:`facecycle.checkpoint`), else ``model.safetensors`` or
``weights.safetensors`` next to ``manifest.json``. The checkpoint's config
must match the manifest's (every field but ``name``). Where the manifest records
the weights ``facecycle export`` wrote (``weights``: file and sha256), those are
read and their sha256 checked (``verify``, default on): weights replaced after
the export, or left by an older one, are refused.

CUDA graphs (``device="cuda", cuda_graphs=True``): the first call of a graph at
a batch size captures a :class:`torch.cuda.CUDAGraph` with static input and
output buffers, after three warm-up iterations on a side stream (as the
PyTorch CUDA-graphs documentation prescribes); later calls copy inputs into
the static buffers, ``replay()`` and clone the outputs.

Thread-safety: eager runs may be issued from several threads (the module is
in eval mode and runs under ``torch.inference_mode``). CUDA-graph replays
share static buffers and are serialised with a lock.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from facecycle.errors import BackendUnavailable, ModelError, UsageError
from facecycle.files import check_sha256

from .base import Backend, GraphMismatch, GraphSpec, model_file
from .select import NO_WEIGHTS_HINT, WEIGHT_NAMES, find_weights

__all__ = ["TorchBackend", "graph_function"]

log = logging.getLogger(__name__)

#: config fields that describe training only: the graphs and the weights do not depend on them
_CONFIG_IGNORED = ("name",)


def graph_function(model, graph: str) -> Callable:
    """The torch callable equivalent to an exported graph: positional inputs in manifest order -> tuple."""
    if graph == "analyze":
        return lambda image: tuple(model.analyze(image))
    if graph in ("neutralize", "reexpress"):
        return lambda a, b: (model.Swap_Generator(a, b),)
    if graph == "identity":
        return lambda image: (model.identity(image),)
    raise ModelError(f"the PyTorch backend does not know graph {graph!r}")


class TorchBackend(Backend):
    """Runs FaceCycle in PyTorch.

    Args:
        model_dir: exported model directory (for the manifest: graph names, shapes).
        device: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        checkpoint: weights file; default ``model.safetensors`` / ``weights.safetensors`` in ``model_dir``.
        precision: ``"fp32"``, or ``"fp16"`` on CUDA (module cast to half, I/O stays float32).
        cuda_graphs: capture a CUDA graph per (graph, batch size) on CUDA.
        max_batch: largest batch per forward (default 64).
        threads: ``torch.set_num_threads`` on the CPU (default: leave as is). ``intra_op_threads``, the name the
            other backends take (``realtime.backend.open_model`` passes it), is the same option: it was ignored
            here, so ``--threads 1`` ran torch on every CPU and the sidecar said so. ``threads`` wins where both
            are given.
        model: an already built :class:`facecycle.model.FaceCycle` (tests, benchmarks).
    """

    name = "torch"

    def __init__(self, model_dir: Union[str, Path], device: str = "cpu", checkpoint: Optional[str] = None,
                 precision: str = "fp32", cuda_graphs: bool = False, max_batch: int = 64,
                 threads: Optional[int] = None, model=None, verify: bool = True,
                 intra_op_threads: Optional[int] = None, **unused) -> None:
        super().__init__(model_dir)
        threads = threads or intra_op_threads
        if unused:
            log.debug("torch: ignoring options %s", sorted(unused))
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailable(f"PyTorch is not installed ({e}); pip install \"facecycle-rt[torch]\"") from None
        self._torch = torch
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch has no CUDA device (torch.cuda.is_available() is False)")
        if dev.type not in ("cpu", "cuda"):
            raise UsageError(f"torch device must be cpu or cuda, not {device!r}")
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"precision must be fp32 or fp16, not {precision!r}")
        if precision == "fp16" and dev.type != "cuda":
            raise UsageError("torch fp16 needs device='cuda'")
        if cuda_graphs and dev.type != "cuda":
            raise UsageError("cuda_graphs=True needs device='cuda'")
        self.max_batch = int(max_batch)
        self.precision = precision
        self.cuda_graphs = bool(cuda_graphs)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._verify = bool(verify)
        if model is None:
            model = self._load(checkpoint)
        self._check_config(model)
        self.model = model.to(device=dev, dtype=self._dtype).eval()
        self._dev = dev
        # torch's thread count is the whole process's: set once the model is loaded, and put back at close (review
        # h82: an Analyzer on torch left a user's own torch code, and every later test, on one thread)
        self._threads_set: Optional[int] = None
        self._threads_before: Optional[int] = None
        if threads and dev.type == "cpu":
            self._threads_before, self._threads_set = torch.get_num_threads(), int(threads)
            torch.set_num_threads(self._threads_set)
        if dev.type == "cuda":
            idx = dev.index if dev.index is not None else torch.cuda.current_device()
            self.device = f"cuda:{idx} ({torch.cuda.get_device_name(idx)})"
        else:
            self.device = "cpu"
        if "identity" in self.graphs and not getattr(self.model, "has_identity", True):
            # a motion-stage checkpoint has no identity modules: the graph is not offered (calling it raised a bare
            # RuntimeError)
            log.info("%s: no identity modules in these weights: the identity graph is not available", checkpoint)
            self.graphs = {g: s for g, s in self.graphs.items() if g != "identity"}
        self._fns = {g: graph_function(self.model, g) for g in self.graphs}
        self._cuda_graphs: Dict[Tuple[str, int], tuple] = {}
        self._graph_lock = threading.Lock()

    # ------------------------------------------------------------- weights
    def _load(self, checkpoint: Optional[str]):
        from facecycle.checkpoint import load_checkpoint

        if checkpoint:
            path = Path(checkpoint)
        else:
            path = self._exported_weights()
        if path is None:
            raise ModelError(f"{self.model_dir}: no PyTorch weights (expected {' or '.join(WEIGHT_NAMES)} next "
                             f"to manifest.json); {NO_WEIGHTS_HINT}")
        return load_checkpoint(path, None if str(path).endswith(".safetensors") else self._manifest_config())

    def _manifest_config(self):
        """The manifest's config, for weights in the authors' layout (which record none of their own)."""
        from facecycle.checkpoint import CheckpointError, parse_config

        want = self.manifest.get("config") or {}
        try:
            return parse_config(json.dumps(want), str(self.model_dir / "manifest.json"))
        except CheckpointError:
            return want.get("name")

    def _exported_weights(self) -> Optional[Path]:
        """The weights next to ``manifest.json``; those the manifest records (file, sha256) where it does, checked."""
        rec = self.manifest.get("weights")
        if not rec:  # an export from before the weights were recorded: whatever weights file is there
            return find_weights(self.model_dir)
        path = self.model_dir / model_file(str(rec.get("file")), "weights")
        if not path.is_file():
            raise ModelError(f"{path}: the weights the manifest records are missing; {NO_WEIGHTS_HINT}")
        if self._verify:  # the weights the graphs were exported from
            check_sha256(path, str(rec.get("sha256") or ""), "weights",
                         "re-export with `facecycle export --checkpoint PATH --out DIR`")
        return path

    def _check_config(self, model) -> None:
        """The weights' config must be the manifest's, every field but the name (``feature_flip``, ``detail_px``,
        ``crop_scale``, ``mean``, ... change what the graphs compute); a field an older manifest lacks counts as its
        default."""
        import dataclasses

        from facecycle.config import FaceCycleConfig

        want = self.manifest.get("config")
        if not want:
            return
        defaults = {f.name: f.default for f in dataclasses.fields(FaceCycleConfig)}
        have = model.config.to_dict()

        def norm(v):
            return list(v) if isinstance(v, tuple) else v

        diff = [k for k in sorted(set(want) | set(have), key=lambda k: (k not in defaults, k))
                if k not in _CONFIG_IGNORED
                and norm(want.get(k, defaults.get(k))) != norm(have.get(k, defaults.get(k)))]
        if diff:
            raise ModelError(f"weights do not match {self.model_dir}: config differs in "
                             + ", ".join(f"{k} ({have.get(k)} vs {want.get(k, defaults.get(k))})" for k in diff))

    # ----------------------------------------------------------------- run
    def _forward(self, graph: str, tensors):
        """Tensors on self._dev (already cast) -> tuple of output tensors."""
        torch = self._torch
        n = tensors[0].shape[0]
        if self.cuda_graphs:
            return self._replay(graph, n, tensors)
        with torch.inference_mode():
            return self._fns[graph](*tensors)

    def _replay(self, graph: str, n: int, tensors):
        with self._graph_lock:
            entry = self._cuda_graphs.get((graph, n))
            if entry is None:
                entry = self._capture(graph, tensors)
                self._cuda_graphs[(graph, n)] = entry
            g, static_in, static_out = entry
            for s, t in zip(static_in, tensors, strict=True):
                s.copy_(t)
            g.replay()
            return tuple(o.clone() for o in static_out)

    def _capture(self, graph: str, example):
        """Capture one CUDA graph (PyTorch docs, "CUDA Graphs": warm up on a side stream, then capture)."""
        torch = self._torch
        fn = self._fns[graph]
        static_in = [t.clone() for t in example]
        with torch.inference_mode():
            side = torch.cuda.Stream(device=self._dev)
            side.wait_stream(torch.cuda.current_stream(self._dev))
            with torch.cuda.stream(side):
                for _ in range(3):
                    fn(*static_in)
            torch.cuda.current_stream(self._dev).wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = fn(*static_in)
        log.info("torch: captured CUDA graph %s at batch %d", graph, example[0].shape[0])
        return g, static_in, tuple(static_out)

    def _run(self, spec: GraphSpec, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        ts = [torch.from_numpy(inputs[n]).to(self._dev, self._dtype, non_blocking=False) for n in spec.input_names]
        outs = self._forward(spec.name, ts)
        if len(outs) != len(spec.output_names):  # a manifest that is not this model's (zip's "argument 2 is shorter")
            raise GraphMismatch(f"{spec.name}: the weights' module gives {len(outs)} outputs, the manifest lists "
                                f"{len(spec.output_names)} ({', '.join(spec.output_names)})")
        return {n: o.float().cpu().numpy() for n, o in zip(spec.output_names, outs, strict=True)}

    def run_torch(self, graph: str, tensors: Mapping[str, "object"]) -> Dict[str, "object"]:
        """Zero-copy path: torch tensors in (any device; moved here if needed), float32 tensors on this device out."""
        torch = self._torch
        spec = self._spec(graph)
        missing = [n for n in spec.input_names if n not in tensors]
        if missing:
            raise ValueError(f"{graph}: missing inputs {missing}")
        ts = [tensors[n].to(self._dev, self._dtype) for n in spec.input_names]
        n = ts[0].shape[0]
        parts = []
        for i in range(0, max(n, 1), self.max_batch):
            parts.append(self._forward(graph, [t[i:i + self.max_batch] for t in ts]))
        return {name: torch.cat([p[j] for p in parts]).float() for j, name in enumerate(spec.output_names)}

    def describe(self) -> dict:
        d = super().describe()
        d.update(cuda_graphs=self.cuda_graphs, torch_version=self._torch.__version__,
                 threads=self._torch.get_num_threads())
        return d

    def close(self) -> None:
        with self._graph_lock:
            self._cuda_graphs.clear()
        before, self._threads_before = getattr(self, "_threads_before", None), None
        if before is not None and self._torch.get_num_threads() == self._threads_set:  # (unless changed since)
            self._torch.set_num_threads(before)
