"""The user engine cache: where built engines and converted graphs live, and their keys.

Layout (``$FACECYCLE_CACHE`` or ``$XDG_CACHE_HOME/facecycle`` or ``~/.cache/facecycle``)::

    <root>/engines/<graph>-<precision>-b<min>_<opt>_<max>-<key16>.engine   TensorRT plan
    <root>/engines/<same>.json                                             what the key was made of
    <root>/engines/timing/trt<version>-<gpu>-sm<cc>.cache                  TensorRT timing cache
    <root>/engines/onnx16/<onnx sha256 [:16]>-fp16.onnx                    FP16 graphs (I/O kept FP32)
    <root>/engines/onnx16/<onnx sha256 [:16]>-fp16.json                    its sha256, recorded when written
    <root>/engines/onnx8/<onnx sha256 [:16]>-<calib sha [:12]>-ort<version>-int8.onnx   INT8 QDQ graphs (ORT CPU)
    <root>/engines/onnx8/<same>-int8.json                                  its sha256, recorded when written
    <root>/engines/ort-trt/<sha256 [:16] of the graph ORT loads>/          ORT TensorRT EP's own engine cache

Every file is written whole under a temporary name of its writer's own (``.<name>.<pid>-<8 hex>.tmp``,
:func:`facecycle.files.temp_path`) and ``os.replace``-d into place, so processes that build the same graph at once
never read or delete each other's half-written files; temporaries a killed builder left are removed by the next
build once they are an hour old and their process is gone (:func:`remove_stale_temporaries`), and by
``facecycle engine clean``. A cached fp16 / int8 graph that cannot be loaded, or whose sha256 is not the one
recorded beside it when it was written (:func:`derived_problem`), is rebuilt once by its backend (``rebuild=True``)
with a WARNING, as a TensorRT plan that fails to deserialize is. ``engine list`` / ``engine clean``
(:func:`scan_cache`) take only these names and never follow a symbolic link.

Nothing here imports TensorRT; the key is a pure function, unit-tested on
any machine. Never put the cache inside the repository.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from facecycle import files as _files
from facecycle.errors import BackendUnavailable, ModelError, OutputError
from facecycle.files import replace_retrying, temp_path

__all__ = [
    "cache_root", "engine_cache_dir", "EngineKey", "engine_key", "engine_path", "timing_cache_path",
    "list_engines", "list_converted", "clean_engines", "scan_cache", "fp16_onnx", "fp16_path", "slug",
    "remove_stale_temporaries", "make_cache_dir", "ort_trt_dir", "derived_record", "record_derived",
    "derived_problem", "NO_RECORD", "rebuild_level",
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
    ``os.replace`` (retried for a few seconds on Windows while another program holds ``path`` open). On an error the
    temporary is removed and :class:`OutputError` says how to fix it."""
    make_cache_dir(path.parent)
    tmp = temp_path(path)
    try:
        tmp.write_bytes(data)
        replace_retrying(tmp, path)  # (Windows: an antivirus scan of the new .onnx, a reader, lets go soon)
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


