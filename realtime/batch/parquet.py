"""All CSVs of a batch as one Parquet dataset (pyarrow): a ``video`` column, then the CSV's columns.

Column types follow docs/csv.md: ``frame``, ``face_id``, ``success``, ``baseline_ready`` int64; ``emotion`` string
(null when no head or no face); ``file`` string (image folders' CSVs end with it; where one does, the dataset has
it, null on the videos' rows); everything else float64 (an empty CSV cell is null). ``video`` is the input's path
relative to the batch root (the same relative path its outputs have under ``--out-dir``), dictionary-encoded.
Each file's schema metadata holds, as JSON, the settings (:data:`SETTINGS_KEY`) and each input's place on its file's
clock (:data:`TIMING_KEY`: ``timestamp`` is relative to the input's first frame).

``PATH`` ending in ``.parquet`` is one file; anything else is a folder of ``part-NNNNN.parquet`` files of at
most ``rows_per_file`` rows (``pandas.read_parquet(PATH)``, ``polars.read_parquet(PATH + "/*.parquet")``,
DuckDB ``read_parquet('PATH/*.parquet')``). Streams one CSV at a time: memory holds the rows of one row group (the
videos read since the last, up to :data:`ROW_GROUP_BYTES` of Arrow data, or one longer video's).

A run that writes a dataset holds its path's lock (:func:`lock_parquet`, a hidden ``.PATH.lock`` beside it) from its
start to the end of its write, so that a second run given the same path is refused at its start instead of
replacing the first one's dataset (two batches of one corpus each wrote a dataset of its own half). The dataset is
written aside (``.PATH.tmp-HOST-PID``: :func:`temporary_path`) and moved into place; the temporaries that killed runs
left there are removed by the next run once it holds the lock (:func:`remove_stale_temporaries`: this host's whose
process is gone; another host's, or an older version's ``.PATH.tmp-PID``, only once untouched for
:data:`STALE_ELSEWHERE_S`): they stayed for good, each the size of a dataset.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

from facecycle.errors import BackendUnavailable, InputError, OutputError
from facecycle.files import (
    Busy,
    check_can_create,
    lock_file,
    lock_name,
    pid_alive,
    text_name,
    unlock_file,
    write_failure,
)

__all__ = ["write_parquet", "require_pyarrow", "check_parquet_path", "lock_parquet", "unlock_parquet",
           "remove_stale_temporaries", "temporary_path", "STALE_ELSEWHERE_S", "PYARROW_MISSING"]

log = logging.getLogger(__name__)

PYARROW_MISSING = 'pyarrow is not installed; pip install "facecycle-rt[cluster]" (or pip install pyarrow)'
_INT_COLUMNS = ("frame", "face_id", "success", "baseline_ready")
#: the Arrow bytes of CSV rows gathered into one row group. One row group per video made a corpus of short clips
#: pay ~33 KB of footer per video, all held by the writer until it closed: 3,000 clips of 2 rows wrote a 195-MB file
#: (94 MB of footer) in 1.74 GB. Row groups of tens of MB are what readers handle best
ROW_GROUP_BYTES = 64 << 20
_TEXT_COLUMNS = ("emotion", "file")


def require_pyarrow() -> None:
    """Raise :class:`BackendUnavailable` (one line) when pyarrow cannot be imported; imports nothing itself."""
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise BackendUnavailable(PYARROW_MISSING)


def _ours(dest: Path) -> bool:
    """Whether ``dest`` is a dataset this writer made: a ``.parquet`` file, or a folder holding only
    ``part-NNNNN.parquet`` files (maybe none)."""
    if dest.is_dir():
        return all(p.is_file() and p.name.startswith("part-") and p.suffix == ".parquet" for p in dest.iterdir())
    return dest.suffix.lower() == ".parquet"


def check_parquet_path(path: Union[str, Path], out_dir: Optional[Union[str, Path]] = None) -> None:
    """Refuse (:class:`OutputError`, before any input is read) a ``--parquet`` path that holds something other
    than a dataset this writer made, or that is (or holds) ``out_dir``: it is replaced whole, and a folder of other
    files (the output folder itself, a folder of documents) was deleted with it."""
    dest = Path(path)
    if out_dir is not None and not dest.suffix.lower() == ".parquet":
        d, o = Path(os.path.abspath(dest)), Path(os.path.abspath(out_dir))
        if d == o or d in o.parents:
            raise OutputError(f"{dest}: the CSVs are written there (--out-dir {out_dir}); --parquet replaces its "
                              "path whole: give another folder or a .parquet file name")
    if dest.exists() and not _ours(dest):
        what = "a folder with other files" if dest.is_dir() else "a file that is not .parquet"
        raise OutputError(f"{dest}: {what}; --parquet replaces its path whole: give a new folder or a .parquet "
                          "file name")
    check_can_create(dest)  # found now, not after the whole corpus has run


def lock_parquet(path: Union[str, Path], run: str, advice: str) -> Optional[int]:
    """Take the lock of the dataset at ``path`` for a run (``run``: ``facecycle batch``, ``facecycle process``) that
    will write it: the descriptor to hand to :func:`unlock_parquet` once the dataset is written (or the run ends
    otherwise; the OS releases it where the process dies). Raises :class:`OutputError` (one line naming the run
    that holds it, its host and pid, then ``advice``) where another run holds it. None where the OS has no
    ``flock`` (Windows: not locked)."""
    dest = Path(path)
    try:
        fd = lock_file(lock_name(dest), {"output": str(dest), "run": run}, what=f"the lock of {dest}")
    except Busy as b:
        other = b.holder.get("run")
        raise OutputError(f"{dest}: being written by another run ({other + ', ' if other else ''}{b.who}); "
                          f"{advice}") from None
    except OSError as e:
        raise OutputError(f"{dest}: cannot write ({e.strerror or e})") from None
    if fd is not None or _NO_FLOCK:  # (held: no other run writes this dataset now)
        remove_stale_temporaries(dest)
    return fd


#: the OS has no ``flock`` (Windows): nothing is locked, and a temporary's pid alone tells whether its run is alive
_NO_FLOCK = os.name == "nt"


def _holds_lock(dest: Path) -> bool:
    """Whether this process holds the lock of the dataset at ``dest`` (:func:`lock_parquet`: its lock file names
    this host and pid), or nothing is locked here (:data:`_NO_FLOCK`)."""
    if _NO_FLOCK:
        return True
    import json

    try:
        holder = json.loads(lock_name(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(holder, dict) and holder.get("pid") == os.getpid()
            and holder.get("host") == socket.gethostname())


#: seconds a temporary dataset whose writer cannot be checked from here (another host's, whose pid says nothing
#: here; or an older version's ``.NAME.tmp-PID``, which names no host) must have gone unmodified before a run removes
#: it: a live writer adds to it at every row group (64 MB of rows) or part file, minutes apart at most, so a day
#: untouched is a writer that is gone. Where locks are per machine (Windows, or ``flock`` local to each host of a
#: shared file system) another host's live one looked dead here and was deleted while it was written
STALE_ELSEWHERE_S = 24 * 3600


def _host_tag() -> str:
    """This host's name as a temporary's name holds it: its first label, of letters, digits, ``_`` and ``-`` only
    (others as ``_``); where that changed it or made it longer than 24 characters, 15 of them then 8 hex digits of
    the full name's digest (hosts of one short name in two domains stay two)."""
    import hashlib

    full = socket.gethostname() or "localhost"
    short = re.sub(r"[^A-Za-z0-9_-]", "_", full.split(".", 1)[0]) or "host"
    if short == full and len(short) <= 24:
        return short
    return f"{short[:15]}_{hashlib.sha256(full.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def temporary_path(path: Union[str, Path], pid: Optional[int] = None) -> Path:
    """Where the dataset at ``path`` is written before it is moved into place: ``.NAME.tmp-HOST-PID`` beside it
    (:func:`_host_tag`; ``pid``: this process's by default). The host is in the name so that a run on another
    machine sharing the folder can tell that the temporary is not of a process of its own."""
    dest = Path(path)
    return dest.with_name(f".{dest.name}.tmp-{_host_tag()}-{os.getpid() if pid is None else pid}")


