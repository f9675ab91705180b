"""One video of a batch: the run ``facecycle process`` does, written under temporary names, moved into place,
and committed last by a sidecar that says ``complete`` and carries the settings fingerprint.

Layout for an input whose path relative to the batch root is ``REL`` (``a/b/interview.mp4``), under ``out_dir``::

    a/b/interview.csv               per-frame CSV (docs/csv.md), byte-identical to ``facecycle process``
    a/b/interview.annotated.mp4     annotated video (``video=True``)
    a/b/interview.json              sidecar: process's fields + ``fingerprint`` + ``batch`` (the commit marker)
    a/b/.facecycle-partial/interview/<run_id>.<pid>/   work folder of an attempt in progress
    a/b/.facecycle-partial/interview/lock               held (``flock``) by the process working on it

The sidecar is deleted when an attempt starts and written (atomically) only after the CSV and video were moved
into place, so a killed attempt never leaves a ``complete`` sidecar behind; the next attempt or run redoes it.
An attempt first takes the input's lock, which its process holds until it ends (the OS releases it when the
process dies), so that two batches sharing an output folder (a job submitted twice, overlapping shards) never
work on one input's outputs at once: the second leaves it to the first (status ``busy``).
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from facecycle.errors import (
    FaceCycleError,
    InputError,
    OutOfMemory,
    OutputError,
    UsageError,
    address_space_limited,
    is_out_of_memory,
)
from facecycle.files import (
    Busy,
    file_id,
    json_text_fields,
    lock_file,
    name_length,
    name_max,
    replace_retrying,
    text_name,
    unlock_file,
)
from facecycle.jsonvalues import is_int, is_number

from ..sinks.image_sink import is_image_path, picture_suffix
from ..sinks.sidecar import read_sidecar
from ..summary import clip_reading

if TYPE_CHECKING:
    from ..analyzer import Run

__all__ = ["BatchSettings", "analyze_file", "run_task", "output_paths", "PARTIAL_DIR",
           "count_csv_rows", "sidecar_well_typed", "sidecar_reading", "not_a_file", "made_with", "backend_name",
           "SOFTWARE_FIELDS"]

log = logging.getLogger(__name__)

class InputBusy(Exception):
    """Another live process holds an input's lock; ``holder`` is what it wrote there (input, host, pid, run_id)."""

    def __init__(self, holder: Dict[str, Any], who: str) -> None:
        super().__init__(holder)
        self.holder = holder
        self.who = who  #: "host H, pid P" (:attr:`facecycle.files.Busy.who`)


def _lock_outputs(path: Path, task: Dict[str, Any]) -> Optional[int]:
    """Take the exclusive lock of one input's outputs (a file at ``path``, created as needed): the open file
    descriptor, which holds the lock until :func:`_unlock_outputs` or the process's end
    (:func:`facecycle.files.lock_file`, the lock every output shares). Raises :class:`InputBusy` when another
    process holds it. None where the OS has no ``flock`` (Windows: no locking).
    """
    try:
        return lock_file(path, {"input": task["input"], "run_id": task.get("run_id")},
                         what="the lock of this input's outputs")
    except Busy as b:
        raise InputBusy(b.holder, b.who) from None


def _unlock_outputs(path: Path, fd: Optional[int]) -> None:
    """Remove the lock file (while still holding it: a process waiting on it sees it gone and retries) and
    release it."""
    unlock_file(path, fd)


def same_input(a: Any, b: Any) -> bool:
    """Whether two recorded inputs (paths or URLs as given) are the same file: by identity (device and inode) where
    both exist, else by real path. Paths alone missed one file spelled two ways on macOS and Windows (``~/Videos``
    and ``~/videos``: every input of a rerun failed as another batch's)."""
    a, b = str(a), str(b)
    if "://" in a or "://" in b:
        return a == b
    ia, ib = file_id(a), file_id(b)
    if ia is not None and ib is not None:
        return ia == ib
    if (ia is None) != (ib is None) and (a if ia is None else b) in _recorded_spellings(b if ia is None else a):
        # a record of a name that is not UTF-8 written as text (``caf\\xe9.mp4``: batch.json, a sidecar whose
        # paths are made UTF-8) is the file whose bytes it spells, not another input's
        return True
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def _recorded_spellings(path: str) -> Set[str]:
    """How batch.json and the sidecars may have recorded the existing file ``path``: as they write it now
    (:func:`~facecycle.files.text_name`: valid text kept, a name's bytes that are not UTF-8 as ``\\xNN``), and as
    versions before wrote it, every byte of a name that is not ASCII as ``\\xNN`` where names are not read as UTF-8
    (``caf\\xe9.mp4`` for ``café.mp4`` under Latin-1): a batch those made resumes here (both are one spelling where
    names are UTF-8)."""
    out = {text_name(path)}
    try:
        out.add(os.fsencode(path).decode("utf-8", "backslashreplace"))
    except UnicodeError:  # (a surrogate no byte of a name made: it was written as it is now)
        pass
    return out