def _pid_alive_windows(pid: int) -> bool:
    """Whether process ``pid`` runs, on Windows: :func:`facecycle.files.pid_alive_windows` (kept here by name: the
    tests stand in for it)."""
    return _files.pid_alive_windows(pid)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine: :func:`facecycle.files.pid_alive`, asking this module's
    :func:`_pid_alive_windows` on Windows (looked up at each call, so that a stand-in for it takes effect)."""
    return _files.pid_alive(pid, windows=lambda p: _pid_alive_windows(p))


def remove_stale_temporaries(folder: Path, max_age_s: float = 3600.0) -> int:
    """Remove the temporaries a killed builder left in ``folder``: those at least ``max_age_s`` old whose process
    (the pid in the name) no longer runs on this machine, and the fixed-name ones of older builders at least that
    old. A temporary of a build that is running now (its pid alive, or written within ``max_age_s``: a builder on
    another machine sharing the cache) is left alone. Returns how many were removed; errors are ignored."""
    n = 0
    try:
        if folder.is_symlink():  # never work through a link out of the cache
            return 0
        entries = list(folder.iterdir())
    except OSError:
        return 0
    now = time.time()
    for f in entries:
        m = _TEMP_RE.match(f.name)
        if not m and not _OLD_TEMP_RE.match(f.name):
            continue
        try:
            st = f.lstat()
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < max_age_s or (m and _pid_alive(int(m["pid"]))):
                continue
            f.unlink()
            n += 1
            log.info("removed %s, a temporary a killed build left in the engine cache", f)
        except OSError:
            continue
    return n


# ----------------------------------------------------------------------------------- what the cache holds
# `facecycle engine list` / `clean` take only the cache's own names, and never follow a symbolic link (a link
# `onnx16 -> /some/dir` had `clean` delete the files of /some/dir). Anything else is reported in the log and left.

#: a TensorRT plan (:meth:`EngineKey.filename`) and its ``.json``, in the cache root
_PLAN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*-fp(?:32|16)-b\d+_\d+_\d+-[0-9a-f]{16}\.(?:engine|json)")
#: a TensorRT timing cache (:func:`timing_cache_path`), in ``timing/``
_TIMING_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.cache")
#: the folders of graphs converted for ONNX Runtime: (folder, what its files are, their names: the graph and its
#: sha256 record, :func:`record_derived`)
_CONVERTED: Tuple[Tuple[str, str, "re.Pattern[str]"], ...] = (
    ("onnx16", "fp16 graph", re.compile(r"[0-9a-f]{16}-fp16\.(?:onnx|json)")),
    ("onnx8", "int8 graph", re.compile(r"[0-9a-f]{16}-[0-9a-f]{12}-ort[0-9A-Za-z.+_-]+-int8\.(?:onnx|json)")),
)
#: ONNX Runtime's TensorRT execution provider's cache: one folder per graph (:func:`ort_trt_dir`)
ORT_TRT = "ort-trt"
_HEX16_RE = re.compile(r"[0-9a-f]{16}")
#: the files the TensorRT execution provider writes (``TensorrtExecutionProvider_TRTKernel_graph_…_sm90.engine``,
#: ``….profile``, ``TensorrtExecutionProvider_cache_sm90.timing``)
_ORT_TRT_FILE_RE = re.compile(r"TensorrtExecutionProvider[A-Za-z0-9_.+-]*")
_TEMPORARY = "temporary (a build running, or killed)"


def _temp_target(name: str) -> Optional[str]:
    """The file a writer's temporary ``name`` was to become (None: not a temporary)."""
    m = _TEMP_RE.match(name)
    if m:
        target = m["name"]
        return target[: -len(".pre.onnx")] + ".onnx" if target.endswith("-int8.pre.onnx") else target
    m = re.fullmatch(r"(.+-int8)(?:\.pre\.onnx|\.onnx\.tmp)|(.+)\.onnx\.tmp\d+", name)
    if m:
        return (m[1] or m[2]) + ".onnx"
    return None


def _own(name: str, pattern: "re.Pattern[str]") -> Optional[str]:
    """What ``name`` is in a folder whose files match ``pattern``: ``"file"``, ``"temporary"`` (a writer's
    temporary of such a file) or None (not the cache's)."""
    if pattern.fullmatch(name):
        return "file"
    target = _temp_target(name)
    return "temporary" if target is not None and pattern.fullmatch(target) else None


