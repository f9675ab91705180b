"""ONNX Runtime backend: the CPU default; CUDA / TensorRT execution providers when installed.

Thread-safety: one :class:`OnnxRuntimeBackend` may be shared by several
threads. ``InferenceSession.run`` is documented thread-safe by ONNX Runtime,
and sessions are created lazily (once per graph, under a lock) on first use.
Concurrent calls share the session's intra-op thread pool, so on a small CPU
running batches from one thread is usually faster than many threads.
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from facecycle.cpus import usable_cpus
from facecycle.errors import BackendUnavailable, ModelError, UsageError
from facecycle.files import sha256_file

from .base import Backend, GraphMismatch, GraphSpec, io_mismatch

__all__ = ["OnnxRuntimeBackend", "provider_options"]

log = logging.getLogger(__name__)

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def provider_options(providers: Sequence, device_id: int, graph_sha256: Optional[str],
                     root: Optional[Path] = None) -> List:
    """The execution providers (with their options) one graph's session is created with.

    The CUDA and TensorRT providers get ``device_id``; the TensorRT provider keeps its engines (and timing cache) in
    the user engine cache, in a folder of the graph's own: ``<root>/ort-trt/<graph_sha256[:16]>/``
    (:func:`engines.cache.ort_trt_dir`). ONNX Runtime names the engines it caches by the model file's name, node
    names and versions, not by the weights: with one folder for every model, two exports of one architecture (both
    ``analyze.onnx``) shared engines, and ``--model B`` after ``--model A`` ran A's. ``graph_sha256``: of the file
    the session loads (needed with the TensorRT provider). The CPU provider takes no options.
    """
    out: List = []
    for p in providers:
        if not isinstance(p, str) or p == "CPUExecutionProvider":
            out.append(p)  # (name, options) given by the caller, or the CPU
            continue
        o: Dict[str, object] = {"device_id": device_id}
        if p == "TensorrtExecutionProvider":  # keep the EP's engines in our user cache, not the cwd
            from .cache import ort_trt_dir

            if not graph_sha256:
                raise ValueError("the TensorRT execution provider's engine cache needs the graph's sha256")
            o.update(trt_engine_cache_enable=True, trt_timing_cache_enable=True,
                     trt_engine_cache_path=str(ort_trt_dir(graph_sha256, root)))
        out.append((p, o))
    return out


class OnnxRuntimeBackend(Backend):
    """Runs the manifest's ONNX graphs with ONNX Runtime.

    Args:
        model_dir: exported model directory (``manifest.json`` + ``*.onnx``).
        device: ``"cpu"`` (default), ``"cuda"`` (CUDA EP) or ``"tensorrt"`` (TensorRT EP).
        precision: ``"fp32"`` (the exported graphs), ``"fp16"`` (graphs converted
            to FP16 with FP32 inputs/outputs, cached in the user engine cache;
            worthwhile on GPUs only) or ``"int8"`` (static QDQ quantization of the
            image-only graphs ``analyze``/``identity``, calibrated on ``calibration``;
            the generator graphs stay FP32; for the CPU).
        calibration: int8 calibration crops: array, ``.npy`` file or a video of faces
            (see :mod:`engines.quantize`).
        intra_op_threads: threads inside one operator (default: the CPUs this process
            may use, :func:`facecycle.cpus.usable_cpus`: its affinity mask and CPU quota).
        inter_op_threads: threads across independent operators (default 1:
            these graphs are chains, parallel execution does not help).
        max_batch: the largest batch one ``session.run`` receives (default 64).
        device_id: GPU index for the CUDA / TensorRT providers.
        verify: check each graph file's sha256 against the manifest before
            loading (default True).
        spin: let idle intra-op threads spin (ORT default True; False is kinder
            to a CPU shared with capture/decoding threads).
    """

    name = "onnxruntime"

    def __init__(self, model_dir: Union[str, Path], device: str = "cpu", precision: str = "fp32",
                 intra_op_threads: Optional[int] = None, inter_op_threads: int = 1, max_batch: int = 64,
                 device_id: int = 0, verify: bool = True, spin: Optional[bool] = None,
                 providers: Optional[List] = None, calibration=None, **unused) -> None:
        super().__init__(model_dir)
        if unused:
            log.debug("onnxruntime: ignoring options %s", sorted(unused))
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendUnavailable(f"onnxruntime is not installed ({e})") from None
        self._ort = ort
        if device not in _PROVIDERS:
            raise UsageError(f"onnxruntime device must be one of {', '.join(_PROVIDERS)}, not {device!r}")
        if precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"precision must be fp32, fp16 or int8, not {precision!r}")
        if precision == "int8" and calibration is None:
            raise UsageError("int8 needs calibration face crops: --calibration VIDEO (a video of faces, or a .npy of "
                             "crops; calibration= in Python)")
        self._calibration = calibration
        self._calib_sha256: Optional[str] = None  # of the crops that calibrated the int8 graphs (the sidecar's)
        self._calib_inputs = None
        if max_batch < 1:
            raise UsageError("max_batch must be >= 1")
        avail = ort.get_available_providers()
        want = providers or _PROVIDERS[device]
        names = [p if isinstance(p, str) else p[0] for p in want]
        if names[0] not in avail:
            raise BackendUnavailable(f"onnxruntime has no {names[0]} (available: {', '.join(avail)})")
        self._providers = [p for p in want if (p if isinstance(p, str) else p[0]) in avail]
        # options per graph (provider_options): the TensorRT provider's engine cache is a folder per graph
        self._device_id = device_id if device in ("cuda", "tensorrt") and providers is None else None
        self.device = "cpu" if device == "cpu" else f"cuda:{device_id} ({names[0]})"
        self.precision = precision
        self.max_batch = int(max_batch)
        self.intra_op_threads = int(intra_op_threads or usable_cpus())
        self.inter_op_threads = int(inter_op_threads)
        self._verify = verify
        self._spin = spin
        self._sessions: Dict[str, object] = {}
        self._paths: Dict[str, Path] = {}
        self._lock = threading.Lock()
        self._closed = False  # set by close(): no session is made again afterwards

    # ------------------------------------------------------------ sessions
    def session_options(self):
        """The ``SessionOptions`` used for every graph (graph optimisation level ALL)."""
        so = self._ort.SessionOptions()
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        # fatal only: our logging reports choices, and our own one-line error says what failed (at 3 every out-of-
        # memory printed ONNX Runtime's ANSI-coloured [E:onnxruntime:...] lines before it, into a file too)
        so.log_severity_level = 4
        if self._spin is not None:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._spin else "0")
        return so

    def session(self, graph: str):
        """The (lazily created) ``InferenceSession`` of ``graph``; UsageError once the backend is closed (a call
        still in flight then made the session again, which outlived the close and its owner's)."""
        sess = self._sessions.get(graph)
        if sess is not None:
            return sess
        spec = self._spec(graph)
        with self._lock:
            if self._closed:
                raise UsageError(f"this onnxruntime backend of {self.model_dir} is closed (its sessions are "
                                 "released): open the model again")
            sess = self._sessions.get(graph)
            if sess is None:
                sess = self._create(spec)
                self._sessions[graph] = sess
        return sess

    def graph_path(self, graph: str) -> Path:
        """The ONNX file the session of ``graph`` was loaded from (after conversion)."""
        self.session(graph)
        return self._paths[graph]

    def _derived(self, spec: GraphSpec, src: Path, rebuild: bool = False) -> Tuple[Path, Optional[str], bool]:
        """The file ONNX Runtime loads for ``spec`` at this precision: ``(path, kind, cached)``.

        ``kind`` is ``"fp16"`` / ``"int8"`` for a graph converted into the engine cache (None: the exported graph
        ``src`` itself); ``cached``: it was in the cache already (not converted by this call). ``rebuild``: convert
        again, replacing the cached copy.
        """
        if self.precision == "fp16":
            from .cache import fp16_onnx, fp16_path

            sha = spec.sha256 or sha256_file(src)
            cached = not rebuild and fp16_path(sha).is_file()
            return fp16_onnx(src, sha, rebuild=rebuild), "fp16", cached
        if self.precision == "int8" and spec.input_names == ["image"]:
            from .quantize import calibration_inputs, calibration_sha256, int8_onnx, int8_path

            if self._calib_inputs is None:
                self._calib_inputs = calibration_inputs(self._calibration, self.manifest)
                self._calib_sha256 = calibration_sha256(self._calib_inputs)
            sha = spec.sha256 or sha256_file(src)
            cached = not rebuild and int8_path(sha, self._calib_sha256 or "").is_file()
            return int8_onnx(src, sha, self._calib_inputs, rebuild=rebuild), "int8", cached
        if self.precision == "int8":
            log.info("onnxruntime: %s stays fp32 under precision int8 (only image-input graphs are quantized)",
                     spec.name)
        return src, None, False

    def _session_providers(self, path: Path, sha256: Optional[str]) -> List:
        """The providers (with options) of the session of ``path``: :func:`provider_options`, with the sha256 of
        ``path`` (``sha256`` where already checked; hashed here where the TensorRT provider needs it)."""
        if self._device_id is None:
            return list(self._providers)
        names = [p if isinstance(p, str) else p[0] for p in self._providers]
        if "TensorrtExecutionProvider" in names:
            from .cache import make_cache_dir, ort_trt_dir

            if not sha256:
                sha256 = sha256_file(path)
            # the provider makes its cache folder with a create_directory that is not recursive: its parent
            # (ort-trt/, new in a fresh cache or after `engine clean`) must be there
            make_cache_dir(ort_trt_dir(sha256))
        return provider_options(self._providers, self._device_id, sha256)

    def _load(self, path: Path, sha256: Optional[str] = None) -> Tuple[object, Optional[str], bool]:
        """``(InferenceSession, None, False)`` of ``path``, or ``(None, why, damaged)`` when ONNX Runtime cannot load
        it: ``why`` the first line of its error; ``damaged`` whether the file itself is at fault (ONNX Runtime found
        no valid ONNX protobuf / graph in it, or it is gone, or ``onnx`` cannot parse it) rather than, say, an
        execution provider that cannot start. ``sha256``: of ``path``, where known (:meth:`_session_providers`)."""
        try:
            return self._ort.InferenceSession(str(path), self.session_options(),
                                              providers=self._session_providers(path, sha256)), None, False
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf/... types
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            damaged = type(e).__name__ in ("InvalidProtobuf", "InvalidGraph", "NoSuchFile") or not path.is_file()
            if not damaged:
                try:
                    import onnx

                    onnx.load(str(path), load_external_data=False)
                except ImportError:
                    pass
                except Exception:  # noqa: BLE001 - protobuf DecodeError and friends: the file is not ONNX
                    damaged = True
            return None, msg[:300], damaged

    def _create(self, spec: GraphSpec):
        from .cache import derived_problem, rebuild_level

        src = self._graph_file(spec, verify=self._verify)
        path, kind, cached = self._derived(spec, src)
        # a cached fp16 / int8 graph is used only if its bytes are the ones recorded when it was written: weights
        # flipped inside one (same size, same mtime) ran and gave NaN features
        why = derived_problem(path, spec.sha256 or None) if kind is not None and cached else None
        if why is not None:
            sess, damaged = None, True
        else:
            sess, why, damaged = self._load(path, spec.sha256 if kind is None and self._verify else None)
        if sess is None and kind is not None and cached and damaged:
            # a cached fp16 / int8 graph that cannot be loaded (truncated by a crash, a copy cut short) or fails its
            # check: rebuilt once from the exported graph, as a TensorRT plan that fails to deserialize is
            log.log(rebuild_level(why or ""), "onnxruntime: cached %s graph %s cannot be loaded (%s); rebuilding it "
                    "from %s", kind, path, why, src.name)
            path, _, cached = self._derived(spec, src, rebuild=True)
            sess, why, damaged = self._load(path)
        if sess is None:
            if kind is None or cached:
                raise ModelError(f"{path}: ONNX Runtime cannot load this graph ({why})")
            raise ModelError(f"{path}: ONNX Runtime cannot load the {kind} graph just built from {src} ({why}); "
                             "`facecycle engine clean` removes it; --precision fp32 runs the exported graphs")
        # the graph must be the one the manifest describes (names, count, static dims): a manifest whose input is
        # 32 px where the graph takes 64 failed at warm-up and fell back to torch ("internal error: RuntimeError")
        diff = io_mismatch(spec, [(i.name, i.shape) for i in sess.get_inputs()],
                           [(o.name, o.shape) for o in sess.get_outputs()])
        if diff is not None:
            raise GraphMismatch(f"{path}: {diff} (graph {spec.name!r} of {self.model_dir / 'manifest.json'}); "
                                "re-export the model")
        self._paths[spec.name] = path
        log.info("onnxruntime: loaded %s on %s (%s, %d intra-op threads)", path.name, self.device,
                 ",".join(sess.get_providers()), self.intra_op_threads)
        return sess

    # ----------------------------------------------------------------- run
    def _run(self, spec: GraphSpec, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        sess = self.session(spec.name)
        outs = sess.run(spec.output_names, inputs)
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(spec.output_names, outs, strict=True)}

    def describe(self) -> dict:
        d = super().describe()
        d.update(providers=[p if isinstance(p, str) else p[0] for p in self._providers],
                 intra_op_threads=self.intra_op_threads, inter_op_threads=self.inter_op_threads,
                 ort_version=self._ort.__version__)
        if self.precision == "int8":  # which crops calibrated the quantized graphs (their cache key's hash)
            cal = self._calibration
            d["calibration"] = str(cal) if isinstance(cal, (str, os.PathLike)) else type(cal).__name__
            d["calibration_crops_sha256"] = self._calib_sha256
        return d

    def close(self) -> None:
        """Release every session (idempotent); the backend cannot run afterwards (UsageError)."""
        with self._lock:
            self._closed = True
            self._sessions.clear()
