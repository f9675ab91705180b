"""TensorRT backend (TensorRT 10.x and 11.x Python API).

Build: our ONNX graph -> ``trt.OnnxParser`` -> one optimization profile over
the batch axis (min 1 / opt 8 / max 64 by default) -> ``build_serialized_network``
with a persistent timing cache -> engine plan in the user cache (see
:mod:`engines.cache`), keyed by ONNX sha256, TensorRT version, GPU name,
compute capability, precision and profile. The exported graph's sha256 is
checked against the manifest before a cached plan is used (``verify``, the
default), not only before a build. A cached plan that fails to
deserialize (other TensorRT build, corrupt file) is rebuilt with a WARNING
saying why; so is a cached fp16 graph that TensorRT's ONNX parser cannot read
or whose sha256 is not the one recorded when it was written. An engine whose
I/O tensors are not the manifest's is a GraphMismatch (a ModelError).

Precision:

* ``fp32``: the exported graph, strongly typed, TF32 disabled (so results stay
  within 1e-4 of PyTorch).
* ``fp16``: the graph converted to FP16 with FP32 inputs/outputs
  (``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)``)
  and built as a strongly typed network, so the precision comes from the
  graph. This is the only FP16 route on TensorRT 11, which removed the weak
  typing builder flags; on TensorRT 10 ``fp16_mode="flag"`` instead builds the
  FP32 graph weakly typed with ``BuilderFlag.FP16``.

References (the documented Python API this module follows):

* TensorRT 10 Builder / NetworkDefinitionCreationFlag — EXPLICIT_BATCH is
  "[DEPRECATED] Ignored because networks are always explicit batch in
  TensorRT 10.0"; STRONGLY_TYPED opts in to strong typing:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Builder.html
* TensorRT 11 migration: "TensorRT 11.x removes all weak typing APIs"; strong
  typing is always on and the STRONGLY_TYPED flag is accepted but ignored;
  BuilderFlag.FP16/INT8/BF16 are removed:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-c-api-reference.html
* Name-based I/O (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``),
  ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3`` (10.x and 11.x):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-python-api.html

Device buffers are torch CUDA tensors (``tensor.data_ptr()`` for
``set_tensor_address``; a ``torch.cuda.Stream`` per thread for
``execute_async_v3``), so this backend needs torch with CUDA; cuda-python is
not used.

Thread-safety: one ``IExecutionContext`` and one CUDA stream per thread and
graph (``threading.local``); the engine is shared. Building/loading an engine
happens once, under a lock.

Nothing here has been run in this repository's CI (no GPU); the tests skip
with a reason where TensorRT or a GPU is absent.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from facecycle.errors import BackendUnavailable, ModelError, PipelineError, UsageError
from facecycle.files import sha256_file

from .base import Backend, GraphMismatch, GraphSpec, io_mismatch
from .cache import (
    EngineKey,
    derived_problem,
    engine_cache_dir,
    engine_key,
    engine_path,
    fp16_onnx,
    fp16_path,
    rebuild_level,
    remove_stale_temporaries,
    timing_cache_path,
    write_atomic,
)

__all__ = ["TensorRTBackend", "DEFAULT_PROFILE", "trt_major", "BuildProgress"]

log = logging.getLogger(__name__)

DEFAULT_PROFILE = (1, 8, 64)


class BuildProgress:
    """Progress of a long engine build: a WARNING line every ``every`` seconds while it runs (the first build
    takes minutes), naming TensorRT's current phase when its ``IProgressMonitor`` reports one.

    Use as a context manager around ``build_serialized_network``; :meth:`monitor` gives the
    ``trt.IProgressMonitor`` to set on the builder config (TensorRT >= 10 has it; None otherwise).
    """

    def __init__(self, label: str, every: float = 15.0, emit=None) -> None:
        self.label = label
        self.every = float(every)
        self.emit = emit or (lambda msg: log.warning("%s", msg))
        self.phase: Optional[str] = None
        self.step: Tuple[int, int] = (0, 0)
        self.lines = 0
        self._stop = threading.Event()
        self._t0 = 0.0
        self._thread: Optional[threading.Thread] = None

    def status(self) -> str:
        s = f"tensorrt: still building {self.label} ({time.perf_counter() - self._t0:.0f} s"
        if self.phase:
            s += f", {self.phase}" + (f" {self.step[0]}/{self.step[1]}" if self.step[1] else "")
        return s + ")"

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            self.lines += 1
            self.emit(self.status())

    def __enter__(self) -> "BuildProgress":
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._beat, name="trt-build-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def monitor(self, trt):
        """A ``trt.IProgressMonitor`` feeding :attr:`phase` / :attr:`step` (None if TensorRT lacks the class)."""
        base = getattr(trt, "IProgressMonitor", None)
        if base is None:
            return None
        prog = self

        class _Monitor(base):
            def __init__(self) -> None:
                base.__init__(self)

            def phase_start(self, phase_name, parent_phase, num_steps):
                if parent_phase is None:  # top-level phases only
                    prog.phase, prog.step = str(phase_name), (0, int(num_steps))

            def step_complete(self, phase_name, step):
                if str(phase_name) == prog.phase:
                    prog.step = (int(step) + 1, prog.step[1])
                return True  # keep building

            def phase_finish(self, phase_name):
                pass

        return _Monitor()


def trt_major(version: str) -> int:
    """Major version of a TensorRT version string (``"10.13.0.35"`` -> 10)."""
    return int(str(version).split(".")[0])


def _profile(profile=None, max_batch: Optional[int] = None, opt_batch: Optional[int] = None,
             min_batch: Optional[int] = None) -> Tuple[int, int, int]:
    lo, opt, hi = profile or DEFAULT_PROFILE
    if max_batch is not None:
        hi = int(max_batch)
    if min_batch is not None:
        lo = int(min_batch)
    if opt_batch is not None:
        opt = int(opt_batch)
    opt = min(max(opt, lo), hi)
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"batch profile must satisfy 1 <= min <= opt <= max, got {lo}/{opt}/{hi}")
    return lo, opt, hi


class TensorRTBackend(Backend):
    """Runs the manifest's graphs as TensorRT engines.

    Args:
        model_dir: exported model directory.
        precision: ``"fp32"`` or ``"fp16"``.
        profile: batch ``(min, opt, max)``; or ``min_batch`` / ``opt_batch`` / ``max_batch``.
        fp16_mode: ``"graph"`` (convert the ONNX graph; default, the only mode
            on TensorRT 11) or ``"flag"`` (``BuilderFlag.FP16``; TensorRT 10 only).
        device_id: CUDA device index.
        workspace_mb: builder workspace memory pool limit.
        rebuild: ignore cached engines.
        cache_dir: engine cache directory (default :func:`engines.cache.engine_cache_dir`).
        verify: check each graph file's sha256 against the manifest before its engine is loaded from the cache or
            built (default True; plans are keyed by that sha256).
    """

    name = "tensorrt"

    def __init__(self, model_dir: Union[str, Path], precision: str = "fp32", profile=None,
                 max_batch: Optional[int] = None, opt_batch: Optional[int] = None,
                 min_batch: Optional[int] = None, fp16_mode: str = "graph", device_id: int = 0,
                 workspace_mb: int = 2048, rebuild: bool = False, cache_dir: Optional[Union[str, Path]] = None,
                 verify: bool = True, **unused) -> None:
        super().__init__(model_dir)
        if unused:
            log.debug("tensorrt: ignoring options %s", sorted(unused))
        try:
            import tensorrt as trt
        except ImportError as e:
            raise BackendUnavailable(f"the 'tensorrt' Python package is not installed ({e})") from None
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("the TensorRT backend keeps its device buffers in torch CUDA tensors; "
                                     "install torch with CUDA") from None
        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT needs a CUDA GPU (torch.cuda.is_available() is False)")
        self._trt, self._torch = trt, torch
        self.trt_version = str(trt.__version__)
        self.major = trt_major(self.trt_version)
        if self.major < 10:
            raise BackendUnavailable(f"TensorRT {self.trt_version} is too old; 10.x or 11.x is supported")
        if precision not in ("fp32", "fp16"):
            raise UsageError(f"precision must be fp32 or fp16, not {precision!r}")
        if fp16_mode not in ("graph", "flag"):
            raise UsageError(f"fp16_mode must be 'graph' or 'flag', not {fp16_mode!r}")
        if fp16_mode == "flag" and self.major >= 11:
            # TRT 11 removed BuilderFlag.FP16 (weak typing); precision must come from the graph.
            raise UsageError("fp16_mode='flag' needs TensorRT 10 (BuilderFlag.FP16 was removed in 11); use 'graph'")
        self.precision = precision
        self.fp16_mode = fp16_mode
        self.profile = _profile(profile, max_batch, opt_batch, min_batch)
        self.max_batch = self.profile[2]
        self._dev = torch.device("cuda", device_id)
        self.gpu_name = torch.cuda.get_device_name(device_id)
        cc = torch.cuda.get_device_capability(device_id)
        self.compute_capability = f"{cc[0]}.{cc[1]}"
        self.device = f"cuda:{device_id} ({self.gpu_name})"
        self.workspace_mb = int(workspace_mb)
        self.rebuild = bool(rebuild)
        self.cache_dir = Path(cache_dir) if cache_dir else engine_cache_dir()
        self._verify = verify
        self._logger = _make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engines: Dict[str, object] = {}
        self._engine_files: Dict[str, Path] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    # ------------------------------------------------------------- engines
    def key_for(self, spec: GraphSpec) -> EngineKey:
        sha = spec.sha256 or sha256_file(self._graph_file(spec, verify=False))
        return engine_key(spec.name, sha, self.trt_version, self.gpu_name, self.compute_capability,
                          self.precision, self.profile, self.fp16_mode)

    def engine_path(self, graph: str) -> Path:
        return engine_path(self.key_for(self._spec(graph)), self.cache_dir)

    def engine(self, graph: str):
        """The deserialized ``ICudaEngine`` of ``graph`` (loaded from the cache or built)."""
        eng = self._engines.get(graph)
        if eng is not None:
            return eng
        spec = self._spec(graph)
        with self._lock:
            eng = self._engines.get(graph)
            if eng is None:
                # an engine is bound to the GPU current when it is built or deserialized (TensorRT's FAQ: set the
                # device first), so make this backend's device current, not CUDA's default device 0
                with self._torch.cuda.device(self._dev):
                    eng = self._load_or_build(spec)
                self._check_io(spec, eng)
                self._engines[graph] = eng
        return eng

    def _check_io(self, spec: GraphSpec, eng) -> None:
        """GraphMismatch where the engine's I/O tensors (names, count, static dims; ``-1`` is the dynamic batch) are
        not the manifest's (an output the manifest lists but the graph lacks failed mid-run with a KeyError)."""
        trt = self._trt
        ins, outs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            shape = [int(d) for d in eng.get_tensor_shape(name)]
            (ins if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append((name, shape))
        diff = io_mismatch(spec, ins, outs)
        if diff is not None:
            raise GraphMismatch(f"{self._engine_files.get(spec.name, spec.file)}: {diff} (graph {spec.name!r} of "
                                f"{self.model_dir / 'manifest.json'}); re-export the model")

    def _load_or_build(self, spec: GraphSpec):
        # the exported graph is checked against the manifest's sha256 before a cached plan is used, not only before
        # a build: the plan is keyed by the manifest's sha256, so a replaced analyze.onnx ran the old engine
        exported = self._graph_file(spec, verify=self._verify)
        key = self.key_for(spec)
        path = engine_path(key, self.cache_dir)
        self._engine_files[spec.name] = path
        if path.is_file() and not self.rebuild:
            why = None
            try:
                eng = self._runtime.deserialize_cuda_engine(path.read_bytes())
            except Exception as e:  # noqa: BLE001 - pybind raises RuntimeError/TypeError
                eng, why = None, f"{type(e).__name__}: {e}"
            if eng is not None:
                log.info("tensorrt: loaded cached engine %s", path)
                return eng
            log.warning("tensorrt: cached engine %s failed to deserialize (%s); rebuilding", path,
                        why or "IRuntime.deserialize_cuda_engine returned None: built by another TensorRT "
                               "version/GPU, or the file is corrupt")
        plan = self._build(spec, key, exported)
        remove_stale_temporaries(path.parent)  # a killed builder's plan temporaries (plans are large)
        if (path.parent / "timing").is_dir():
            remove_stale_temporaries(path.parent / "timing")
        write_atomic(path, plan)
        meta = {"graph": key.graph, "onnx_sha256": key.onnx_sha256, "trt_version": key.trt_version,
                "gpu_name": key.gpu_name, "compute_capability": key.compute_capability, "precision": key.precision,
                "profile": list(key.profile), "fp16_mode": key.fp16_mode, "model_dir": str(self.model_dir),
                "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
        eng = self._runtime.deserialize_cuda_engine(plan)
        if eng is None:
            raise ModelError(f"{path}: TensorRT could not deserialize the engine it just built")
        return eng

    def _build(self, spec: GraphSpec, key: EngineKey, exported: Path) -> bytes:
        trt = self._trt
        src = exported
        fp16_cached = False  # a converted graph read from the cache (rebuilt once if TensorRT cannot parse it)
        if self.precision == "fp16" and self.fp16_mode == "graph":
            cached = fp16_path(key.onnx_sha256, self.cache_dir)
            fp16_cached = cached.is_file()
            why = derived_problem(cached, key.onnx_sha256) if fp16_cached else None
            if why is not None:  # its bytes are not the ones written (flipped weights: NaN features): convert again
                log.log(rebuild_level(why), "tensorrt: cached fp16 graph %s cannot be used (%s); rebuilding it from %s",
                        cached, why, exported.name)
                fp16_cached = False
            src = fp16_onnx(exported, key.onnx_sha256, self.cache_dir, rebuild=why is not None)
        t0 = time.perf_counter()
        log.warning("tensorrt: building %s engine for %s (%s, batch %d/%d/%d) — this takes a while",
                    self.precision, spec.name, self.gpu_name, *self.profile)
        builder = trt.Builder(self._logger)
        # Network creation flags: TRT 10 — EXPLICIT_BATCH is deprecated and ignored (always explicit batch);
        # STRONGLY_TYPED makes the graph's dtypes binding. TRT 11 — strong typing is always on and the flag is
        # ignored, so pass no flags (see the Builder / migration pages cited in the module docstring).
        flags = 0
        if self.major == 10 and not (self.precision == "fp16" and self.fp16_mode == "flag"):
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(src.read_bytes()):
            errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            if not fp16_cached:
                raise ModelError(f"{src}: TensorRT's ONNX parser failed: {errs[:400]}")
            # a cached fp16 graph cut short (a crash, a copy): converted again once, as a bad plan is rebuilt
            log.warning("tensorrt: cached fp16 graph %s cannot be parsed (%s); rebuilding it from %s", src,
                        errs[:300], exported.name)
            src = fp16_onnx(exported, key.onnx_sha256, self.cache_dir, rebuild=True)
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, self._logger)
            if not parser.parse(src.read_bytes()):
                errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise ModelError(f"{src}: TensorRT's ONNX parser failed on the fp16 graph just rebuilt from "
                                 f"{exported}: {errs[:400]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 would exceed the 1e-4 fp32 tolerance
        if self.precision == "fp16" and self.fp16_mode == "flag":
            config.set_flag(trt.BuilderFlag.FP16)  # TRT 10 weak typing only (removed in 11)
        lo, opt, hi = self.profile
        prof = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            t = network.get_input(i)
            rest = tuple(int(d) for d in tuple(t.shape)[1:])
            prof.set_shape(t.name, (lo,) + rest, (opt,) + rest, (hi,) + rest)
        config.add_optimization_profile(prof)
        tc_path = timing_cache_path(self.trt_version, self.gpu_name, self.compute_capability, self.cache_dir)
        cache = config.create_timing_cache(tc_path.read_bytes() if tc_path.is_file() else b"")
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            log.warning("tensorrt: timing cache %s does not fit this device; starting a fresh one", tc_path)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
        progress = BuildProgress(f"the {self.precision} {spec.name} engine")
        mon = progress.monitor(trt)
        if mon is not None:
            config.progress_monitor = mon
        try:
            with progress:
                plan = builder.build_serialized_network(network, config)
        finally:
            if mon is not None:  # the monitor must outlive every TensorRT object that uses it
                config.progress_monitor = None
        if plan is None:
            raise ModelError(f"{src}: TensorRT failed to build an engine (see the TensorRT log above)")
        write_atomic(tc_path, bytes(memoryview(config.get_timing_cache().serialize())))
        log.warning("tensorrt: built %s in %.1f s", spec.name, time.perf_counter() - t0)
        return bytes(memoryview(plan))

    def build_all(self, graphs: Optional[Sequence[str]] = None) -> Dict[str, Path]:
        """Build (or load) every graph's engine; returns the engine files by graph."""
        for g in graphs or list(self.graphs):
            self.engine(g)
        return dict(self._engine_files)

    # --------------------------------------------------------------- run
    def _context(self, graph: str):
        """(IExecutionContext, torch.cuda.Stream) of this thread for ``graph``."""
        per = getattr(self._local, "ctx", None)
        if per is None:
            per = self._local.ctx = {}
        entry = per.get(graph)
        if entry is None:
            eng = self.engine(graph)
            with self._torch.cuda.device(self._dev):
                ctx = eng.create_execution_context()
            if ctx is None:
                raise PipelineError(f"tensorrt: could not create an execution context for {graph} (GPU memory?)")
            entry = per[graph] = (ctx, self._torch.cuda.Stream(device=self._dev))
        return entry

    def _execute(self, graph: str, tensors: Dict[str, "object"]) -> Dict[str, "object"]:
        """Run one batch (min <= n <= max) of contiguous float32 CUDA tensors; returns CUDA tensors."""
        trt, torch = self._trt, self._torch
        spec = self._spec(graph)
        eng = self.engine(graph)
        ctx, stream = self._context(graph)
        caller = torch.cuda.current_stream(self._dev)
        stream.wait_stream(caller)  # inputs were produced on the caller's stream
        outs: Dict[str, object] = {}
        with torch.cuda.device(self._dev), torch.cuda.stream(stream):
            for i in range(eng.num_io_tensors):
                name = eng.get_tensor_name(i)
                if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    if eng.get_tensor_dtype(name) != trt.DataType.FLOAT:  # the bytes are float32: never reread
                        raise ModelError(f"tensorrt: {graph}: input {name} is {eng.get_tensor_dtype(name)}, not "
                                         "FLOAT (the exported graphs, fp16 ones too, keep float32 inputs)")
                    t = tensors[name]
                    t.record_stream(stream)
                    if not ctx.set_input_shape(name, tuple(t.shape)):
                        raise PipelineError(f"tensorrt: {graph}: input {name} shape {tuple(t.shape)} is outside "
                                            f"the engine's profile {self.profile}")
                    if not ctx.set_tensor_address(name, t.data_ptr()):
                        raise PipelineError(f"tensorrt: {graph}: input {name}'s address was refused")
            for i in range(eng.num_io_tensors):
                name = eng.get_tensor_name(i)
                if eng.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                    shape = tuple(ctx.get_tensor_shape(name))
                    kinds = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
                    dt = kinds.get(eng.get_tensor_dtype(name))
                    if dt is None:
                        raise ModelError(f"tensorrt: {graph}: output {name} is {eng.get_tensor_dtype(name)}, "
                                         "not FLOAT or HALF")
                    out = torch.empty(shape, dtype=dt, device=self._dev)
                    if not ctx.set_tensor_address(name, out.data_ptr()):
                        raise PipelineError(f"tensorrt: {graph}: output {name}'s address was refused")
                    outs[name] = out
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise PipelineError(f"tensorrt: execute_async_v3 failed for {graph}")
        caller.wait_stream(stream)
        for o in outs.values():
            o.record_stream(caller)
        return {n: outs[n].float() for n in spec.output_names}

    def run_torch(self, graph: str, tensors: Mapping[str, "object"]) -> Dict[str, "object"]:
        """Zero-copy path: CUDA tensors in (float32, batch first), CUDA float32 tensors out (on the caller's stream)."""
        torch = self._torch
        spec = self._spec(graph)
        ts = {n: tensors[n].to(self._dev, torch.float32).contiguous() for n in spec.input_names}
        n = next(iter(ts.values())).shape[0]
        lo, _, hi = self.profile
        parts = []
        for i in range(0, n, hi):
            chunk = {k: v[i:i + hi] for k, v in ts.items()}
            m = next(iter(chunk.values())).shape[0]
            if m < lo:  # pad up to the profile minimum, drop the padding afterwards
                chunk = {k: torch.cat([v, v[-1:].expand(lo - m, *v.shape[1:])]).contiguous() for k, v in chunk.items()}
            out = self._execute(graph, chunk)
            parts.append({k: v[:m] for k, v in out.items()})
        if not parts:
            return {o["name"]: torch.zeros([0] + [int(d) for d in o["shape"][1:]], device=self._dev)
                    for o in spec.outputs}
        return {k: torch.cat([p[k] for p in parts]) for k in spec.output_names}

    def _run(self, spec: GraphSpec, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        ts = {k: torch.from_numpy(v).to(self._dev, non_blocking=False) for k, v in inputs.items()}
        out = self.run_torch(spec.name, ts)
        torch.cuda.current_stream(self._dev).synchronize()
        return {k: v.cpu().numpy() for k, v in out.items()}

    def warmup(self, batch_sizes: Sequence[int] = (1,), graphs: Optional[Sequence[str]] = None) -> None:
        self.build_all(graphs)
        super().warmup(batch_sizes, graphs)

    def describe(self) -> dict:
        d = super().describe()
        d.update(trt_version=self.trt_version, profile=list(self.profile), fp16_mode=self.fp16_mode,
                 compute_capability=self.compute_capability,
                 engines={g: str(p) for g, p in self._engine_files.items()})
        return d

    def close(self) -> None:
        """Release contexts, then engines, then the runtime: a runtime destroyed before the engines it deserialized
        is undefined behaviour in TensorRT (idempotent; the backend cannot run afterwards)."""
        self._local = threading.local()
        with self._lock:
            self._engines.clear()
            self._runtime = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass


_LOGGER = None


def _make_logger(trt):
    """The process's one ``trt.ILogger`` (TensorRT keeps a single logger pointer: a second one draws a warning
    that it differs from the one already provided), forwarding TensorRT's messages to :mod:`logging`."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _new_logger(trt)
    return _LOGGER


def _new_logger(trt):
    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):  # noqa: A003 - TensorRT's interface
            sev = str(severity)
            level = (logging.ERROR if "ERROR" in sev else logging.WARNING if "WARNING" in sev
                     else logging.DEBUG if "VERBOSE" in sev else logging.INFO)
            logging.getLogger("tensorrt").log(level, "%s", msg)

    return _Logger()
