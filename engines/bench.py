"""Engine benchmark: faces/s and latency per backend, graph and batch size.

For each graph and batch size, every backend is warmed up and then timed for
``repeats`` calls, one backend after the other (interleaving single calls
would let one runtime's spinning thread pool slow the next). Each record
holds the median (p50) and p95 latency over the timed calls, faces/s from
the median, the process CPU time per face (``faces_per_cpu_s``: robust to
other processes' load on a shared machine), the 1-minute load average, and
the speed relative to the baseline backend measured in the same process.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from facecycle.errors import BackendUnavailable

from . import open_backend
from .base import Backend

__all__ = ["bench_engines", "export_random", "make_inputs"]

log = logging.getLogger(__name__)


def make_inputs(be: Backend, graph: str, batch: int, seed: int = 0) -> Dict[str, np.ndarray]:
    """Deterministic random float32 inputs for ``graph`` (flows in [-0.5, 0.5], images ~N(0, 1))."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in be.graphs[graph].inputs:
        shape = [batch] + [int(d) for d in i["shape"][1:]]
        a = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 4 and shape[1] == 2:
            a = np.clip(a, -1, 1) * 0.5
        out[i["name"]] = a
    return out


def export_random(config: str, out_dir: Path, graphs: Optional[Sequence[str]] = None, seed: int = 0,
                  atol: float = 1e-4) -> Path:
    """Export randomly initialised weights of a config (ONNX + ``model.safetensors``) into ``out_dir`` (needs torch).

    The one random-weight exporter: ``bench engines --config`` and ``bench pipeline/soak --config`` both use it.
    ``atol`` is the ONNX-vs-PyTorch tolerance of the export check (random weights of a large config need more).
    """
    try:
        import torch
    except ImportError:
        raise BackendUnavailable("--config needs PyTorch (the [torch] extra) to create and export the model; "
                                 "pass --model DIR instead") from None
    from facecycle.config import get_config
    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle

    torch.manual_seed(seed)
    model = FaceCycle(get_config(config)).eval()
    want = [g for g in (graphs or []) if g != "identity" or model.has_identity] or None
    export_onnx(model, out_dir, graphs=want, atol=atol, source=f"random:{config}:seed{seed}", weights=True)
    return Path(out_dir)


def _loadavg() -> Optional[float]:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def _label(be: Backend) -> str:
    lab = getattr(getattr(be, "choice", None), "name", be.name)
    if getattr(be, "cuda_graphs", False):
        lab += "+graphs"
    if be.precision != "fp32":
        lab += f":{be.precision}"
    return lab


def _split_name(name: str) -> Tuple[str, dict]:
    """``torch-cuda+graphs`` -> (``torch-cuda``, {cuda_graphs: True}); ``onnxruntime:int8`` -> precision int8."""
    extra: dict = {}
    if ":" in name:
        name, prec = name.split(":", 1)
        extra["precision"] = prec
    if name.endswith("+graphs"):
        name = name[: -len("+graphs")]
        extra["cuda_graphs"] = True
    return name, extra


