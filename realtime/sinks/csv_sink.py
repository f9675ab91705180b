"""The per-frame CSV (one row per face per frame; see docs/csv.md for every column).

Rows of one frame are formatted completely, then written with a single
``os.write`` on an unbuffered file descriptor: a kill between frames leaves
only complete lines, and a reader sees each frame's rows as soon as it ends. A write that fails part way (a full
disk, ``ulimit -f``) is cut back to the end of the frame before, so the file holds complete lines only.
"""
from __future__ import annotations

import errno
import logging
import math
import os
import stat
import sys
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from facecycle.errors import OutputError
from facecycle.files import text_name, write_failure

from ..summary import ExpressionSummary
from ..types import EMOTIONS, Face, FramePacket
from .base import Sink, prepare_output

__all__ = ["CsvSink", "csv_columns", "format_rows"]

log = logging.getLogger(__name__)


def csv_columns(code_dim: int, file_column: bool = False) -> List[str]:
    """The CSV header for a model with ``code_dim``-d expression codes; ``file_column``: a last column ``file``,
    the image each row comes from (image folders)."""
    cols = ["frame", "face_id", "timestamp", "confidence", "success", "face_x", "face_y", "face_w", "face_h"]
    # beside the box it qualifies: how much of the face's crop lies past the frame's edge (Face.crop_outside)
    cols += ["crop_outside"]
    cols += [f"lmk_x_{i}" for i in range(5)] + [f"lmk_y_{i}" for i in range(5)]
    cols += ["pose_Rx", "pose_Ry", "pose_Rz", "expr_intensity", "emotion"]
    cols += [f"emotion_{e}" for e in EMOTIONS]
    cols += ["flow_intensity", "baseline_ready", "rel_intensity", "rel_code_dist"]
    cols += [f"rel_emotion_{e}" for e in EMOTIONS]
    cols += [f"exp_{i}" for i in range(code_dim)]
    if file_column:
        cols.append("file")
    return cols


def _file_field(packet: FramePacket) -> str:
    """``,name`` of the packet's file (``FramePacket.file``; RFC 4180 quoting where the name needs it; bytes of a
    name that are not UTF-8 as ``\\xNN``, as in Parquet)."""
    name = text_name(packet.file)
    if any(c in name for c in ',"\r\n'):
        name = '"' + name.replace('"', '""') + '"'
    return "," + name


def _f(v: float, fmt: str = "%.4f") -> str:
    v = float(v)
    return "" if not math.isfinite(v) else fmt % v


def _fs(values: np.ndarray, fmt: str) -> List[str]:
    """The cells of ``values``, each formatted as :func:`_f` formats it (not finite: an empty cell), joined by
    commas into one item (none for no values). As fast as a plain ``fmt`` where, as nearly always, every value is
    finite: ``fmt`` (``%.2f``, ``%.5f``, ``%.6g``) writes an ``n`` only for ``nan``, ``inf`` and ``-inf``."""
    vals = np.asarray(values).tolist()
    text = ",".join([fmt % v for v in vals])
    if "n" in text:
        text = ",".join([_f(v, fmt) for v in vals])
    return [text] if vals else []


def _face_row(p: FramePacket, f: Face, code_dim: int) -> str:
    b = f.box
    lm = f.landmarks
    x0, y0, x1, y1 = (float(v) for v in b[:4])  # float64: a width of float32 extremes must not overflow
    parts = [str(p.index), str(f.track_id), "%.6f" % p.timestamp, "%.4f" % f.score, "1",
             _f(x0, "%.2f"), _f(y0, "%.2f"), _f(x1 - x0, "%.2f"), _f(y1 - y0, "%.2f"), _f(f.crop_outside)]
    parts += _fs(lm[:, 0], "%.2f") + _fs(lm[:, 1], "%.2f")
    pose = f.pose if f.pose is not None else (math.nan,) * 3
    parts += _fs(pose, "%.5f")
    parts.append(_f(f.intensity, "%.6f"))
    if f.emotions is not None:
        parts.append(f.emotion or "")
        parts += _fs(f.emotions, "%.5f")
    else:
        parts += [""] * (1 + len(EMOTIONS))
    parts += [_f(f.flow_intensity, "%.6f"), "1" if f.baseline_ready else "0", _f(f.rel_intensity, "%.5f"),
              _f(f.rel_code_dist, "%.5f")]
    if f.rel_emotions is not None:
        parts += _fs(f.rel_emotions, "%.5f")
    else:
        parts += [""] * len(EMOTIONS)
    if f.code is not None:
        parts += _fs(f.code, "%.6g")
    else:
        parts += [""] * code_dim
    return ",".join(parts)