def _scandir(folder: Path) -> List[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:
        return []


def _is_file(e: os.DirEntry) -> bool:
    try:
        return e.is_file(follow_symlinks=False)
    except OSError:
        return False


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir(follow_symlinks=False)
    except OSError:
        return False


def scan_cache(root: Optional[Path] = None, timing: bool = True,
               converted: bool = True) -> Tuple[List[Tuple[Path, str]], List[Tuple[Path, str]]]:
    """The files of the engine cache ``root`` that are its own: ``([(path, kind)], [(path, why skipped)])``.

    Own files: plans and their ``.json`` in the root (``kind`` ``"TensorRT plan"``, ``"TensorRT plan record"``),
    timing caches in ``timing/`` (``timing``), fp16 / int8 graphs and their sha256 records in ``onnx16/`` /
    ``onnx8/`` and the TensorRT execution provider's files in ``ort-trt/<16 hex>/`` (``converted``), and the
    writers' temporaries of all these. A symbolic link (file or folder) is never followed; it and every other
    name are returned as skipped, with the reason. Nothing is read or changed.
    """
    root = root or engine_cache_dir()
    own: List[Tuple[Path, str]] = []
    skipped: List[Tuple[Path, str]] = []
    if root.is_symlink():
        return own, [(root, "a symbolic link: not followed")]
    if not root.is_dir():
        return own, skipped

    def link_or_other(e: os.DirEntry, what: str = "not a file of the engine cache") -> None:
        skipped.append((Path(e.path), "a symbolic link: not followed" if e.is_symlink() else what))

    def take(e: os.DirEntry, pattern: "re.Pattern[str]", kind: str, record: str) -> None:
        # one entry: the cache's own file (its ``.json`` a ``record``), a writer's temporary of one, or skipped
        k = _own(e.name, pattern) if _is_file(e) else None
        if k is None:
            link_or_other(e)
        else:
            own.append((Path(e.path), _TEMPORARY if k == "temporary" else
                        kind + (record if e.name.endswith(".json") else "")))

    subs: Dict[str, Optional[Tuple[str, "re.Pattern[str]"]]] = {"timing": ("timing cache", _TIMING_RE)
                                                                if timing else None}
    for sub, kind, pat in _CONVERTED:
        subs[sub] = (kind, pat) if converted else None
    for e in _scandir(root):
        if e.name in subs or e.name == ORT_TRT:
            if e.is_symlink() or not _is_dir(e):
                link_or_other(e, "not a folder")
                continue
            if e.name == ORT_TRT:
                if converted:
                    _scan_ort_trt(Path(e.path), own, skipped)
                continue
            what = subs[e.name]
            if what is None:  # kept (--keep-timing)
                continue
            kind, pat = what
            for f in _scandir(Path(e.path)):
                take(f, pat, kind, " sha256 record")
            continue
        take(e, _PLAN_RE, "TensorRT plan", " record")
    return own, skipped


def _scan_ort_trt(folder: Path, own: List[Tuple[Path, str]], skipped: List[Tuple[Path, str]]) -> None:
    """``ort-trt/``: a folder per graph (16 hex digits) of the execution provider's files; such files directly in
    ``ort-trt/`` are an older FaceCycle's (one folder shared by every graph)."""
    for e in _scandir(folder):
        if e.is_symlink():
            skipped.append((Path(e.path), "a symbolic link: not followed"))
        elif _is_dir(e) and _HEX16_RE.fullmatch(e.name):
            for f in _scandir(Path(e.path)):
                if _is_file(f) and _ORT_TRT_FILE_RE.fullmatch(f.name):
                    own.append((Path(f.path), "ORT TensorRT cache"))
                else:
                    skipped.append((Path(f.path), "a symbolic link: not followed" if f.is_symlink()
                                    else "not a file of the engine cache"))
        elif _is_file(e) and _ORT_TRT_FILE_RE.fullmatch(e.name):
            own.append((Path(e.path), "ORT TensorRT cache (shared by all graphs: an older FaceCycle's)"))
        else:
            skipped.append((Path(e.path), "not a file of the engine cache"))


def _size(p: Path) -> int:
    try:
        return p.lstat().st_size
    except OSError:
        return 0


def _log_skipped(skipped: List[Tuple[Path, str]], level: int, action: str) -> None:
    for p, why in skipped:
        log.log(level, "engine cache: %s %s (%s)", action, p, why)


def list_engines(root: Optional[Path] = None) -> List[dict]:
    """Cached engines with their key fields (from the ``.json`` sidecar) and size."""
    root = root or engine_cache_dir()
    out = []
    for p, kind in scan_cache(root, timing=False, converted=False)[0]:
        if kind != "TensorRT plan" or p.suffix != ".engine":
            continue
        meta: dict = {}
        side = p.with_suffix(".json")
        if side.is_file() and not side.is_symlink():
            try:
                meta = json.loads(side.read_text(encoding="utf-8"))
                if not isinstance(meta, dict):
                    meta = {"error": "unreadable sidecar"}
            except (OSError, ValueError):
                meta = {"error": "unreadable sidecar"}
        out.append({**meta, "path": str(p), "bytes": _size(p)})
    return out


def list_converted(root: Optional[Path] = None) -> List[dict]:
    """The converted graphs ONNX Runtime runs (fp16, int8, the TensorRT execution provider's engines) and every
    writer's temporary: what :func:`clean_engines` also removes, each with its kind and size. Names that are not the
    cache's, and symbolic links, are logged (INFO) and left out."""
    own, skipped = scan_cache(root, timing=False)
    for p, why in skipped:  # a link is worth a warning: someone may expect `clean` to empty what it points to
        log.log(logging.WARNING if "symbolic link" in why else logging.INFO, "engine cache: not listing %s (%s)", p,
                why)
    return [{"path": str(p), "bytes": _size(p), "kind": kind} for p, kind in own
            if kind == _TEMPORARY or not kind.startswith("TensorRT plan")]


def clean_engines(root: Optional[Path] = None, timing: bool = True, onnx16: bool = True,
                  skipped: Optional[list] = None) -> Tuple[int, int]:
    """Delete cached engines (and optionally timing caches / converted fp16 and int8 graphs, the TensorRT execution
    provider's cache). Returns (files, bytes).

    Only the cache's own names are deleted (:func:`scan_cache`); symbolic links are not followed, nor deleted.
    What is left is logged (WARNING) and, given a list ``skipped``, appended to it as ``(path, why)``. Folders of
    the cache left empty are removed.
    """
    root = root or engine_cache_dir()
    own, left = scan_cache(root, timing=timing, converted=onnx16)
    _log_skipped(left, logging.WARNING, "left")
    if skipped is not None:
        skipped.extend(left)
    n = b = 0
    for f, _ in own:
        try:
            st = f.lstat()
            if not stat.S_ISREG(st.st_mode):  # changed since the scan: leave it
                continue
            f.unlink()
        except OSError as e:
            log.warning("engine cache: cannot remove %s (%s)", f, e.strerror or e)
            continue
        n += 1
        b += st.st_size
    # folders of the cache left empty (os.rmdir removes only empty ones; never a link, nor through one)
    folders = [root / name for name in ("timing", *(sub for sub, _, _ in _CONVERTED))]
    ort = root / ORT_TRT
    if not root.is_symlink() and ort.is_dir() and not ort.is_symlink():
        folders = [Path(e.path) for e in _scandir(ort) if _is_dir(e) and _HEX16_RE.fullmatch(e.name)] + [ort] \
            + folders
    for d in folders:
        if d.is_dir() and not d.is_symlink() and not root.is_symlink():
            try:
                os.rmdir(d)
            except OSError:
                pass
    return n, b


# ------------------------------------------------------------------------- converted graphs and their records
def _hex64(sha256: str) -> str:
    """``sha256`` checked to be 64 lower-case hex digits (it names files of the cache)."""
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"sha256 must be 64 lower-case hex digits, got {str(sha256)[:80]!r}")
    return sha256


