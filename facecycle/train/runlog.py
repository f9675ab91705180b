"""``RUN/log.csv``: one row per training step, shared by the trainers (:mod:`.trainer`, :mod:`.semisup`)."""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from ..errors import InputError, OutputError
from ..files import write_atomic, write_failure

__all__ = ["RunLog"]

log = logging.getLogger(__name__)


class RunLog:
    """Append-only CSV of step rows whose header is the union of the keys seen so far.

    A row with a key the header lacks (e.g. ``val_acc`` on the first validation step) rewrites the file once
    with the wider header; other rows are appended. ``trim(step)`` drops rows after ``step`` (on resume, so the
    log matches the restored state exactly). A last line without its line end, the row a killed run cut short, is
    dropped with a warning (a row cut inside its step, ``12`` of ``1200``, was kept as step 12). A log that cannot
    be read back (not a file, not UTF-8, a first line without ``step``, a row whose step is no step number) is an
    :class:`~facecycle.errors.InputError` naming it; :meth:`check` says so before a resume writes anything.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fields: Optional[List[str]] = None

    def _damaged(self, why: str) -> InputError:
        return InputError(f"{self.path}: damaged training log ({why}); repair or remove it")

    def _read(self) -> Tuple[List[str], List[Dict[str, str]], bool]:
        """The header, the rows, and whether a last line cut short was left out (the file is not changed here:
        :meth:`check` writes nothing)."""
        if not self.path.exists() and not self.path.is_symlink():
            return [], [], False
        try:
            data = self.path.read_bytes()  # a directory in its place: OSError (it failed after the checkpoint)
        except OSError as e:
            raise self._damaged(f"cannot read: {e.strerror or e}") from None
        cut = bool(data) and not data.endswith(b"\n")
        if cut:  # every row is written whole with its line end: a last line without one is a killed run's
            data = data[: data.rfind(b"\n") + 1]
            log.warning("%s: its last line was cut short (a run stopped while writing it): dropped", self.path)
        try:
            r = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
            fields, rows = list(r.fieldnames or []), []
            # the header before the rows: a log without it reported its first row as "line 2: step None"
            if fields and "step" not in fields:
                raise self._damaged("its first line is not the header: no step column")
            for row in r:
                step = row.get("step")
                if step is None or not step.isdigit():  # trim compares steps: a text one was a ValueError
                    raise self._damaged(f"line {r.line_num}: step {step!r} is not a step number")
                rows.append(row)
        except UnicodeDecodeError as e:
            raise self._damaged(f"not UTF-8 text at byte {e.start}") from None
        except csv.Error as e:
            raise self._damaged(str(e)) from None
        return fields, rows, cut

    def check(self) -> None:
        """Raise the :class:`~facecycle.errors.InputError` a damaged log would raise later, before anything is
        written (a resume checks it first: it rewrote the checkpoint, then failed on the log)."""
        self._read()

    def append(self, row: Mapping[str, object]) -> None:
        rows: Optional[List[Dict[str, str]]] = None
        cut = False
        if self._fields is None:
            self._fields, rows, cut = self._read()
        new = [k for k in row if k not in self._fields]
        if new or cut or not self.path.is_file():  # (a cut last line is written off first: the row would join it)
            if rows is None:
                _, rows, _ = self._read()
            self._fields = self._fields + new
            self._write(rows)
        try:
            with open(self.path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=self._fields).writerow(row)
        except OSError as e:
            raise OutputError(f"{self.path}: {write_failure(e)}") from None

    def trim(self, step: int) -> None:
        """Keep the header and the rows with ``step`` <= ``step``."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        self._fields, rows, _ = self._read()
        self._write([x for x in rows if int(x["step"]) <= step])

    def _write(self, rows: List[Dict[str, str]]) -> None:
        """Replace the file at once (a new one renamed over it, :func:`~facecycle.files.write_atomic`): a failed
        rewrite kept no row of the old."""
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=self._fields or [])
        w.writeheader()
        w.writerows(rows)
        try:
            write_atomic(self.path, buf.getvalue(), newline="")
        except OSError as e:
            raise OutputError(f"{self.path}: {write_failure(e)}") from None
