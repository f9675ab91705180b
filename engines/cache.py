"""The user engine cache: where built engines and converted graphs live, and their keys.

Layout (``$FACECYCLE_CACHE`` or ``$XDG_CACHE_HOME/facecycle`` or ``~/.cache/facecycle``)::

    <root>/engines/<graph>-<precision>-b<min>_<opt>_<max>-<key16>.engine   TensorRT plan
    <root>/engines/<same>.json                                             what the key was made of
    <root>/engines/timing/trt<version>-<gpu>-sm<cc>.cache                  TensorRT timing cache
    <root>/engines/onnx16/<onnx sha256 [:16]>-fp16.onnx                    FP16 graphs (I/O kept FP32)
    <root>/engines/onnx8/<onnx sha256 [:16]>-<calib sha [:12]>-ort<version>-int8.onnx   INT8 QDQ graphs (ORT CPU)
    <root>/engines/ort-trt/                                                ORT TensorRT EP's own engine cache

Every file is written whole under a temporary name of its writer's own (``.<name>.<pid>-<8 hex>.tmp``,
:func:`facecycle.files.temp_path`) and ``os.replace``-d into place, so processes that build the same graph at once
never read or delete each other's half-written files; temporaries a killed builder left are removed by the next
build once they are an hour old and their process is gone (:func:`remove_stale_temporaries`), and by
``facecycle engine clean``. A cached fp16 / int8 graph that cannot be loaded is rebuilt once by its backend
(``rebuild=True``) with a WARNING, as a TensorRT plan that fails to deserialize is.

Nothing here imports TensorRT; the key is a pure function, unit-tested on
any machine. Never put the cache inside the repository.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

from facecycle.errors import BackendUnavailable, ModelError, OutputError
from facecycle.files import temp_path

__all__ = [
    "cache_root", "engine_cache_dir", "EngineKey", "engine_key", "engine_path", "timing_cache_path",
    "list_engines", "clean_engines", "fp16_onnx", "fp16_path", "slug", "remove_stale_temporaries", "make_cache_dir",
]

log = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$FACECYCLE_CACHE``, else ``$XDG_CACHE_HOME/facecycle``, else ``~/.cache/facecycle``."""
    env = os.environ.get("FACECYCLE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "facecycle"


def engine_cache_dir() -> Path:
    return cache_root() / "engines"


def slug(s: str) -> str:
    """Filesystem-safe lowercase token (``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia-h100-80gb-hbm3"``)."""
    return re.sub(r"[^a-z0-9.]+", "-", s.lower()).strip("-") or "unknown"


@dataclass(frozen=True)
class EngineKey:
    """Everything a TensorRT engine depends on; a change in any field means a rebuild."""

    graph: str
    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str   # "9.0"
    precision: str            # "fp32" | "fp16"
    profile: Tuple[int, int, int]  # batch (min, opt, max)
    fp16_mode: str = "graph"  # "graph": ONNX converted to fp16; "flag": BuilderFlag.FP16 (TRT 10 only)

    def digest(self) -> str:
        d = asdict(self)
        d["profile"] = list(self.profile)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def filename(self) -> str:
        lo, opt, hi = self.profile
        return f"{self.graph}-{self.precision}-b{lo}_{opt}_{hi}-{self.digest()[:16]}.engine"


def engine_key(graph: str, onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability,
               precision: str, profile, fp16_mode: str = "graph") -> EngineKey:
    """Validate and normalise the parts of an engine key (pure; no TensorRT needed)."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be fp32 or fp16, not {precision!r}")
    lo, opt, hi = (int(v) for v in profile)
    if not 1 <= lo <= opt <= hi:
        raise ValueError(f"profile must satisfy 1 <= min <= opt <= max, got {lo}/{opt}/{hi}")
    if not re.fullmatch(r"[0-9a-f]{64}", onnx_sha256 or ""):
        raise ValueError(f"onnx_sha256 must be 64 hex digits, got {onnx_sha256!r}")
    if isinstance(compute_capability, (tuple, list)):
        compute_capability = ".".join(str(int(v)) for v in compute_capability)
    mode = fp16_mode if precision == "fp16" else "none"
    if mode not in ("graph", "flag", "none"):
        raise ValueError(f"fp16_mode must be 'graph' or 'flag', not {fp16_mode!r}")
    return EngineKey(graph, onnx_sha256, str(trt_version), str(gpu_name), str(compute_capability), precision,
                     (lo, opt, hi), mode)


def engine_path(key: EngineKey, root: Optional[Path] = None) -> Path:
    return (root or engine_cache_dir()) / key.filename()


def timing_cache_path(trt_version: str, gpu_name: str, compute_capability: str, root: Optional[Path] = None) -> Path:
    """One persistent timing cache per TensorRT version and GPU (shared by all graphs)."""
    return (root or engine_cache_dir()) / "timing" / f"trt{trt_version}-{slug(gpu_name)}-sm{compute_capability}.cache"


def make_cache_dir(folder: Path) -> None:
    """Create a folder of the engine cache; :class:`OutputError` with the fix when it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{folder}: cannot write to the engine cache ({e.strerror or e}); set FACECYCLE_CACHE to a "
                          "writable folder") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all, through a temporary name of this writer's own (pid and a
    random part, :func:`facecycle.files.temp_path`; two threads or processes writing one file never share it), then
    ``os.replace``. On an error the temporary is removed and :class:`OutputError` says how to fix it."""
    make_cache_dir(path.parent)
    tmp = temp_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OutputError(f"{path}: cannot write to the engine cache ({e.strerror or e}); set FACECYCLE_CACHE to a "
                          "writable folder") from None


#: a writer's temporary (:func:`facecycle.files.temp_path`): ``.<final name>.<pid>-<8 hex>.tmp``
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")
#: the temporary names of older builders: the int8 ones' fixed ``X-int8.pre.onnx`` / ``X-int8.onnx.tmp``, the fp16
#: one's ``X-fp16.onnx.tmp<pid>``
_OLD_TEMP_RE = re.compile(r"^.+(-int8\.pre\.onnx|-int8\.onnx\.tmp|\.onnx\.tmp\d+)$")


def is_temporary(name: str) -> bool:
    """Whether a file name in the cache is a writer's temporary (a build running now, or one that was killed)."""
    return bool(_TEMP_RE.match(name) or _OLD_TEMP_RE.match(name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # someone else's process (or cannot tell): leave its files alone
    return True


def remove_stale_temporaries(folder: Path, max_age_s: float = 3600.0) -> int:
    """Remove the temporaries a killed builder left in ``folder``: those at least ``max_age_s`` old whose process
    (the pid in the name) no longer runs on this machine, and the fixed-name ones of older builders at least that
    old. A temporary of a build that is running now (its pid alive, or written within ``max_age_s``: a builder on
    another machine sharing the cache) is left alone. Returns how many were removed; errors are ignored."""
    n = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    now = time.time()
    for f in entries:
        m = _TEMP_RE.match(f.name)
        if not m and not _OLD_TEMP_RE.match(f.name):
            continue
        try:
            if now - f.stat().st_mtime < max_age_s or (m and _pid_alive(int(m["pid"]))):
                continue
            f.unlink()
            n += 1
            log.info("removed %s, a temporary a killed build left in the engine cache", f)
        except OSError:
            continue
    return n


def _entries(root: Path) -> Iterator[Path]:
    if root.is_dir():
        yield from sorted(root.glob("*.engine"))


def list_engines(root: Optional[Path] = None) -> List[dict]:
    """Cached engines with their key fields (from the ``.json`` sidecar) and size."""
    root = root or engine_cache_dir()
    out = []
    for p in _entries(root):
        meta: dict = {}
        side = p.with_suffix(".json")
        if side.is_file():
            try:
                meta = json.loads(side.read_text())
            except (OSError, ValueError):
                meta = {"error": "unreadable sidecar"}
        out.append({"path": str(p), "bytes": p.stat().st_size, **meta})
    return out


#: the cache's folders of graphs converted for ONNX Runtime, and what each holds
_CONVERTED = (("onnx16", "fp16 graph"), ("onnx8", "int8 graph"), ("ort-trt", "ORT TensorRT cache"))


def list_converted(root: Optional[Path] = None) -> List[dict]:
    """The converted graphs ONNX Runtime runs (:data:`_CONVERTED`): what :func:`clean_engines` also removes,
    each with its kind and size."""
    root = root or engine_cache_dir()
    out = [{"path": str(f), "bytes": f.stat().st_size, "kind": "temporary (a build running, or killed)"}
           for f in (sorted(root.iterdir()) if root.is_dir() else []) if f.is_file() and is_temporary(f.name)]
    for sub, kind in _CONVERTED:
        d = root / sub
        if d.is_dir():
            out += [{"path": str(f), "bytes": f.stat().st_size,
                     "kind": "temporary (a build running, or killed)" if is_temporary(f.name) else kind}
                    for f in sorted(d.iterdir()) if f.is_file()]
    return out


def clean_engines(root: Optional[Path] = None, timing: bool = True, onnx16: bool = True) -> Tuple[int, int]:
    """Delete cached engines (and optionally timing caches / converted fp16 and int8 graphs). Returns (files, bytes)."""
    root = root or engine_cache_dir()
    files: List[Path] = list(_entries(root)) + [p.with_suffix(".json") for p in _entries(root)]
    if root.is_dir():  # a plan's temporaries (a build running, or killed: plans are large)
        files += [p for p in root.iterdir() if is_temporary(p.name)]
    if timing and (root / "timing").is_dir():
        files += list((root / "timing").iterdir())
    for sub, _ in _CONVERTED:
        if onnx16 and (root / sub).is_dir():
            files += list((root / sub).iterdir())
    n = b = 0
    for f in files:
        if f.is_file():
            b += f.stat().st_size
            f.unlink()
            n += 1
    for d in ("timing", *(sub for sub, _ in _CONVERTED)):
        if (root / d).is_dir() and not any((root / d).iterdir()):
            shutil.rmtree(root / d, ignore_errors=True)
    return n, b


def _isolate_outputs(model) -> None:
    """Give every graph output its own Identity node (in place).

    ``convert_float_to_float16(keep_io_types=True)`` casts graph outputs back to
    float32 by renaming them; an output that is also consumed inside the graph
    (``analyze``'s ``feature`` feeds the code MLP, ``flow`` feeds the backflow)
    would then feed float32 into float16 nodes (ORT: "Type parameter (T) of
    Optype (Gemm) bound to different types"). Routing each output through an
    Identity keeps the internal tensor float16.
    """
    from onnx import helper

    g = model.graph
    for out in g.output:
        name = out.name
        inner = name + "__inner"
        for node in g.node:
            node.output[:] = [inner if o == name else o for o in node.output]
            node.input[:] = [inner if i == name else i for i in node.input]
        g.node.append(helper.make_node("Identity", [inner], [name], name=f"{name}__output"))


def _fix_casts(model) -> None:
    """Retarget ``Cast(to=FLOAT)`` nodes whose output the converter typed FLOAT16 (in place).

    The converter rewrites ``value_info`` to float16 but leaves the ``to``
    attribute of casts inside the graph (``warp``'s ``Range -> Cast(float)``
    grid), which ORT rejects: "Type (tensor(float16)) of output arg
    (/exptoflow/Cast_2_output_0) ... does not match expected type (tensor(float))".
    """
    from onnx import TensorProto

    fp16 = {v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    for node in model.graph.node:
        if node.op_type == "Cast" and node.output[0] in fp16:
            for a in node.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16


def fp16_path(sha256: str, root: Optional[Path] = None) -> Path:
    """Where :func:`fp16_onnx` caches the FP16 copy of the graph whose sha256 is ``sha256``."""
    return (root or engine_cache_dir()) / "onnx16" / f"{sha256[:16]}-fp16.onnx"


def fp16_onnx(src: Union[str, Path], sha256: str, root: Optional[Path] = None, rebuild: bool = False) -> Path:
    """FP16 copy of an ONNX graph with FP32 inputs/outputs, cached by the source sha256.

    Uses ``onnxconverter_common.float16.convert_float_to_float16(model,
    keep_io_types=True)`` (casts inserted at the graph boundary). ``rebuild``: convert again and replace the cached
    copy (a backend that cannot load it: truncated, damaged). Written whole (:func:`write_atomic`).
    """
    out = fp16_path(sha256, root)
    if out.is_file() and not rebuild:
        return out
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as e:  # a missing package (exit 6, with what to install), not a bad model (exit 5)
        raise BackendUnavailable(f"FP16 conversion needs 'onnx' and 'onnxconverter-common' ({e}): pip install "
                                 "onnxconverter-common") from None
    try:
        model = onnx.load(str(src))
    except Exception as e:  # noqa: BLE001 - protobuf errors
        raise ModelError(f"{src}: cannot read ONNX graph ({type(e).__name__}: {e})") from None
    _isolate_outputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "float32 number ... truncated to 1e-07" for tiny constants
        m16 = float16.convert_float_to_float16(model, keep_io_types=True)
    _fix_casts(m16)
    remove_stale_temporaries(out.parent)
    write_atomic(out, m16.SerializeToString())
    log.info("converted %s to fp16 -> %s", src, out)
    return out