def ort_trt_dir(sha256: str, root: Optional[Path] = None) -> Path:
    """The TensorRT execution provider's engine cache folder for the graph whose sha256 is ``sha256``:
    ``<root>/ort-trt/<sha256[:16]>/``. The provider names its engines by the model file's name, node names and
    versions, not by the weights: one folder shared by every model ran one export's engine for another's graph."""
    return (root or engine_cache_dir()) / ORT_TRT / _hex64(sha256)[:16]


def derived_record(path: Path) -> Path:
    """Where the sha256 of a converted graph ``path`` (``…-fp16.onnx``, ``…-int8.onnx``) is recorded: the same name
    with ``.json``."""
    return path.with_suffix(".json")


def record_derived(path: Path, sha256: str, source_sha256: str, kind: str) -> None:
    """Record the sha256 of the converted graph just written to ``path`` (computed from the bytes written), and the
    exported graph's it was converted from, in :func:`derived_record` (written whole)."""
    rec = {"kind": kind, "sha256": sha256, "source_sha256": source_sha256, "file": path.name,
           "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_atomic(derived_record(path), json.dumps(rec, indent=2).encode())


#: how :func:`derived_problem` begins where a cached graph has no record beside it: an earlier FaceCycle's (which
#: wrote none) or a write cut short, not damage (:func:`rebuild_level`)
NO_RECORD = "no sha256 was recorded for it"


def rebuild_level(why: str) -> int:
    """The log level of the note that a cached graph is rebuilt because of ``why`` (:func:`derived_problem`): INFO
    where it only lacks its record (a cache an earlier FaceCycle wrote: one WARNING a graph read as damage at the
    first run after an upgrade), WARNING otherwise."""
    return logging.INFO if why.startswith(NO_RECORD) else logging.WARNING


def derived_problem(path: Path, source_sha256: Optional[str] = None) -> Optional[str]:
    """Why the cached converted graph ``path`` cannot be trusted (None: its sha256 is the one recorded when it was
    written, :func:`record_derived`, from the exported graph ``source_sha256``). A graph whose bytes changed
    afterwards (flipped weights: NaN features), cut short, or without a record (an older FaceCycle's, or a write
    cut short) is to be rebuilt."""
    from facecycle.files import sha256_file

    rec_path = derived_record(path)
    try:
        if path.is_symlink() or rec_path.is_symlink():
            return "a symbolic link in the engine cache"
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"{NO_RECORD} ({rec_path.name} is missing)"
    except (OSError, ValueError) as e:
        return f"its sha256 record {rec_path.name} is unreadable ({type(e).__name__})"
    want = rec.get("sha256") if isinstance(rec, dict) else None
    if not isinstance(want, str) or not re.fullmatch(r"[0-9a-f]{64}", want):
        return f"its sha256 record {rec_path.name} is unreadable (no sha256)"
    if source_sha256 and rec.get("source_sha256") != source_sha256:
        return f"its sha256 record {rec_path.name} is for another exported graph"
    try:
        got = sha256_file(path)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    if got != want:
        return (f"its sha256 {got[:12]}… is not the {want[:12]}… recorded when it was written: the file was "
                "damaged or altered")
    return None


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
    return (root or engine_cache_dir()) / "onnx16" / f"{_hex64(sha256)[:16]}-fp16.onnx"


def fp16_onnx(src: Union[str, Path], sha256: str, root: Optional[Path] = None, rebuild: bool = False) -> Path:
    """FP16 copy of an ONNX graph with FP32 inputs/outputs, cached by the source sha256.

    Uses ``onnxconverter_common.float16.convert_float_to_float16(model,
    keep_io_types=True)`` (casts inserted at the graph boundary). ``rebuild``: convert again and replace the cached
    copy (a backend that cannot load it: truncated, damaged). Written whole (:func:`write_atomic`), then its sha256
    recorded beside it (:func:`record_derived`); a cached copy is returned as it is: its user checks it
    (:func:`derived_problem`) and rebuilds it once where the check fails.
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
    data = m16.SerializeToString()
    write_atomic(out, data)
    record_derived(out, hashlib.sha256(data).hexdigest(), sha256, "fp16")
    log.info("converted %s to fp16 -> %s", src, out)
    return out