#: hidden folder (per output folder) that holds attempts in progress
PARTIAL_DIR = ".facecycle-partial"
#: the folder, in an input's work folder, that holds its earlier outputs where a redo of it failed: they described
#: the input as it was (a changed input that no longer decodes), and left in place, a CSV without a sidecar passed
#: for a result of the input as it is to anyone reading the CSVs
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class BatchSettings:
    """Everything a worker needs to process one video exactly like ``facecycle process``.

    Attributes:
        analyzer: keyword arguments of :class:`realtime.analyzer.Analyzer` (paths absolute).
        csv: write ``<stem>.csv``.
        video: write ``<stem>.annotated.mp4``.
        max_frames: stop after this many frames per input (None = all).
        audio: copy the input's audio into the annotated video.
        video_preset: libx264 preset of the annotated video.
    """

    analyzer: Dict[str, Any] = field(default_factory=dict)
    csv: bool = True
    video: bool = True
    max_frames: Optional[int] = None
    audio: bool = True
    video_preset: str = "superfast"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "BatchSettings":
        return cls(**d)


def analyze_file(analyzer, source: Union[str, Path, Any], *, csv: Optional[Union[str, Path]],
                 video: Optional[Union[str, Path]], sidecar: Optional[Union[str, Path]] = None,
                 neutralize: bool = False, overwrite: bool = False, max_frames: Optional[int] = None,
                 audio: bool = True, video_preset: str = "superfast", realtime: bool = False,
                 images: str = "auto", video_threads: int = 0, url_timeout: Optional[float] = None) -> "Run":
    """The per-video path shared by ``facecycle process`` and ``facecycle batch``: a
    :class:`realtime.analyzer.Run` of ``source`` writing ``csv`` / ``video`` (annotated with the standard
    overlay; the neutralized view and thumbnails with ``neutralize``) and the JSON sidecar. ``source``: a path or
    URL, or a :class:`realtime.sources.Source` already open; ``images``: how an image folder is read
    (:class:`realtime.sources.ImageFolderSource`); ``video_threads``: the video encoder's threads (0: FFmpeg's
    choice, as ``process`` leaves it; a batch worker gives the CPUs it reserved)."""
    from realtime.annotators import default_annotator
    from realtime.sources import Source

    annot = default_annotator(neutralized=neutralize, thumbnail=neutralize) if video else False
    src = source if isinstance(source, Source) else str(source)
    return analyzer.process_video(src, realtime=realtime, csv=csv, video=video, annotate=annot,
                                  overwrite=overwrite, max_frames=max_frames, audio=audio,
                                  video_preset=video_preset, sidecar=sidecar, images=images,
                                  video_threads=video_threads, url_timeout=url_timeout)


def annotated_suffix(source: Union[str, Path, Any], images: str = "auto") -> str:
    """The annotated output's suffix for ``source`` (``process`` and ``batch`` alike): ``.mp4`` for a video or a
    frame sequence; :func:`picture_suffix` for a single image; none (a folder of pictures,
    :class:`~realtime.sinks.ImageSink`) for an image folder read as stills (``images``: the folder's reading;
    an :class:`~realtime.sources.ImageFolderSource` already open says it itself)."""
    from ..sources import ImageFolderSource

    if isinstance(source, ImageFolderSource):
        return "" if source.stills else ".mp4"
    p = Path(source)
    if "://" in str(source) or not p.exists():
        return ".mp4"
    if p.is_dir():
        try:
            stills = images == "stills" or (images == "auto" and ImageFolderSource(p, reading="auto").stills)
        except (InputError, OSError):  # no images: the run itself says so
            stills = False
        return "" if stills else ".mp4"
    return picture_suffix(p.suffix) if is_image_path(p) else ".mp4"


def output_paths(out_dir: Union[str, Path], rel: Union[str, Path], csv: bool = True,
                 video: bool = True) -> Dict[str, Optional[Path]]:
    """Final output paths of the input at ``rel`` (relative to the batch root): csv, video, sidecar. A single
    image's annotated output is a picture (:func:`picture_suffix`), as ``process`` writes it."""
    rel = Path(rel)
    d = Path(out_dir) / rel.parent
    stem = rel.stem if rel.suffix else rel.name
    kind = picture_suffix(rel.suffix) if is_image_path(rel) else ".mp4"
    # a stem of dots (the file `...mp4`, a URL's `%2e%2e.mp4`) made the work folder `.facecycle-partial/..`, the
    # output folder itself, whose every folder the stale-attempt cleanup then deleted. Escaped as in a URL, `%`
    # first, so that no two stems share a work folder (and its lock): `...mp4` and a file `%2e%2e.mp4` did
    work = stem.replace("%", "%25")
    work = work.replace(".", "%2e") if set(work) <= {"."} else work
    return {"csv": d / f"{stem}.csv" if csv else None,
            "video": d / f"{stem}.annotated{kind}" if video else None,
            "sidecar": d / f"{stem}.json", "work": d / PARTIAL_DIR / work, "stem": stem}  # type: ignore[dict-item]


def count_csv_rows(path: Union[str, Path]) -> int:
    """Data rows of a CSV written by ``CsvSink`` (lines minus the header)."""
    n = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return max(0, n - 1)


#: Windows, where a file another program holds open (a CSV in a spreadsheet, a virus scanner's look at a new file)
#: cannot be replaced for a while
_WINDOWS = os.name == "nt"


def _replace(src: Union[str, Path], dst: Union[str, Path], tries: int = 5,
             held: Optional[Union[str, Path]] = None) -> None:
    """``os.replace`` (:func:`facecycle.files.replace_retrying`), retried on Windows for about 2 s (``tries``
    tries, 0.2 s more between each) where another program holds ``dst`` open; still held, the
    input fails (InputError) and the batch goes on: a CSV left open in a spreadsheet stopped the whole batch as an
    output folder that cannot be written. ``held``: the file the error names (default ``dst``; ``src`` where a
    user's file is moved aside)."""
    try:
        replace_retrying(src, dst, waits=tuple(0.2 * (k + 1) for k in range(tries - 1)), retry=_WINDOWS)
    except PermissionError as e:
        if not _WINDOWS:  # a folder that cannot be written: every input would fail alike
            raise
        raise InputError(f"{held or dst}: cannot be replaced, open in another program? ({e.strerror or e}); "
                         "close it and run the batch again") from None


def _set_aside(paths: Dict[str, Any], work_root: Path, placed: Sequence[str] = ()) -> str:
    """Move an input's earlier CSV and video into ``work_root / SUPERSEDED`` (beside the sidecar that vouched for
    them, moved there when the attempt began) after the input failed; ``placed``: outputs this attempt already moved
    into place (a CSV before its video could not be, on Windows), which are not earlier ones and stay. What to add
    to its error ("" if none; never raises: the input's own error is the one to report)."""
    moved = []
    try:
        for k in ("csv", "video"):
            p = paths.get(k)
            if p is not None and k not in placed and Path(p).is_file():
                (work_root / SUPERSEDED).mkdir(parents=True, exist_ok=True)
                _replace(p, work_root / SUPERSEDED / Path(p).name)
                moved.append(Path(p).name)
    except (OSError, InputError) as e:
        log.warning("%s: earlier outputs not moved aside (%s)", work_root, e)
        return f"; its earlier outputs could not be moved aside ({e})"
    if not moved:
        return ""
    log.warning("%s: moved to %s (outputs of an earlier run of the input, which now fails)", ", ".join(moved),
                work_root / SUPERSEDED)
    return f"; its earlier outputs were moved to {work_root / SUPERSEDED}"


# ----------------------------------------------------------------------------------------- worker side
_cache_lock = threading.Lock()
_cache: Dict[str, Any] = {}


def _cached_analyzer(opts: Dict[str, Any]) -> Tuple[Any, bool]:
    """This process's Analyzer for ``opts`` (loaded once per worker process, reused across its videos)."""
    key = json.dumps(opts, sort_keys=True, default=str)
    with _cache_lock:
        an = _cache.get(key)
        if an is not None:
            return an, False
        for old in _cache.values():  # one model per worker: settings changed (another batch in this process)
            try:
                old.close()
            except Exception:  # noqa: BLE001
                pass
        _cache.clear()
        from realtime.analyzer import Analyzer

        an = Analyzer(**opts)
        _cache[key] = an
        return an, True


def clear_cache() -> None:
    """Close and forget this process's cached Analyzer (tests, end of an in-process batch)."""
    with _cache_lock:
        for an in _cache.values():
            try:
                an.close()
            except Exception:  # noqa: BLE001
                pass
        _cache.clear()


#: the fields of a sidecar that batch reads back, and the test of each one's type (None, or absent, always passes)
_FIELD_TYPES: Dict[str, Callable[[Any], bool]] = {
    "status": lambda v: isinstance(v, str), "fingerprint": lambda v: isinstance(v, str),
    "error": lambda v: isinstance(v, str), "batch": lambda v: isinstance(v, dict),
    "stats": lambda v: isinstance(v, dict), "summary": lambda v: isinstance(v, dict)}
_BATCH_TYPES: Dict[str, Callable[[Any], bool]] = {
    "input": lambda v: isinstance(v, str), "input_stat": lambda v: isinstance(v, dict), "rows": is_int,
    "csv_bytes": is_int}
_STATS_TYPES: Dict[str, Callable[[Any], bool]] = {"frames": is_int, "fps": is_number}


def sidecar_well_typed(info: Any) -> bool:
    """Whether ``info`` (a sidecar read back) is an object whose fields batch reads have the types batch writes.
    A damaged or hand-edited one (``"batch": "x"``, ``"stats": [1]``) stopped the whole batch with an internal
    error before any input ran; it now counts as missing, and its input is redone, as a torn one is."""
    if not isinstance(info, dict):
        return False
    for fields, d in ((_FIELD_TYPES, info), (_BATCH_TYPES, info.get("batch")), (_STATS_TYPES, info.get("stats"))):
        if not isinstance(d, dict):  # (batch and stats themselves were checked with info's fields)
            continue
        if any(d.get(k) is not None and not ok(d[k]) for k, ok in fields.items()):
            return False
    return True


