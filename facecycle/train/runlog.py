"""``RUN/log.csv``: one row per training step, shared by the trainers (:mod:`.trainer`, :mod:`.semisup`)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Mapping, Optional

__all__ = ["RunLog"]


class RunLog:
    """Append-only CSV of step rows whose header is the union of the keys seen so far.

    A row with a key the header lacks (e.g. ``val_acc`` on the first validation step) rewrites the file once
    with the wider header; other rows are appended. ``trim(step)`` drops rows after ``step`` (on resume, so the
    log matches the restored state exactly).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fields: Optional[List[str]] = None

    def _read(self) -> tuple[List[str], List[Dict[str, str]]]:
        if not self.path.is_file():
            return [], []
        with open(self.path, newline="") as f:
            r = csv.DictReader(f)
            return list(r.fieldnames or []), list(r)

    def append(self, row: Mapping[str, object]) -> None:
        if self._fields is None:
            self._fields = self._read()[0]
        new = [k for k in row if k not in self._fields]
        if new or not self.path.is_file():
            _, rows = self._read()
            self._fields = self._fields + new
            self._write(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields).writerow(row)

    def trim(self, step: int) -> None:
        """Keep the header and the rows with ``step`` <= ``step``."""
        if not self.path.is_file():
            return
        self._fields, rows = self._read()
        self._write([x for x in rows if x.get("step") and int(x["step"]) <= step])

    def _write(self, rows: List[Dict[str, str]]) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields or [])
            w.writeheader()
            w.writerows(rows)