def _stale(entry: "os.DirEntry[str]", prefix: str, host: str) -> bool:
    """Whether the temporary ``entry`` (a name that starts with ``prefix``) is a gone writer's: this host's
    (``HOST-PID``) whose process no longer runs (not this process's); another host's, or an older version's
    (``PID`` alone, whose process does not run here), only where untouched for :data:`STALE_ELSEWHERE_S`."""
    rest = entry.name[len(prefix):]
    if rest.isdigit():  # an older version's: no host named, its pid may be another machine's
        if int(rest) == os.getpid() or pid_alive(int(rest)):
            return False
        return _untouched_for(entry.path) >= STALE_ELSEWHERE_S
    tag, _, pid = rest.rpartition("-")
    if not tag or not pid.isdigit():  # not a temporary of this writer
        return False
    if tag == host:
        return int(pid) != os.getpid() and not pid_alive(int(pid))
    return _untouched_for(entry.path) >= STALE_ELSEWHERE_S  # another host's: its pid says nothing here


def _untouched_for(path: str) -> float:
    """Seconds since anything in ``path`` (a file, or a folder and the files in it) was last modified; 0 where that
    cannot be read."""
    import time

    try:
        newest = os.stat(path, follow_symlinks=False).st_mtime
        if os.path.isdir(path) and not os.path.islink(path):
            for e in os.scandir(path):
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    except OSError:
        return 0.0
    return time.time() - newest