def sidecar_reading(info: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """:func:`realtime.summary.clip_reading` of a sidecar's ``summary``, or None (none, or damaged: the reading is
    only reported, in ``batch.json``, and a damaged one must not stop the batch)."""
    return clip_reading((info or {}).get("summary") if isinstance(info, dict) else None)


#: what :func:`made_with` records of the software that made an input's rows, in the order a note names them: the
#: backend that ran (its resolved name, not ``auto``) and its precision, facecycle's version and source commit, and
#: the versions of ONNX Runtime and (with the torch backend) PyTorch
SOFTWARE_FIELDS = ("backend", "precision", "facecycle", "facecycle_source", "onnxruntime", "torch")


def backend_name(backend: Any) -> Optional[str]:
    """The resolved backend a sidecar's ``backend`` (:meth:`engines.base.Backend.describe`) records, by
    :mod:`engines.select`'s names (``onnxruntime-cpu``, ``onnxruntime-cuda``, ``onnxruntime-trt``, ``tensorrt``,
    ``torch-cpu``, ``torch-cuda``), or None where it records none."""
    if not isinstance(backend, dict) or not isinstance(backend.get("backend"), str):
        return None
    name, device = backend["backend"], str(backend.get("device") or "")
    if name == "onnxruntime":
        providers = backend.get("providers")
        first = providers[0] if isinstance(providers, list) and providers and isinstance(providers[0], str) else ""
        if device == "cpu" or first == "CPUExecutionProvider":
            return "onnxruntime-cpu"
        return "onnxruntime-trt" if "Tensorrt" in device or first == "TensorrtExecutionProvider" else "onnxruntime-cuda"
    if name == "torch":
        return "torch-cpu" if device == "cpu" else "torch-cuda"
    return name


def made_with(info: Any) -> Optional[Dict[str, str]]:
    """What software made a sidecar's rows (:data:`SOFTWARE_FIELDS`, those it records), from the sidecar read for the
    skip decision (nothing more is read), or None where it records none of them (an older or damaged one). A batch
    compares it with what its own run uses, and reports the inputs it skips that other software made
    (``batch.json``'s ``mixed_provenance``)."""
    if not isinstance(info, dict):
        return None
    out: Dict[str, str] = {}
    be = info.get("backend")
    name = backend_name(be)
    if name is not None:
        out["backend"] = name
    if isinstance(be, dict) and isinstance(be.get("precision"), str):
        out["precision"] = be["precision"]
    v = info.get("versions")
    if isinstance(v, dict):
        for k in ("facecycle", "facecycle_source", "onnxruntime"):
            if isinstance(v.get(k), str):
                out[k] = v[k]
    if isinstance(be, dict) and isinstance(be.get("torch_version"), str):  # (recorded by the torch backend only)
        out["torch"] = be["torch_version"]
    return out or None


def not_a_file(paths: Dict[str, Any], what: str, folders_only: bool = False) -> Optional[str]:
    """One line naming the first of ``paths``' CSV, video and sidecar that exists and is not a regular file (a
    folder, a FIFO, a device, a link to one), or None. Such a path is never replaced: the sidecar was moved aside
    with the folder of a user's files inside and then deleted with it, and a CSV there stopped the whole batch
    with an error naming the output folder. ``what``: the input, as the line names it. ``folders_only``: only a
    folder counts (``process`` writes into a device a user names, e.g. a CSV linked to ``/dev/null``)."""
    for k, name in (("csv", "CSV"), ("video", "annotated video"), ("sidecar", "sidecar")):
        p = paths.get(k)
        if p is None:
            continue
        p = Path(p)
        try:
            exists = p.exists() or p.is_symlink()
            regular = p.is_file() or (p.is_symlink() and not p.exists())  # a dangling link is replaced, not followed
        except OSError as e:  # a name too long, a folder that cannot be searched: the run itself says so
            log.debug("%s: not checked (%s)", p, e)
            continue
        if exists and not regular and (p.is_dir() or not folders_only):
            kind = "a folder" if p.is_dir() else "not a regular file"
            return (f"{p}: {kind}, where {what}'s {name} goes; it is not replaced: move it away (or give another "
                    "--out-dir)")
    return None


def outputs_complete(out_dir: Union[str, Path], rel: Union[str, Path], settings: "BatchSettings",
                     fingerprint: str) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """True (and the sidecar) when the outputs of the input at ``rel`` under ``out_dir`` are complete: the sidecar
    says ``complete`` with ``fingerprint`` and the CSV and video are there, the CSV of the size recorded; anything
    else (missing, partial, damaged, other settings) means redo. A sidecar whose fields batch reads are not of the
    types it writes is returned as None (missing): callers read its fields without checking them again. The
    planner's test (:func:`realtime.batch.plan.is_complete`) and :func:`run_task`'s, once it holds the input's
    lock."""
    paths = output_paths(out_dir, rel, settings.csv, settings.video)
    info = read_sidecar(paths["sidecar"])  # type: ignore[arg-type]
    if info is not None and not sidecar_well_typed(info):
        return False, None
    if not info or info.get("status") != "complete" or info.get("fingerprint") != fingerprint:
        return False, info
    for k in ("csv", "video"):
        if paths[k] is not None and not Path(paths[k]).is_file():  # type: ignore[arg-type]
            return False, info
    want = (info.get("batch") or {}).get("csv_bytes")
    if paths["csv"] is not None and want is not None and Path(paths["csv"]).stat().st_size != want:  # type: ignore
        return False, info
    return True, info


def run_task(task: Dict[str, Any], settings: Union[BatchSettings, Dict[str, Any]],
             progress: Optional[Callable[[int], None]] = None, progress_every_s: float = 0.5, *,
             video_threads: int = 0) -> Dict[str, Any]:
    """Process one input of a batch; never raises for a bad input (the result says what went wrong).

    Args:
        task: ``input`` (absolute path), ``rel`` (path relative to the batch root), ``out_dir`` (absolute),
            ``run_id``, ``fingerprint`` and ``batch`` (the fingerprinted settings, stored in the sidecar);
            ``command`` (optional): the batch's command line, as ``batch.json`` records it, for the sidecar's.
        settings: :class:`BatchSettings` (or its dict).
        progress: called with the number of frames done so far (about every ``progress_every_s``).
        video_threads: the annotated video's encoder threads: the CPUs the worker reserved (the executor's
            ``--threads-per-worker``; FFmpeg's own choice counts the node's every core); 0 = FFmpeg's choice. A
            count of this run's, recorded in the sidecar, not in the fingerprint: it changes speed, not numbers.

    Returns:
        dict with ``status`` (``done`` / ``failed`` / ``error``), ``error``, ``error_type``, ``exit_code``,
        ``frames``, ``faces``, ``fps``, ``time_s``, ``rows``, ``retries`` (earlier attempts of this run that
        died), ``pid``, ``host``, ``model_loaded``, ``max_rss_mb`` (the worker process's peak), ``made_with``
        (:func:`made_with` of its sidecar, done or skipped) and the output paths.
    """
    if isinstance(settings, dict):
        settings = BatchSettings.from_dict(settings)
    t0 = time.perf_counter()
    paths = output_paths(task["out_dir"], task["rel"], settings.csv, settings.video)
    res: Dict[str, Any] = {"input": task["input"], "rel": task["rel"], "status": "failed", "error": None,
                           "error_type": None, "exit_code": 0, "frames": 0, "faces": 0, "fps": None,
                           "time_s": None, "rows": None, "retries": 0, "pid": os.getpid(),
                           "host": socket.gethostname(), "model_loaded": False,
                           "csv": str(paths["csv"]) if paths["csv"] else None,
                           "video": str(paths["video"]) if paths["video"] else None,
                           "sidecar": str(paths["sidecar"])}
    work_root: Path = paths["work"]  # type: ignore[assignment]
    work: Optional[Path] = None
    tmp: Dict[str, Optional[Path]] = {}
    placed: List[str] = []  # this attempt's outputs already moved into place (never set aside as earlier ones)
    lock_path, lock = work_root / "lock", None
    try:
        for q in (work_root.parent, work_root):  # a link planted there made the stale-attempt cleanup below delete
            if q.is_symlink() or (q.exists() and not q.is_dir()):  # its target's folders (a shared --out-dir)
                raise OutputError(f"{q}: a symbolic link or not a folder, where {task['input']}'s work folder goes; "
                                  "remove it")
        try:
            lock = _lock_outputs(lock_path, task)
        except InputBusy as b:
            other = b.holder.get("input")
            where = b.who
            if other is not None and not same_input(other, task["input"]):  # this input fails; the batch goes on
                res.update(error=f"{task['input']}: its outputs {paths['sidecar']} are being written for {other} "
                                 f"by another batch ({where}): batches sharing --out-dir must mirror the same "
                                 "folder (give each the same --root)", error_type="UsageError",
                           exit_code=UsageError.exit_code)
            else:
                res.update(status="busy", busy=b.holder,
                           error=f"{task['input']}: being processed by another batch ({where}); left to it")
            return res
        # before anything is moved or deleted: a folder at an output's path was moved aside and deleted with the
        # user's files inside (the sidecar's), or stopped the whole batch (the CSV's). This input fails; the rest go on
        bad = not_a_file(paths, task["input"]) or _name_too_long(paths, task["input"])
        if bad is not None:
            res.update(error=bad, error_type="OutputError", exit_code=OutputError.exit_code)
            return res
        if not task.get("planned_complete"):
            # another batch may have finished this input between this one's planning and its lock (two batches
            # walking one corpus in other orders redid each other's work: 15 runs for 8 inputs, a probe's finding)
            done, info = outputs_complete(task["out_dir"], task["rel"], settings, task["fingerprint"])
            if done and info is not None:  # (well typed: outputs_complete checked the fields read here)
                st = info.get("stats") or {}
                res.update(status="skipped", frames=st.get("frames"), fps=st.get("fps"),
                           rows=(info.get("batch") or {}).get("rows"), reading=sidecar_reading(info),
                           made_with=made_with(info), time_s=round(time.perf_counter() - t0, 3))
                return res
        work_root.mkdir(parents=True, exist_ok=True)  # (made by the lock too, where the OS has one)
        # attempts that left a work folder died mid-video (killed worker, OOM); the lock says none is alive. Only
        # folders named as attempts are (<run_id>.<pid>): nothing else there is ours to delete
        stale = [p for p in work_root.iterdir() if _ATTEMPT.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
        res["retries"] = sum(1 for p in stale if p.name.split(".")[0] == task["run_id"])
        for p in stale:
            shutil.rmtree(p, ignore_errors=True)
        # the commit marker goes first: a crash from here on means "redo". It is kept aside with the outputs it
        # vouched for, which a failed attempt moves there too (below)
        old = work_root / SUPERSEDED
        side = Path(paths["sidecar"])
        if side.is_symlink() or side.is_file():  # never a folder (a user's, made there since not_a_file looked)
            old.mkdir(exist_ok=True)
            # retried on Windows, where an editor or a virus scanner may hold it (it stopped the whole batch)
            _replace(side, old / side.name, held=side)
        work = work_root / f"{task['run_id']}.{os.getpid()}"
        work.mkdir()
        stem = paths["stem"]
        tmp = {"csv": work / f"{stem}.csv" if settings.csv else None,
               "video": work / paths["video"].name if paths["video"] else None,
               "sidecar": work / f"{stem}.json"}
        analyzer, res["model_loaded"] = _cached_analyzer(settings.analyzer)
        run = analyze_file(analyzer, task["input"], csv=tmp["csv"], video=tmp["video"], sidecar=tmp["sidecar"],
                           neutralize=bool(settings.analyzer.get("neutralize")), overwrite=True,
                           max_frames=settings.max_frames, audio=settings.audio,
                           video_preset=settings.video_preset, video_threads=video_threads)
        if task.get("command"):  # the sidecar says how it was made, as process's does (batch.json's command)
            run.info["command"] = task["command"]
        n, last = 0, time.perf_counter()
        for _ in run:
            n += 1
            if progress is not None and time.perf_counter() - last >= progress_every_s:
                last = time.perf_counter()
                progress(n)
        if progress is not None:
            progress(n)
        info = read_sidecar(tmp["sidecar"])
        if info is None or info.get("status") != "complete":
            raise InputError(f"{task['input']}: run ended as {info.get('status') if info else 'unknown'}"
                             + (f" ({info['error']})" if info and info.get("error") else ""))
        for k in ("csv", "video"):
            if tmp[k] is not None:
                _replace(tmp[k], paths[k])  # type: ignore[arg-type]
                placed.append(k)
        s = run.stats.summary()
        res.update(frames=s["frames"], faces=s["faces"], fps=s["fps"], reading=sidecar_reading(info),
                   made_with=made_with(info),  # the backend that ran (not auto), the versions: batch.json's
                   # a cut or damaged file is complete as far as it decodes: said, as process says it
                   frames_missing=int(getattr(run.src, "frames_missing", 0) or 0),
                   cut_short=bool(getattr(run.src, "cut_short", False)),  # (a TS that ends inside a packet)
                   grew_while_read=bool(getattr(run.src, "grew_while_read", False)),  # (a recording in progress)
                   decode_errors=int(s.get("decode_errors") or 0),
                   damaged=int(getattr(run.src, "damaged", 0) or 0),  # damage read through (frames concealed)
                   rows=count_csv_rows(paths["csv"]) if paths["csv"] else None,  # type: ignore[arg-type]
                   csv_bytes=Path(paths["csv"]).stat().st_size if paths["csv"] else None)  # type: ignore[arg-type]
        # paths as UTF-8 text (a name's bytes that are not UTF-8 as \xNN, as the sidecar's own and the Parquet
        # `video` column write them: json_text_fields below): `batch.input` is read back by same_input, which takes
        # that spelling
        info["csv"] = res["csv"]
        info["video"] = res["video"]
        info["fingerprint"] = task["fingerprint"]
        info["batch"] = {"run_id": task["run_id"], "input": task["input"], "rel": task["rel"],
                         "retries": res["retries"], "rows": res["rows"], **task.get("batch", {}),
                         "csv_bytes": res["csv_bytes"]}
        from realtime.sinks import write_sidecar

        write_sidecar(paths["sidecar"], json_text_fields(info))  # atomic: the input is complete from here on
        res["status"] = "done"
        shutil.rmtree(work_root / SUPERSEDED, ignore_errors=True)
    except InputError as e:
        res.update(error=str(e) + _set_aside(paths, work_root, placed), error_type=type(e).__name__,
                   exit_code=e.exit_code)
    except FaceCycleError as e:  # model, output, backend: every other input would fail the same way
        alone = _this_input_only(e, task) if isinstance(e, OutputError) else None
        if alone is not None:  # (a sink's error made from an OSError of this input's paths alone)
            res.update(error=_final_names(alone, tmp, paths), error_type="OutputError",
                       exit_code=OutputError.exit_code)
        elif isinstance(e, OutOfMemory) and not address_space_limited():
            # without a limit on the address space, one input too large for this machine (an 8K video with its
            # annotated copy) fails alone; under a limit (ulimit -v, h_vmem) every input would fail alike
            res.update(error=_final_names(str(e), tmp, paths), error_type="OutOfMemory", exit_code=e.exit_code)
        else:
            res.update(status="error", error=_final_names(str(e), tmp, paths), error_type=type(e).__name__,
                       exit_code=e.exit_code)
    except Exception as e:  # noqa: BLE001 - reported per input; the batch goes on
        oom = is_out_of_memory(e)
        folder = _folder_in_the_way(e, tmp, paths) if not oom else None
        alone = _this_input_only(e, task) if folder is None and not oom else None
        if oom:  # a MemoryError no stage named: out of memory (exit 7), which stops the batch under a limit on
            # the address space, as every other input would fail alike (docs/reliability.md); without one, this
            # input alone fails. It was "internal error: MemoryError" with a 30-line traceback, and the batch went on
            # to its next input, whose encoder then failed to open (exit 4)
            log.debug("%s: out of memory", task["input"], exc_info=True)
            err = OutOfMemory.while_(f"processing {task['input']}", e)
            res.update(error=_final_names(str(err), tmp, paths), error_type="OutOfMemory", exit_code=err.exit_code,
                       **({"status": "error"} if address_space_limited() else {}))
        elif folder is not None:  # (one made there while the input ran: not_a_file found none before) this input's
            res.update(error=f"{folder}: a folder, where {task['input']}'s output goes; it is not replaced: move it "
                             "away (or give another --out-dir)", error_type="OutputError",
                       exit_code=OutputError.exit_code)  # alone: named, not the output folder every input shares
        elif alone is not None:  # a path too long, a file of its own that may not be written: this input fails
            res.update(error=_final_names(alone, tmp, paths), error_type="OutputError",
                       exit_code=OutputError.exit_code)
        elif isinstance(e, OSError) and _under(getattr(e, "filename", None), task.get("out_dir")):
            # the output folder cannot be written (read-only, full, immutable): every input would fail alike
            err = OutputError(f"{Path(paths['sidecar']).parent}: cannot write {task['rel']}'s outputs there "
                              f"({e.strerror or e})")
            res.update(status="error", error=_final_names(str(err), tmp, paths), error_type="OutputError",
                       exit_code=err.exit_code)
        else:
            log.exception("%s: unexpected error", task["input"])
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            res.update(error=f"internal error: {type(e).__name__}: {msg}", error_type=type(e).__name__,
                       exit_code=1)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
        _unlock_outputs(lock_path, lock)
        for d in (work_root, work_root.parent):
            try:
                d.rmdir()  # only when empty (another input of the folder may be in progress)
            except OSError:
                pass
        res["time_s"] = round(time.perf_counter() - t0, 3)
        res["max_rss_mb"] = _max_rss_mb()
    return res


#: an attempt's work folder: ``<run_id>.<pid>`` (run_id: UTC time and 6 hex digits, runner.py)
_ATTEMPT = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}\.\d+")


def _under(path: Any, root: Any) -> bool:
    """Whether ``path`` lies in the folder ``root`` (both may be None)."""
    if not path or not root:
        return False
    return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(os.path.abspath(os.fsdecode(root)))


#: Windows' path limit where long paths are not enabled (MAX_PATH, 260 with the closing NUL; a folder's is 248):
#: a longer path fails there as "not found" (ERROR_PATH_NOT_FOUND), or as ERROR_FILENAME_EXCED_RANGE (206)
_WINDOWS_MAX_FOLDER = 248


def _name_too_long(paths: Dict[str, Any], what: str) -> Optional[str]:
    """One line where the name of one of ``paths``' CSV, video and sidecar is longer than its file system allows
    (an input named near 255 bytes gets ``NAME.annotated.mp4`` over it: :func:`~realtime.sinks.base.
    check_output_name`), or None. The input fails alone, before anything is moved: it stopped the whole batch as
    an output error."""
    from ..sinks.base import check_output_name

    for k in ("csv", "video", "sidecar"):
        p = paths.get(k)
        if p is None:
            continue
        try:
            check_output_name(p)
        except OutputError as e:
            return f"{what}: {e}"
        except OSError:  # a path too long as a whole (checked when it is written)
            return None
    return None


def _this_input_only(e: BaseException, task: Dict[str, Any]) -> Optional[str]:
    """One line where ``e`` (an ``OSError``, or an output error made from one) concerns the outputs of this input
    alone, not the output folder every input shares, or None (the batch stops: every input would fail alike).

    Alone: a path under ``--out-dir`` too long (``ENAMETOOLONG``; on Windows without long paths, one of 248
    characters or more that fails as not found, or error 206): an attempt's work copies
    (``.facecycle-partial/STEM/RUN.PID/NAME``) are about 50 characters longer than the final outputs, and one
    such input stopped the whole batch with a bare "No such file or directory". And a ``PermissionError`` where the
    output folder itself may be written (a folder or file of this input's that may not be, a file another program
    holds on Windows)."""
    err: Optional[BaseException] = e
    for _ in range(4):  # the OSError an OutputError was raised from (or while handling)
        if err is None or isinstance(err, OSError):
            break
        err = err.__cause__ or err.__context__
    if not isinstance(err, OSError):
        return None
    out = task.get("out_dir")
    names = [os.fsdecode(n) for n in (err.filename, getattr(err, "filename2", None)) if isinstance(n, (str, bytes))]
    names = [n for n in names if _under(n, out)]
    if not names:
        return None
    name = max(names, key=len)
    why = err.strerror or str(err)
    if err.errno == errno.ENAMETOOLONG or (_WINDOWS and (getattr(err, "winerror", None) == 206 or (
            err.errno == errno.ENOENT and len(name) >= _WINDOWS_MAX_FOLDER))):
        where = f" (a work copy, in {PARTIAL_DIR})" if PARTIAL_DIR in Path(name).parts else ""
        # (Windows' "not found" of a path over its 259 characters is the path's length, whatever its names)
        long_name = _name_over_limit(name, out) if err.errno == errno.ENAMETOOLONG else None
        if long_name is not None:  # one name alone is too long: where the outputs go does not matter
            part, n, unit, limit = long_name
            shown = part if len(part) <= 60 else f"{part[:40]}…{Path(part).suffix}"
            return (f"{task['input']}: its outputs cannot be written: the name {text_name(shown)}{where} is too "
                    f"long ({n} {unit}; this file system allows {limit}) ({why}); rename the input (a shorter "
                    "--out-dir does not help)")
        hint = ("Windows allows 259 characters unless long paths are enabled (LongPathsEnabled): enable them, or give "
                "a shorter --out-dir" if _WINDOWS else "give a shorter --out-dir, or rename the input")
        return (f"{task['input']}: its outputs cannot be written: a path of {len(name)} characters{where} is too long "
                f"({why}); {hint}")
    if isinstance(err, PermissionError) and out and os.access(out, os.W_OK) and not _same_folder(name, out):
        held = "; open in another program? close it and run the batch again" if _WINDOWS else ""
        return f"{task['input']}: its outputs cannot be written ({name}: {why}){held}"
    return None


def _name_over_limit(path: str, out: Any) -> Optional[Tuple[str, int, str, int]]:
    """The first name in ``path`` below the output folder ``out`` that is longer than the file system allows
    (``(name, length, unit, limit)``: the output folder's ``NAME_MAX``, else 255 bytes; on Windows 255 UTF-16
    code units, as NTFS counts), or None: then the path as a whole is too long."""
    try:
        limit = name_max(out)
        parts = Path(path).relative_to(os.fspath(out)).parts
    except (ValueError, TypeError):
        limit, parts = 255, Path(path).parts
    unit = "characters" if _WINDOWS else "bytes"
    for part in parts:
        n = name_length(part)
        if n > limit:
            return part, n, unit, limit
    return None


def _same_folder(a: Any, b: Any) -> bool:
    """Whether the paths ``a`` and ``b`` name one folder (or file)."""
    ia, ib = file_id(a), file_id(b)
    if ia is not None and ib is not None:
        return ia == ib
    return os.path.abspath(a) == os.path.abspath(b)


def _folder_in_the_way(e: BaseException, tmp: Dict[str, Optional[Path]], paths: Dict[str, Any]) -> Optional[str]:
    """The final output path that ``e`` (an ``IsADirectoryError``; on Windows a ``PermissionError``) found a folder
    at, or None. ``os.replace`` names its source first and its target second (``filename2``); an ``open`` names its
    one path."""
    if not isinstance(e, (IsADirectoryError, PermissionError)):
        return None
    for name in (getattr(e, "filename2", None), getattr(e, "filename", None)):
        if name is None:
            continue
        name = os.fsdecode(name)
        for k in ("csv", "video", "sidecar"):
            final, work = paths.get(k), tmp.get(k)
            if final is not None and name in (str(final), str(work)) and Path(final).is_dir():
                return str(final)  # (a work copy is named by its final path)
    return None


def _final_names(msg: str, tmp: Dict[str, Optional[Path]], paths: Dict[str, Any]) -> str:
    """``msg`` naming the input's outputs by their final paths, not the work folder's copies (which are deleted):
    and saying that nothing of the input was kept."""
    named = False
    for k, p in tmp.items():
        if p is not None and paths.get(k) is not None and str(p) in msg:
            msg = msg.replace(str(p), str(paths[k]))
            named = True
    if named:  # what a sink said it kept went with the work folder
        msg = re.sub(r" \(rows up to frame \d+ are complete\)", "", msg) + "; nothing of this input was kept"
    return msg


def _max_rss_mb() -> Optional[float]:
    """Peak resident memory of this (worker) process so far, MiB (None where unsupported)."""
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except (ImportError, OSError, ValueError):
        return None
