"""The JSON sidecar next to each CSV: what produced it (model, backend, detector, pose source, versions), written
and read here."""
from __future__ import annotations

import functools
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Optional, Union

from facecycle.files import json_safe, json_text, write_atomic

__all__ = ["versions", "write_sidecar", "read_sidecar", "reserve_for", "RESERVE_BYTES"]


def versions() -> Dict[str, str]:
    """Versions of the libraries that shape the numbers in the CSV, the platform (ONNX Runtime's CPU kernels
    differ by instruction set) and, where facecycle runs from a git checkout (an editable install, whose version
    number never changes), its commit (``facecycle_source``, ``-dirty`` with uncommitted changes to tracked files)."""
    out = {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()}
    for mod in ("facecycle", "numpy", "onnxruntime", "av", "cv2", "scipy"):
        try:
            m = __import__(mod)
            out[mod] = str(getattr(m, "__version__", "?"))
        except Exception:  # noqa: BLE001
            pass
    source = _source_commit()
    if source:
        out["facecycle_source"] = source
    return out


@functools.lru_cache(maxsize=1)
def _source_commit() -> Optional[str]:
    """The git commit of the checkout facecycle is imported from (``<sha>`` or ``<sha>-dirty``), or None: an
    installed wheel, no git, or not a checkout of its own."""
    import facecycle

    root = Path(facecycle.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        def git(*args: str) -> str:
            # (--no-optional-locks: `git status` refreshed the index, taking .git/index.lock, at every run: a git
            # command of the user's in that checkout at the same moment failed on the lock)
            return subprocess.run(["git", "--no-optional-locks", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=5, check=True).stdout.strip()

        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha if sha else None


#: a ``running`` sidecar is padded (JSON allows trailing white space) to at least this many bytes, so that on a full
#: disk the final one can still be written in its place: its blocks are already the file's
RESERVE_BYTES = 32 * 1024


def reserve_for(compact: int) -> int:
    """The bytes a ``running`` sidecar whose compact JSON is ``compact`` bytes is padded to: :data:`RESERVE_BYTES`,
    or, for a larger one, its compact size and half again plus half of :data:`RESERVE_BYTES`. The final sidecar grows
    with the run (about 0.52 KB a face track listed in its summary, up to about 550 KB at the summary's 1,000 tracks:
    a fixed 32 KiB held about 50), so the run rewrites its ``running`` sidecar as tracks accumulate
    (:data:`realtime.outputs.SIDECAR_TRACKS_STEP`), each time with room for the growth until the next one."""
    return max(RESERVE_BYTES, compact + compact // 2 + RESERVE_BYTES // 2)


#: a ``running`` sidecar whose compact JSON is larger than this is written compact (a checkpoint of a run of many
#: tracks: indented, Python's JSON encoder took about 0.1 s for the summary's 1,000 tracks); the final one is indented
COMPACT_RUNNING_BYTES = 64 * 1024


def write_sidecar(path: Union[str, Path], info: Dict[str, Any]) -> None:
    """Write ``info`` (plus ``versions`` and ``written_at``) atomically (temp file + rename).

    A ``running`` sidecar is padded to :func:`reserve_for` its compact size (at least :data:`RESERVE_BYTES`), and
    written compact when that is over :data:`COMPACT_RUNNING_BYTES`. Where
    the atomic write fails (a full disk or quota), the JSON, compact, is written over the existing file when it fits
    in the file's size (padded to it, so the file does not grow), and the temp file is removed; else the error is
    raised, and the existing sidecar stays as it was.
    """
    p = Path(path)
    d = dict(info)
    d.setdefault("versions", versions())
    d["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    safe = json_safe(d)
    compact: Optional[str] = None
    if d.get("status") == "running":
        compact = json.dumps(safe, default=str, allow_nan=False) + "\n"  # (as json_text(d, indent=None) writes it)
        size = len(compact.encode())
        text = compact if size > COMPACT_RUNNING_BYTES else json.dumps(safe, indent=2, default=str,
                                                                       allow_nan=False) + "\n"
        text += " " * max(0, reserve_for(size) - len(text.encode()))
    else:
        text = json_text(d) + "\n"
    try:  # a temporary name of its own: a fixed one was removed by a second writer of the same sidecar
        write_atomic(p, text)
    except OSError:
        data = (compact if compact is not None else json_text(d, indent=None) + "\n").encode()
        size = p.stat().st_size if p.is_file() else 0
        if len(data) > size:
            raise
        with open(p, "r+b") as f:  # over the file's own blocks: nothing new to allocate
            f.write(data + b" " * (size - len(data)))


def read_sidecar(path: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """The sidecar's JSON object, or None when it is missing, unreadable or not a JSON object (a torn write, a
    list or a string where the object goes: each counts as missing, so that its input is redone). Its fields' types
    are the reader's to check (:func:`realtime.batch.job.sidecar_well_typed`)."""
    p = Path(path)
    if not p.is_file():  # a folder, or a FIFO whose read would wait for a writer for ever
        return None
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        return None
    return info if isinstance(info, dict) else None