def remove_stale_temporaries(path: Union[str, Path]) -> int:
    """Remove what killed writers of the dataset at ``path`` left beside it: its temporaries (a file, or a folder of
    part files) ``.NAME.tmp-HOST-PID`` of this host whose process (PID) no longer runs; another host's, and an older
    version's ``.NAME.tmp-PID`` (no host: its PID may be another machine's), only once nothing in it has changed for
    :data:`STALE_ELSEWHERE_S` (a day; an older version's whose PID runs here, never). This process's own and a live
    one's are left alone. For a run that holds the path's lock (:func:`lock_parquet`): no other run of this host
    writes then. Returns how many were removed; errors are logged, never raised."""
    dest = Path(path)
    prefix, host = f".{dest.name}.tmp-", _host_tag()
    n = 0
    try:
        entries = list(os.scandir(dest.parent))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix) or not _stale(entry, prefix, host):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as e:
            log.warning("%s: a killed run's temporary dataset was not removed (%s)", entry.path, e.strerror or e)
            continue
        n += 1
        log.info("%s: removed (a temporary dataset that a killed run left)", entry.path)
    return n


def _write_error(dest: Path, e: OSError) -> OutputError:
    """The one line of a dataset that could not be written: ``disk full``, ``disk quota exceeded``, ``file size
    limit reached`` as every output says them (:func:`facecycle.files.write_failure`; pyarrow's own words were
    ``Error writing bytes to file. Detail: [errno 28] No space left on device``), else the system's words."""
    code = e.errno
    if code is None:  # (a pyarrow error without its errno set: read from its words)
        m = re.search(r"\[errno (\d+)\]", str(e))
        code = int(m.group(1)) if m else None
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutputError(f"{dest}: {write_failure(OSError(code, os.strerror(code)))} (the dataset was not "
                           "written; its CSVs are complete)")
    return OutputError(f"{dest}: cannot write ({e.strerror or e})")


def unlock_parquet(path: Union[str, Path], fd: Optional[int]) -> None:
    """Release the lock :func:`lock_parquet` took (its lock file removed); never raises."""
    unlock_file(lock_name(Path(path)), fd)


def _column_types(columns: List[str]):
    import pyarrow as pa

    return {c: (pa.int64() if c in _INT_COLUMNS else pa.string() if c in _TEXT_COLUMNS else pa.float64())
            for c in columns}


#: how a damaged CSV is made again (batch --force would redo every input)
_REDO = ("make this CSV again (a batch's: remove its .json sidecar beside it and run the batch again; a process "
         "run's: --overwrite)")


def _header(csv: Union[str, Path]) -> List[str]:
    """The CSV's column names; :class:`~facecycle.errors.InputError` naming it where its first line is not text
    (a damaged file: it was an internal error, UnicodeDecodeError)."""
    try:
        with open(csv, "rb") as f:
            return f.readline().decode("utf-8").strip().split(",")
    except UnicodeDecodeError as e:
        raise InputError(f"{csv}: damaged (its header is not UTF-8 text at byte {e.start}); the dataset was not "
                         f"written: {_REDO}") from None


class _RowGroup:
    """Tables gathered for one row group, and their Arrow bytes (counted as they come: summing them again for every
    video was quadratic in a row group's videos)."""

    def __init__(self) -> None:
        self.tables: List = []
        self.nbytes = 0

    def add(self, table) -> bool:
        """Gather ``table``; whether the row group is full (:data:`ROW_GROUP_BYTES`)."""
        self.tables.append(table)
        self.nbytes += table.nbytes
        return self.nbytes >= ROW_GROUP_BYTES

    def write(self, writer) -> None:
        """Write the gathered tables as one row group (or more, past pyarrow's row count per group); start anew."""
        import pyarrow as pa

        if self.tables:
            writer.write_table(pa.concat_tables(self.tables))
        self.tables, self.nbytes = [], 0


#: the key the dataset's schema metadata holds: a digest of what it was made from (each video's name and its CSV's
#: path, size and modification time, and the writer's settings), so that a rerun with nothing new keeps it
INPUTS_KEY = b"facecycle_inputs_sha256"


def _inputs_digest(csvs: List[Tuple[str, Union[str, Path]]], rows_per_file: int, compression: str) -> str:
    import hashlib

    h = hashlib.sha256(f"{rows_per_file}|{compression}".encode())
    for video, csv in csvs:
        st = os.stat(csv)
        # (paths as the file system has them: a name that is not valid UTF-8 failed as "surrogates not allowed")
        h.update(b"\n" + text_name(video).encode("utf-8", "surrogateescape") + b"|" + os.fsencode(os.path.abspath(csv))
                 + f"|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


#: the key of the settings the rows were made with (JSON): a list of ``{"settings": {...}, "videos": N,
#: "first_video": NAME}``, one per distinct setting, read from each CSV's JSON sidecar (:func:`_settings`)
SETTINGS_KEY = b"facecycle_settings"
#: a sidecar's keys that belong to one input's run, not to how its rows were made
_RUN_KEYS = frozenset({"input", "columns", "max_frames", "status", "csv", "video", "frames", "rows", "summary", "stats",
                       "written_at", "error", "detect_size", "look_ahead", "images", "command", "fingerprint", "batch",
                       "video_size", "video_threads", "orientation", "dark_faces"})
#: of the backend's record, the run's own: why it was chosen, in words, and its thread counts
_BACKEND_RUN_KEYS = ("selected", "intra_op_threads", "inter_op_threads", "threads")
#: of ``versions``, those that bear on the rows (the platform and Python differ between a cluster's nodes)
_VERSION_KEYS = ("facecycle", "facecycle_source", "onnxruntime", "numpy", "cv2", "av")


def _settings(csv: Union[str, Path]) -> Optional[dict]:
    """How ``csv``'s rows were made, from its JSON sidecar (``clip.json`` beside ``clip.csv``): the model's
    name and checksums, the backend and precision, the detector, the smoothing, the person baseline, the label rule,
    the tracker and the software versions; None where the sidecar cannot be read."""
    import json

    try:
        info = json.loads(Path(csv).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    out = {k: v for k, v in info.items() if k not in _RUN_KEYS}
    if isinstance(out.get("model"), dict):
        out["model"] = {k: v for k, v in out["model"].items() if k != "dir"}  # where it lies on this machine
    asked = (info.get("detect_size") or {}).get("asked") if isinstance(info.get("detect_size"), dict) else None
    if asked is not None and isinstance(out.get("detector"), dict):  # a run that raised the size for small faces
        out["detector"] = {**out["detector"], "max_side": asked}   # records the raised one: the setting was this
    from ..baseline import NeutralBaseline
    from ..neutral_reference import NeutralReference

    # of a nested setting, the run's own counts (as the batch fingerprint leaves them out: realtime.batch.plan),
    # and the backend's, which differ between a cluster's nodes where the rows do not
    run_counts = {"neutral_reference": NeutralReference.RUN_COUNTS, "person_baseline": NeutralBaseline.RUN_COUNTS,
                  "backend": _BACKEND_RUN_KEYS}
    for key, drop in run_counts.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in drop}
    if isinstance(out.get("versions"), dict):
        out["versions"] = {k: out["versions"][k] for k in _VERSION_KEYS if k in out["versions"]}
    return out


def _settings_metadata(csvs: List[Tuple[str, Union[str, Path]]]) -> bytes:
    """:data:`SETTINGS_KEY`'s value: each distinct setting of the CSVs, with how many videos and the first's name.
    Logs a warning where the dataset mixes settings (a second model, smoothing on and off)."""
    import json

    groups: dict = {}
    for video, csv in csvs:
        st = _settings(csv)
        key = json.dumps(st, sort_keys=True)
        g = groups.setdefault(key, {"settings": st, "videos": 0, "first_video": text_name(video)})
        g["videos"] += 1
    if len(groups) > 1:
        log.warning("the dataset's rows were made with %d different settings (schema metadata %s says which)",
                    len(groups), SETTINGS_KEY.decode())
    return json.dumps(list(groups.values()), sort_keys=True).encode()


#: the key of each input's place on its file's clock (JSON): ``{VIDEO: {"start_s", "first_pts", "time_base",
#: "creation_time", "fps", "clock", "audio_start_s"}}``, VIDEO as the ``video`` column names it, read from each CSV's
#: sidecar's ``input`` block (:func:`_timing_metadata`): the rows' ``timestamp`` is relative to the first frame
TIMING_KEY = b"facecycle_timing"
_TIMING_FIELDS = ("start_s", "first_pts", "time_base", "creation_time", "fps", "clock", "audio_start_s")


def _timing(csv: Union[str, Path]) -> dict:
    """``csv``'s input's timing (:data:`_TIMING_FIELDS`) from its sidecar's ``input`` block; null where it states
    none (an image folder, an older sidecar without ``audio_start_s``, an unreadable sidecar). ``time_base`` as
    ``"num/den"``."""
    import json
    from fractions import Fraction

    try:
        info = json.loads(Path(csv).with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    inp = info.get("input") if isinstance(info, dict) else None
    inp = inp if isinstance(inp, dict) else {}
    out = {k: inp.get(k) for k in _TIMING_FIELDS}
    if out["time_base"] is not None:
        try:
            tb = Fraction(str(out["time_base"]))
            out["time_base"] = f"{tb.numerator}/{tb.denominator}"
        except (ValueError, ZeroDivisionError):
            pass
    return out


def _timing_metadata(csvs: List[Tuple[str, Union[str, Path]]]) -> bytes:
    """:data:`TIMING_KEY`'s value: each input's timing, by its ``video`` name, in the dataset's order."""
    import json

    return json.dumps({text_name(video): _timing(csv) for video, csv in csvs}).encode()


def _per_part(writer: object) -> bool:
    """Whether ``writer`` (a ``pyarrow.parquet.ParquetWriter``) takes key-value metadata before it closes (pyarrow
    17 on): each part file then holds the timing of its own inputs only, not of every input of the dataset (about
    200 bytes an input: a corpus of 100,000 videos put 20 MB into every part's footer)."""
    return callable(getattr(writer, "add_key_value_metadata", None))


def _close_part(writer: "object", part: List[Tuple[str, Union[str, Path]]]) -> None:
    """Close a part file's writer, first giving it :data:`TIMING_KEY` of the inputs ``part`` whose rows it holds
    (where it takes metadata so late: :func:`_per_part`; else every input's is in its schema already)."""
    if _per_part(writer):
        writer.add_key_value_metadata({TIMING_KEY: _timing_metadata(part)})  # type: ignore[attr-defined]
    writer.close()  # type: ignore[attr-defined]


def _unchanged(dest: Path, digest: str) -> Optional[dict]:
    """The dataset at ``dest``'s ``{"path", "files", "rows", "videos"}`` where it was made from the same inputs
    (:data:`INPUTS_KEY` equals ``digest``), else None."""
    import pyarrow.parquet as pq

    try:
        files = [dest] if dest.is_file() else sorted(dest.glob("part-*.parquet")) if dest.is_dir() else []
        if not files:
            return None
        metas = [pq.ParquetFile(str(f)).metadata for f in files]
        if any((m.metadata or {}).get(INPUTS_KEY) != digest.encode() for m in metas):
            return None
        if any(TIMING_KEY not in (m.metadata or {}) for m in metas):  # an older version's: written again with it
            return None
        videos = pq.read_schema(str(files[0])).metadata.get(b"facecycle_videos")
        return {"path": str(dest), "files": len(files), "rows": sum(m.num_rows for m in metas),
                "videos": int(videos) if videos else None, "unchanged": True}
    except Exception:  # noqa: BLE001 - unreadable, or not ours: written again
        return None


def write_parquet(csvs: Iterable[Tuple[str, Union[str, Path]]], path: Union[str, Path],
                  rows_per_file: int = 2_000_000, compression: str = "zstd") -> dict:
    """Write ``(video, csv_path)`` pairs as one dataset at ``path`` (written aside, then moved into place). A dataset
    there made from the same CSVs (each one's path, size and modification time, in the same order, with the same
    settings) is kept as it is (``"unchanged": True``): a batch rerun with nothing new left its outputs alone but
    rewrote the dataset, so that rules downstream of it (Make, Snakemake) ran again.

    Returns:
        ``{"path", "files", "rows", "videos"}`` (and ``"unchanged": True`` where the dataset was kept).

    Raises:
        BackendUnavailable: pyarrow missing. OutputError: unwritable path, or CSVs with different columns.
    """
    require_pyarrow()
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    dest = Path(path)
    check_parquet_path(dest)
    single = dest.suffix.lower() == ".parquet"
    tmp = temporary_path(dest)
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    if _holds_lock(dest):  # (where a caller holds the lock: lock_parquet removed them already, unless one appeared)
        remove_stale_temporaries(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not single:
            tmp.mkdir()
    except OSError as e:
        raise OutputError(f"{dest}: cannot write ({e.strerror or e})") from None
    columns: Optional[List[str]] = None
    schema = None
    writer = None
    files: List[str] = []
    rows_in_file = total = videos = 0
    pending = _RowGroup()  # tables not yet written: a row group gathers videos up to ROW_GROUP_BYTES
    csvs = list(csvs)
    digest = _inputs_digest(csvs, rows_per_file, compression) if csvs else ""
    kept = _unchanged(dest, digest) if csvs else None
    if kept is not None:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
        log.info("%s: made from the same CSVs; kept", dest)
        return kept
    # an image folder's CSV ends with `file`: where one has it, the dataset does, null for the videos' rows
    with_file = any(_header(c)[-1:] == ["file"] for _, c in csvs)
    settings = _settings_metadata(csvs)
    part: List[Tuple[str, Union[str, Path]]] = []  # the inputs whose rows the open part file holds
    every_timing: Optional[bytes] = None  # every input's timing, for a pyarrow before 17 (read at its first part)
    try:
        for video, csv in csvs:
            header = _header(csv)
            own = header[:-1] if header[-1:] == ["file"] else header
            if columns is None:
                columns = own + (["file"] if with_file else [])
                types = _column_types(columns)
                schema = pa.schema([pa.field("video", pa.dictionary(pa.int32(), pa.string()))]
                                   + [pa.field(c, types[c]) for c in columns],
                                   metadata={INPUTS_KEY: digest.encode(), b"facecycle_videos": str(len(csvs)).encode(),
                                             SETTINGS_KEY: settings})
            elif own != [c for c in columns if c != "file"]:
                raise OutputError(f"{csv}: columns differ from the first CSV's ({len(header)} vs {len(columns)}; "
                                  "different models in one dataset?)")
            convert = pacsv.ConvertOptions(column_types={c: types[c] for c in header}, strings_can_be_null=True)
            try:
                with open(csv, "rb") as f:  # (a file object: pyarrow takes no path that is not valid UTF-8)
                    table = pacsv.read_csv(f, convert_options=convert)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # a damaged CSV: it was an internal error
                why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise InputError(f"{csv}: damaged ({why}); the dataset was not written: {_REDO}") from None
            n = table.num_rows
            vcol = pa.DictionaryArray.from_arrays(pa.array([0] * n, pa.int32()),
                                                  pa.array([text_name(video)], pa.string()))
            cols = [table.column(c) if c in header else pa.nulls(n, types[c]) for c in columns]
            table = pa.Table.from_arrays([vcol] + cols, schema=schema)
            if writer is None or (not single and rows_in_file and rows_in_file + n > rows_per_file):
                if writer is not None:
                    pending.write(writer)
                    _close_part(writer, part)
                target = tmp if single else tmp / f"part-{len(files):05d}.parquet"
                writer = pq.ParquetWriter(str(target), schema, compression=compression)
                if not _per_part(writer):  # (an older pyarrow: every input's timing in each part's schema)
                    writer.close()
                    if every_timing is None:  # (read once: every sidecar, not once a part)
                        every_timing = _timing_metadata(csvs)
                    writer = pq.ParquetWriter(str(target), schema.with_metadata(
                        {**schema.metadata, TIMING_KEY: every_timing}), compression=compression)
                part = []
                files.append(target.name if not single else dest.name)
                rows_in_file = 0
            part.append((video, csv))
            if pending.add(table):
                pending.write(writer)
            rows_in_file += n
            total += n
            videos += 1
        if writer is not None:
            pending.write(writer)
        if writer is None:  # no CSV at all: an empty dataset with no columns known
            stale = dest.exists()
            if stale:  # an earlier run's dataset would pass for this one's
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            log.warning("no CSV to put into %s%s", dest, ": the earlier dataset there was removed" if stale else "")
            return {"path": str(dest), "files": 0, "rows": 0, "videos": 0}
        _close_part(writer, part)
        writer = None
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(tmp, dest)
    except OSError as e:
        raise _write_error(dest, e) from None
    finally:
        if writer is not None:
            writer.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink()
    return {"path": str(dest), "files": len(files), "rows": total, "videos": videos}