def bench_engines(model_dir: Path, backends: Sequence[str] = ("onnxruntime",), batches: Sequence[int] = (1, 8, 32),
                  graphs: Sequence[str] = ("analyze",), repeats: int = 10, warmup: int = 3,
                  baseline: Optional[str] = "torch", max_seconds: float = 60.0, opts: Optional[dict] = None,
                  meta: Optional[dict] = None) -> List[dict]:
    """Benchmark backends on ``model_dir``.

    Args:
        backends: backend names (``open_backend`` names, plus ``torch-cuda+graphs``; a
            ``:fp16``/``:int8`` suffix overrides the precision for that backend).
        baseline: a backend measured alongside (if available) that every record's
            ``speedup_vs_baseline`` refers to (``None``/unavailable: the first backend).
        repeats: timed calls per (backend, graph, batch); fewer if a case exceeds ``max_seconds``.
        opts: options for ``open_backend`` (``intra_op_threads``, ``precision``, ...).
        meta: extra fields copied into every record (model, config, host).

    Returns:
        records ``{backend, device, precision, graph, batch, faces_per_s, latency_ms_p50,
        latency_ms_p95, repeats, baseline, speedup_vs_baseline, ...}``.
    """
    opts = dict(opts or {})
    # the baseline is the reference implementation: always fp32, never quantized
    base_opts = {k: v for k, v in opts.items() if k not in ("precision", "calibration")}
    names = list(dict.fromkeys(backends))
    from .select import canonical

    for n in names + ([baseline] if baseline else []):
        canonical(_split_name(n)[0])  # UsageError on unknown names before anything is opened
    bl_name = None
    if baseline:
        if baseline not in names:
            try:
                base, extra = _split_name(baseline)
                open_backend(model_dir, base, **{**base_opts, **extra}).close()
                names.append(baseline)
            except BackendUnavailable as e:
                log.warning("baseline %s unavailable (%s); ratios refer to %s", baseline, e, names[0])
        bl_name = baseline if baseline in names else None
    opened: List[Tuple[str, Backend]] = []
    try:
        for n in names:
            base, extra = _split_name(n)
            o = base_opts if (n == bl_name and n not in backends) else opts
            be = open_backend(model_dir, base, **{**o, **extra})
            opened.append((n, be))
        bl_name = bl_name or names[0]
        records: List[dict] = []
        for g in graphs:
            for b in batches:
                xs = {n: make_inputs(be, g, b) for n, be in opened}
                for n, be in opened:
                    for _ in range(warmup):
                        be.run(g, xs[n])
                times: Dict[str, List[float]] = {n: [] for n, _ in opened}
                cpu: Dict[str, float] = {n: 0.0 for n, _ in opened}
                load0 = _loadavg()
                for n, be in opened:  # backends one after another: no thread pools spinning against each other
                    t_start = time.perf_counter()
                    c0 = time.process_time()
                    for r in range(repeats):
                        t0 = time.perf_counter()
                        be.run(g, xs[n])
                        times[n].append(time.perf_counter() - t0)
                        if r >= 4 and time.perf_counter() - t_start > max_seconds:
                            log.warning("bench %s %s b=%d: stopping after %d repeats (%.0f s budget)", n, g, b,
                                        r + 1, max_seconds)
                            break
                    cpu[n] = time.process_time() - c0
                recs = {}
                for n, be in opened:
                    ts = np.array(times[n])
                    p50 = float(np.median(ts))
                    recs[n] = {
                        "backend": be.name, "variant": _label(be), "device": be.device, "precision": be.precision,
                        "graph": g, "batch": int(b), "faces_per_s": round(b / p50, 2),
                        "latency_ms_p50": round(p50 * 1e3, 3),
                        "latency_ms_p95": round(float(np.percentile(ts, 95)) * 1e3, 3),
                        "repeats": int(len(ts)), "warmup": int(warmup),
                        # process CPU seconds (all threads) per face: robust to other processes' load
                        "faces_per_cpu_s": round(b * len(ts) / cpu[n], 2) if cpu[n] > 0 else None,
                        "loadavg_1min": load0,
                        "threads": be.describe().get("intra_op_threads", be.describe().get("threads")),
                        "role": "baseline" if n == bl_name and n not in backends else "measured",
                        **(meta or {}),
                    }
                for n in recs:
                    base = recs[bl_name]
                    recs[n]["baseline"] = base["variant"]
                    recs[n]["speedup_vs_baseline"] = round(recs[n]["faces_per_s"] / base["faces_per_s"], 3)
                    records.append(recs[n])
                    log.info("%s %s b=%d: %.1f faces/s (p50 %.2f ms, x%.2f vs %s)", recs[n]["variant"], g, b,
                             recs[n]["faces_per_s"], recs[n]["latency_ms_p50"], recs[n]["speedup_vs_baseline"],
                             bl_name)
        return records
    finally:
        for _, be in opened:
            be.close()


def temp_export(config: str, graphs: Optional[Sequence[str]] = None):
    """Context manager: a temporary directory with a random ``config`` exported into it."""
    class _Ctx:
        def __enter__(self_inner) -> Path:
            self_inner.td = tempfile.TemporaryDirectory(prefix=f"facecycle-bench-{config}-")
            return export_random(config, Path(self_inner.td.name), graphs)

        def __exit__(self_inner, *exc) -> None:
            self_inner.td.cleanup()

    return _Ctx()
