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
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, OutputError
from ..files import IMAGE_SUFFIXES, VIDEO_SUFFIXES, write_failure
from ..imageio import write_image
from ..terminal import stderr_is_terminal

__all__ = ["FRAMING", "PrepareOptions", "prepare_dataset", "iter_sources", "read_index", "VIDEO_EXTS", "IMAGE_EXTS",
           "Extract", "OnFailure"]

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


def _read_csv(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_index(dataset: Path) -> List[Dict[str, str]]:
    """Rows of ``DATASET/index.csv`` (empty list when absent)."""
    return _read_csv(Path(dataset) / "index.csv")


def _append(path: Path, fields: List[str], rows: List[Dict]) -> None:
    """Append ``rows`` to the CSV at ``path`` (its header first where it is new); a failed write is an
    :class:`~facecycle.errors.OutputError` naming the file (``disk full``: :func:`facecycle.files.write_failure`)."""
    new = not path.is_file()
    try:
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            if new:
                w.writeheader()
            w.writerows(rows)
            f.flush()
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
    if meta_p.is_file():
        old = json.loads(meta_p.read_text())
        if old.get("size") != opt.size or abs(float(old.get("scale", 0)) - opt.scale) > 1e-9:
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
    else:
        try:
            meta_p.write_text(json.dumps(meta, indent=2))
        except OSError as e:
            raise OutputError(f"{meta_p}: {write_failure(e)}") from None
    last = {r["source"]: r["status"] for r in _read_csv(out / "sources.csv")}  # a source's latest attempt
    done = {sid for sid, st in last.items() if st == "done"}
    if len(done) < len(last):  # a failed source is tried again (a repaired file was "already done", with no tracks)
        log.info("%s: %d source(s) that failed before are tried again", out, len(last) - len(done))
    # rows of sources that never reached sources.csv (interrupted) are dropped
    idx = _read_csv(out / "index.csv")
    keep = [r for r in idx if r["source"] in done]
    if len(keep) != len(idx):
        (out / "index.csv").unlink()
        if keep:
            _append(out / "index.csv", INDEX_FIELDS, keep)
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