#: the cells a no-face row writes itself (frame, face_id, timestamp, confidence, success); the rest are made empty
_LEAD = csv_columns(0).index("success") + 1
_READY = csv_columns(0).index("baseline_ready")  # before the exp_* columns: the same index for every code_dim


def format_rows(packet: FramePacket, code_dim: int, file_column: bool = False) -> str:
    """All CSV lines of one frame (newline-terminated): one per face, or one ``success`` 0 row; with
    ``file_column``, each ends with the name of the frame's file (:func:`csv_columns`)."""
    end = (_file_field(packet) if file_column else "") + "\n"
    if not packet.faces:  # success 0; every cell after it empty but baseline_ready, 0 (an int column: csv.md)
        cells = [""] * (len(csv_columns(code_dim)) - _LEAD)  # crop_outside among them: no face, no crop
        cells[_READY - _LEAD] = "0"
        # confidence written as a float (its `0` made pandas read the column of a face-less file as int64, and a
        # concat of several files as object)
        return f"{packet.index},-1,{packet.timestamp:.6f},0.0000,0," + ",".join(cells) + end
    return "".join(_face_row(packet, f, code_dim) + end for f in packet.faces)


def _open_elsewhere(e: OSError) -> str:
    """What an error opening the CSV adds on Windows where the file is held by another program (``PermissionError``:
    Excel locks a CSV it has open), as ``batch`` says: else ""."""
    if sys.platform == "win32" and isinstance(e, PermissionError):
        return "; is it open in another program (a spreadsheet, a player)? close it and try again"
    return ""


class CsvSink(Sink):
    """Write the per-frame CSV.

    Args:
        path: output file (``.csv``).
        code_dim: expression code size (number of ``exp_*`` columns).
        overwrite: replace an existing file.
        file_column: end each row with the name of its frame's file (``file``: image folders).

    ``summary`` (:class:`~realtime.summary.ExpressionSummary`) follows the rows written: per track and for all
    faces, the mean emotion probabilities and the intensity's quantiles (the sidecar's ``summary``).
    """

    def __init__(self, path: Union[str, Path], code_dim: int, overwrite: bool = False,
                 file_column: bool = False) -> None:
        self.path = prepare_output(path, overwrite)
        self.code_dim = int(code_dim)
        self.file_column = bool(file_column)
        self.columns = csv_columns(self.code_dim, self.file_column)
        self.rows = 0
        self.frames = 0
        self.last_frame = -1
        self.summary = ExpressionSummary()
        #: the file's size after its last complete write (header or frame): a failed write is cut back to it
        self._end = 0
        created = not os.path.lexists(self.path)
        try:  # 0o666: the umask decides, as for every other output (0o644 ignored a umask of 002)
            # O_BINARY (Windows only): without it every "\n" was written as "\r\n", and the cut-back offsets were off
            self._fd: Optional[int] = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                              | getattr(os, "O_BINARY", 0), 0o666)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot write ({e.strerror or e}){_open_elsewhere(e)}") from None
        try:
            self._write((",".join(self.columns) + "\n").encode())
        except OutputError:  # not even the header: no CSV (an empty file made here would block the next run)
            self.close()
            if created:
                try:
                    if self.path.is_file() and self.path.stat().st_size == 0:
                        self.path.unlink()
                except OSError as e:
                    log.warning("%s: the empty CSV was not removed (%s)", self.path, e)
            raise

    def _write(self, data: bytes) -> None:
        """Write ``data`` whole (one ``os.write``, more only after a short write) or not at all: a write that fails
        part way (a full disk, a file size limit) is cut back to the end of the last complete write, so the file
        holds only complete lines and the sidecar's counts match it."""
        if self._fd is None:
            raise OutputError(f"{self.path}: already closed")
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as e:
            self._cut_back()
            done = (f"rows up to frame {self.last_frame} are complete" if self.frames else "no rows written")
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise OutputError(f"{self.path}: {write_failure(e)} ({done})") from None
            raise OutputError(f"{self.path}: write failed ({e.strerror or e}; {done})") from None
        self._end += len(data)

    def _cut_back(self) -> None:
        """Truncate the file to the end of its last complete write (a regular file: not ``/dev/full`` or a pipe)."""
        assert self._fd is not None
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                return
            if st.st_size > self._end:
                os.ftruncate(self._fd, self._end)  # shrinking needs no free space
            os.lseek(self._fd, self._end, os.SEEK_SET)
        except OSError as e:
            log.warning("%s: the part of a line written before the error was not removed (%s): drop a last line "
                        "without a newline", self.path, e)

    def write(self, packet: FramePacket) -> None:
        text = format_rows(packet, self.code_dim, self.file_column)
        self._write(text.encode())
        self.rows += max(1, len(packet.faces))
        self.frames += 1
        self.last_frame = packet.index
        self.summary.add(packet)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass
