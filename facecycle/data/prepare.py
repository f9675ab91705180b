"""Videos / image folders -> a face-track dataset of square crops.

Layout of a dataset directory::

    DATASET/
      index.csv          source,track,frame,x0,y0,x1,y1,file   (one row per crop)
      sources.csv        source,status,tracks,crops,message     (resumability + bad files)
      meta.json          size, scale, detector, every
      tracks/<track>/<frame:06d>.png                          (RGB crops, size×size)

The faces themselves come from the caller's ``extract(source)`` (the
command line passes :func:`realtime.facetracks.face_tracks`: the pipeline's
decoder, detector, tracker and crops); this module owns the dataset: its
layout, index and resumability. Track names are ``<source stem>_<hash>_t<id>``. A source listed
done in sources.csv is skipped on the next run, so an interrupted run resumes
where it stopped, and one that failed is tried again (a row per attempt); the
crops of a source are written before its rows are appended to the index, and a
partly written source is redone.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, OutputError
from ..files import IMAGE_SUFFIXES, VIDEO_SUFFIXES, json_text, write_atomic, write_failure
from ..imageio import write_image
from ..jsonvalues import is_finite, is_int, read_json_object
from ..terminal import stderr_is_terminal

__all__ = ["FRAMING", "FRAMINGS", "PrepareOptions", "prepare_dataset", "iter_sources", "read_index", "read_meta",
           "VIDEO_EXTS", "IMAGE_EXTS", "Extract", "OnFailure"]

log = logging.getLogger(__name__)

VIDEO_EXTS = VIDEO_SUFFIXES  # the names this module has always exported
IMAGE_EXTS = IMAGE_SUFFIXES
INDEX_FIELDS = ["source", "track", "frame", "x0", "y0", "x1", "y1", "file"]
SOURCE_FIELDS = ["source", "status", "tracks", "crops", "message"]


#: ``extract(source) -> {track id: [(frame index, square (x0, y0, x1, y1), crop (size, size, 3) uint8 RGB), ...]}``
Extract = Callable[[Path], Dict[int, List[Tuple[int, Tuple[float, float, float, float], np.ndarray]]]]
#: ``on_failure(source, message)``: says that a source failed (and was skipped), once
OnFailure = Callable[[Path, str], None]


@dataclass
class PrepareOptions:
    """Crop size and framing (recorded in ``meta.json``), frame step and the tracking limits of ``extract``."""

    size: int = 64
    scale: float = 1.7
    every: int = 1
    min_track: int = 8
    min_face: int = 32
    min_iou: float = 0.3
    max_gap: int = 10

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.size > 0 and self.every >= 1):  # a scale of 0 cut 1-pixel crops
            raise ValueError(f"PrepareOptions: scale and size must be > 0 and every >= 1 (got scale {self.scale}, "
                             f"size {self.size}, every {self.every})")


def iter_sources(inputs: Sequence[str]) -> List[Path]:
    """Expand inputs: video files, directories of videos, and image folders (one source each)."""
    out: List[Path] = []
    for s in inputs:
        p = Path(s)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            vids = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTS)
            imgs = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTS]
            out.extend(vids)
            if imgs:
                out.append(p)  # an image folder is one source (frames in name order)
            for sub in sorted(q for q in p.iterdir() if q.is_dir()):
                if any(r.suffix.lower() in IMAGE_EXTS for r in sub.iterdir() if r.is_file()):
                    out.append(sub)
        else:
            raise InputError(f"{s}: no such file or directory")
    return out


def _source_id(src: Path) -> str:
    return str(src.resolve())


#: the values a ``sources.csv`` row's ``status`` takes (a source's attempt)
STATUSES = ("done", "failed")
#: a damaged table is refused, not rebuilt: what the user is told to do about it (the index alone removed, the
#: sources recorded done would be skipped and their crops left out of it)
_FIX = {"sources.csv": "repair it, or remove it to prepare every source again",
        "index.csv": "repair it, or remove it and sources.csv to prepare every source again"}


def _damaged(path: Path, why: str) -> InputError:
    return InputError(f"{path}: damaged ({why}); {_FIX.get(path.name, 'repair or remove it')}")


def _read_table(path: Path, nonempty: Sequence[str], check: Optional[Callable[[Dict[str, str]], str]] = None
                ) -> Tuple[List[Dict[str, str]], Optional[int]]:
    """Rows of one of the dataset's tables (empty where it is absent or zero-size, as a table created but never
    written), and where its last line was cut short, the byte length of the whole lines before it (else None).
    Only reads: a reader that is not `data prepare` (training, the scripts) must not change a dataset, nor fail on a
    read-only one; :func:`prepare_dataset` cuts that line off once every table has passed its checks.

    Anything else that is not a whole table written by this module (unreadable, not UTF-8, a header without
    ``nonempty``'s columns, a row short of them, a row ``check`` faults) is an
    :class:`~facecycle.errors.InputError` naming the file: the run that read it as empty dropped the index and redid
    every finished source, and one without a header failed later as an internal error."""
    if not path.exists() and not path.is_symlink():
        return [], None
    try:
        data = path.read_bytes()  # a directory or a dangling link: OSError, said below
    except OSError as e:
        raise _damaged(path, f"cannot read: {e.strerror or e}") from None
    if not data:
        return [], None
    cut: Optional[int] = None
    if not data.endswith(b"\n"):
        # every row is written whole with its line end: a last line without one is the write a killed run cut
        # short (a time limit, a kill), as the rows of a source that never reached sources.csv: it is left out
        cut = data.rfind(b"\n") + 1
        data = data[:cut]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        # (earlier versions wrote the tables in the locale's code page: on Windows, a path under C:\Users\José is
        # not UTF-8 there. Not read in it: prepare's UTF-8 rows appended to it would make a file of two encodings)
        legacy = " (an earlier version on Windows wrote it in the code page: save it as UTF-8)" \
            if sys.platform == "win32" else ""
        raise _damaged(path, f"not UTF-8 text at byte {e.start}{legacy}") from None
    if not text:
        return [], cut
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: List[Dict[str, str]] = []
    try:
        missing = [k for k in nonempty if k not in (reader.fieldnames or [])]
        if missing:
            raise _damaged(path, "its first line is not the header: no " + ", ".join(missing) + " column")
        for r in reader:
            empty = [k for k in nonempty if not r.get(k)]
            why = ("more values than columns" if None in r else f"no {', '.join(empty)}" if empty
                   else check(r) if check is not None else "")
            if why:
                raise _damaged(path, f"line {reader.line_num}: {why}")
            rows.append(r)
    except csv.Error as e:
        raise _damaged(path, f"line {reader.line_num}: {e}") from None
    return rows, cut


def _read_csv(path: Path, nonempty: Sequence[str], check: Optional[Callable[[Dict[str, str]], str]] = None
              ) -> List[Dict[str, str]]:
    """:func:`_read_table`'s rows for a reader that only reads: a last line cut short is left out and said, the
    file left as it is (the next `data prepare` cuts it off and prepares its source again)."""
    rows, cut = _read_table(path, nonempty, check)
    if cut is not None:
        log.warning("%s: its last line was cut short (a run stopped while writing it): left out", path)
    return rows


def _cut_off(path: Path, keep: int) -> None:
    """Cut a table's last line, cut short by a killed run, off the file (``keep``: the bytes of its whole lines),
    so that the next row appended does not join it; an :class:`~facecycle.errors.InputError` naming it where it
    cannot be written."""
    try:
        os.truncate(path, keep)
    except OSError as e:
        raise _damaged(path, f"its last line is cut short, and it cannot be mended: {e.strerror or e}") from None
    log.warning("%s: its last line was cut short (a run stopped while writing it): dropped; its source is "
                "prepared again", path)


def _index_row(r: Dict[str, str]) -> str:
    """What is wrong with an ``index.csv`` row (empty: nothing); its frame number is read back as a number."""
    return "" if r["frame"].isdigit() else f"frame {r['frame']!r} is not a frame number"


def _source_row(r: Dict[str, str]) -> str:
    """What is wrong with a ``sources.csv`` row (empty: nothing)."""
    return "" if r["status"] in STATUSES else f"status {r['status']!r} is not one of {', '.join(STATUSES)}"


#: the columns every row of ``index.csv`` and ``sources.csv`` fills
_INDEX_NONEMPTY = ("source", "track", "frame", "file")
_SOURCES_NONEMPTY = ("source", "status")


def read_index(dataset: Path) -> List[Dict[str, str]]:
    """Rows of ``DATASET/index.csv`` (empty list when absent; a last line cut short by a killed run left out, with
    a warning, and the file not changed); a damaged one is an :class:`~facecycle.errors.InputError` naming it."""
    return _read_csv(Path(dataset) / "index.csv", _INDEX_NONEMPTY, _index_row)


def _append(path: Path, fields: List[str], rows: List[Dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (its header first where it is new or zero-size: a table created and
    never written had its rows appended without one, which the next run could not read); a failed write is an
    :class:`~facecycle.errors.OutputError` naming the file (``disk full``: :func:`facecycle.files.write_failure`)."""
    try:
        new = not path.is_file() or path.stat().st_size == 0
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerows(rows)
            f.flush()
    except OSError as e:
        raise OutputError(f"{path}: {write_failure(e)}") from None


def _rewrite(path: Path, fields: List[str], rows: List[Dict]) -> None:
    """Replace the CSV at ``path`` with ``rows`` at once (a new file renamed over it, :func:`write_atomic`): the
    old way, remove it and append the kept rows, lost every finished row where the append failed."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    try:
        write_atomic(path, buf.getvalue(), newline="")
    except OSError as e:
        raise OutputError(f"{path}: {write_failure(e)}") from None



def _write_source(src: Path, out: Path, extract: Extract, opt: PrepareOptions) -> Tuple[List[Dict], int]:
    """The source's tracks as PNG crops under ``out/tracks``, and their index rows. An error reading the source
    is raised as it comes (the source fails); one writing the dataset is an
    :class:`~facecycle.errors.OutputError` (the run stops: every other source would fail alike)."""
    stem = src.stem if src.is_file() else src.name
    tag = hashlib.sha1(_source_id(src).encode()).hexdigest()[:6]
    rows: List[Dict] = []
    n_tracks = 0
    for tid, items in sorted(extract(src).items()):
        if len(items) < opt.min_track:
            continue
        name = f"{stem}_{tag}_t{tid}"
        d = out / "tracks" / name
        try:
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        except OSError as e:
            raise OutputError(f"{d}: {write_failure(e)}") from None
        n_tracks += 1
        for fi, sq, crop in items:
            rel = f"tracks/{name}/{fi:06d}.png"
            write_image(out / rel, crop[..., ::-1])  # RGB -> BGR
            rows.append({"source": _source_id(src), "track": name, "frame": fi,
                         "x0": f"{sq[0]:.1f}", "y0": f"{sq[1]:.1f}", "x1": f"{sq[2]:.1f}",
                         "y1": f"{sq[3]:.1f}", "file": rel})
    return rows, n_tracks


#: ``meta.json``'s ``framing`` for crops cut at ``scale`` × a CenterFace-sized box whichever detector found the
#: face (``realtime.crops.framing_scale``); datasets made before that have no ``framing`` key
FRAMING = "centerface-box"
#: the framings a dataset's ``meta.json`` may name (one so far; absent: a dataset from before framings)
FRAMINGS = (FRAMING,)


def read_meta(dataset: Path) -> Dict[str, Any]:
    """``DATASET/meta.json``, checked: a JSON object with ``size`` (an integer > 0) and ``scale`` (a finite number
    > 0), and where present ``every`` (an integer >= 1), ``min_track`` (an integer >= 0), ``detector`` (text) and
    ``framing`` (one of :data:`FRAMINGS`); ``scale`` comes back a float. Anything else, or a file that cannot be
    read, is an :class:`~facecycle.errors.InputError` naming it: a list, cut or non-UTF-8 file was an internal error,
    and a NaN scale or an unknown framing was taken as it came."""
    p = Path(dataset) / "meta.json"
    meta = read_json_object(p, "dataset settings", InputError)
    checks = {"size": (True, lambda v: is_int(v) and v > 0, "an integer > 0"),
              "scale": (True, lambda v: is_finite(v) and v > 0, "a finite number > 0"),
              "every": (False, lambda v: is_int(v) and v >= 1, "an integer >= 1"),
              "min_track": (False, lambda v: is_int(v) and v >= 0, "an integer >= 0"),
              "detector": (False, lambda v: isinstance(v, str), "text"),
              "framing": (False, lambda v: v in FRAMINGS, "one of " + ", ".join(FRAMINGS))}
    for k, (required, ok, what) in checks.items():
        if k not in meta:
            if required:
                raise InputError(f"{p}: damaged dataset settings (no {k!r})")
        elif not ok(meta[k]):
            raise InputError(f"{p}: damaged dataset settings ({k!r} must be {what}, not {json.dumps(meta[k])})")
    return {**meta, "scale": float(meta["scale"])}


def prepare_dataset(inputs: Sequence[str], out: Path, extract: Extract, opt: PrepareOptions,
                    detector_name: str = "", progress: bool = True,
                    box_scales: Optional[Mapping[str, float]] = None,
                    on_failure: Optional[OnFailure] = None) -> Dict[str, int]:
    """Build or extend the dataset at ``out`` with the face tracks ``extract`` finds in each source.

    ``extract`` frames every face as a CenterFace box does (``meta.json`` records ``framing``: :data:`FRAMING`),
    whichever detector it uses. A dataset made before that (no ``framing``) was cut on its own detector's boxes:
    it is extended only where that detector's ``box_scales`` entry (its box size against CenterFace's) is 1, else
    its old and new crops would be framed differently.

    Returns counts (sources done/skipped/failed, tracks, crops). A source that fails is recorded as
    failed in ``sources.csv`` and the others go on; the next run tries it again. Each failure is said once:
    ``on_failure(source, message)`` (the command line's one line), else a warning in the log. ``progress``: a bar on
    standard error, drawn only where that is a terminal (its carriage-return redraws filled log files).
    """
    from tqdm import tqdm

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: {e.strerror or e}") from None
    meta_p = out / "meta.json"
    meta = {"size": opt.size, "scale": opt.scale, "every": opt.every, "detector": detector_name,
            "min_track": opt.min_track, "framing": FRAMING}
    # every table is read and checked before anything is written: a damaged one stops the run with the dataset
    # as it was (it was read as empty: the index dropped and every finished source redone)
    old = read_meta(out) if meta_p.exists() or meta_p.is_symlink() else None
    sources_rows, sources_cut = _read_table(out / "sources.csv", _SOURCES_NONEMPTY, _source_row)
    last = {r["source"]: r["status"] for r in sources_rows}  # a source's latest attempt
    idx, index_cut = _read_table(out / "index.csv", _INDEX_NONEMPTY, _index_row)
    if old is not None:
        if old["size"] != opt.size or abs(old["scale"] - opt.scale) > 1e-9:
            raise InputError(f"{out}: existing dataset has size {old.get('size')} scale {old.get('scale')}; "
                             f"asked for size {opt.size} scale {opt.scale}")
        legacy = (box_scales or {}).get(str(old.get("detector", "")).lower(), 1.0)
        if old.get("framing") != FRAMING and abs(float(legacy) - 1.0) > 1e-9:
            raise InputError(f"{out}: existing dataset was cut on {old.get('detector')}'s own boxes, "
                             f"{(legacy - 1) * 100:.0f} % larger than the framing crops have now: new crops would be "
                             "framed otherwise; prepare into a new folder")
        # the sampling and the tracks' rule: new sources prepared otherwise made one data set of two kinds, and its
        # meta.json spoke for the first only (keys absent from older data sets are not checked)
        # (another detector may extend it: every detector frames a face alike, FRAMING)
        differ = [(k, old[k], meta[k]) for k in ("every", "min_track") if k in old and old[k] != meta[k]]
        if differ:
            flags = {"every": "--every", "min_track": "--min-track"}
            raise InputError(f"{out}: existing dataset was prepared with " + ", ".join(
                f"{flags[k]} {was}" for k, was, _ in differ) + "; asked for " + ", ".join(
                f"{flags[k]} {now}" for k, _, now in differ) + ": give the same options to add sources to it, or "
                "prepare into a new folder")
    # every check passed: a last line cut short by a killed run is cut off now (the rows read left it out), so
    # that the next row appended does not join it; its source, never recorded done, is prepared again
    for name, cut in (("sources.csv", sources_cut), ("index.csv", index_cut)):
        if cut is not None:
            _cut_off(out / name, cut)
    if old is None:
        try:  # whole or not at all: a cut one stops every later run
            write_atomic(meta_p, json_text(meta))
        except OSError as e:
            raise OutputError(f"{meta_p}: {write_failure(e)}") from None
    done = {sid for sid, st in last.items() if st == "done"}
    if len(done) < len(last):  # a failed source is tried again (a repaired file was "already done", with no tracks)
        log.info("%s: %d source(s) that failed before are tried again", out, len(last) - len(done))
    # rows of sources that never reached sources.csv (interrupted) are dropped
    keep = [r for r in idx if r["source"] in done]
    if len(keep) != len(idx):
        _rewrite(out / "index.csv", INDEX_FIELDS, keep)
    sources = iter_sources(inputs)
    counts = {"done": 0, "skipped": 0, "failed": 0, "crops": 0, "tracks": 0}
    bar = tqdm(sources, desc="prepare", unit="src", disable=not (progress and stderr_is_terminal()),
               file=sys.stderr, dynamic_ncols=True)
    for src in bar:
        sid = _source_id(src)
        if sid in done:
            counts["skipped"] += 1
            continue
        bar.set_postfix_str(src.name[:30])
        try:
            rows, nt = _write_source(src, out, extract, opt)
        except OutputError:  # the dataset cannot be written (a full disk): every source would fail alike; stop.
            raise            # Its rows are not in index.csv nor the source in sources.csv: the next run redoes it
        except Exception as e:  # noqa: BLE001 - a bad file is reported and skipped
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            with tqdm.external_write_mode(file=sys.stderr):  # the bar, where drawn, is cleared for the line
                if on_failure is not None:
                    on_failure(src, msg)
                else:
                    log.warning("%s: skipped (%s)", src, msg)
            _append(out / "sources.csv", SOURCE_FIELDS,
                    [{"source": sid, "status": "failed", "tracks": 0, "crops": 0, "message": msg}])
            counts["failed"] += 1
            continue
        if rows:
            _append(out / "index.csv", INDEX_FIELDS, rows)
        _append(out / "sources.csv", SOURCE_FIELDS,
                [{"source": sid, "status": "done", "tracks": nt, "crops": len(rows), "message": ""}])
        counts["done"] += 1
        counts["crops"] += len(rows)
        counts["tracks"] += nt
    return counts
