"""Small file utilities shared by export, engines, data tools and the outputs (no torch, no NumPy)."""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

__all__ = ["json_safe", "json_text", "json_text_fields", "sha256_file", "text_name", "file_id", "temp_path",
           "write_atomic", "name_max", "name_length", "hidden_name",
           "replace_retrying", "REPLACE_WAITS",
           "write_failure", "name_key", "caseless_note", "names_caseless", "CASELESS_NAMES",
           "match_umask", "check_can_create", "unread_pictures", "visible_files", "walk_once", "IMAGE_SUFFIXES",
           "UNREAD_PICTURE_SUFFIXES", "VIDEO_SUFFIXES", "Busy", "lock_file", "unlock_file", "lock_name",
           "pid_alive", "pid_alive_windows", "fsync_file", "fsync_dir"]

log = logging.getLogger(__name__)

#: still-image file suffixes every folder reader accepts (lower case; OpenCV reads them all, AVIF where its build
#: has the codec, as the pip wheels since 4.11 do). ``.jfif`` and ``.jpe`` are JPEG (a browser's download, old
#: Windows software), which folders left out without a word. An image folder also reads ``.gif`` (its first frame)
#: where OpenCV decodes GIF (4.12 on: ``realtime.sources.images.folder_suffixes``)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".avif", ".jfif", ".jpe")
#: picture files that are not read (OpenCV decodes none of them: a phone's HEIC/HEIF, cameras' raw formats); the
#: errors for such a file, or a folder of them, say to convert them
UNREAD_PICTURE_SUFFIXES = (".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf")
#: video file suffixes a folder is searched for (explicitly named files are taken whatever their suffix)
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                  ".mts", ".m2ts", ".3gp", ".ogv", ".mxf")


def text_name(name: Union[str, "os.PathLike[str]"]) -> str:
    """A path, a file name or any string as text that every UTF-8 writer and JSON reader takes: the one rule of the
    CSV's ``file`` column, the Parquet ``video`` column, ``batch.json`` and the sidecars (:func:`json_text_fields`).
    Valid text is kept as it is, non-ASCII too, whatever the file system's encoding (``café`` stays ``café``, also
    where names are read as Latin-1; not normalised: on Linux an NFD ``Zoe\\u0308.png`` and an NFC ``Zo\\u00eb.png``
    are two files, and the CSV's ``file`` column must open the one it names; docs/csv.md). Only what is not valid
    text is escaped: a lone surrogate, which is how Python keeps a name's bytes that are not UTF-8 (``caf\\udce9``),
    becomes the bytes the file system encodes it to as ``\\xNN`` (``caf\\xe9``: C-style unescaping gives the name's
    bytes back), or ``\\uXXXX`` where it encodes to none."""
    s = os.fspath(name)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    out = []
    for c in s:
        if not "\ud800" <= c <= "\udfff":
            out.append(c)
            continue
        try:
            out.append("".join(f"\\x{b:02x}" for b in os.fsencode(c)))
        except UnicodeError:  # a surrogate no byte of a name made
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)


def json_text_fields(obj: Any) -> Any:
    """``obj`` with every string in it, at any depth (dict keys too; paths as their text), as :func:`text_name` has
    it: what ``batch.json`` and every sidecar hold, so that no JSON file holds a lone surrogate (jq, Node and other
    readers turn one into U+FFFD) and every name is spelled alike in all of them. Tuples become lists; anything
    else is left as it is."""
    if isinstance(obj, str):
        return text_name(obj)
    if isinstance(obj, dict):
        return {(text_name(k) if isinstance(k, str) else k): json_text_fields(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_text_fields(v) for v in obj]
    if isinstance(obj, os.PathLike):
        path = os.fspath(obj)
        return text_name(path) if isinstance(path, str) else obj
    return obj


def file_id(path: Union[str, Path]) -> Optional[Tuple[int, int]]:
    """``(st_dev, st_ino)`` of an existing file or folder (links followed): its identity however its path is spelled
    (a case variant or an NFD spelling on macOS and Windows, a hard link, a bind mount); None where it does not exist
    or cannot be looked at, or where the file system gives no inode number (0): compare paths there."""
    import os

    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if st.st_ino else None


def name_max(folder: Union[str, Path]) -> int:
    """The longest file name the file system of ``folder`` (or of its nearest existing parent) takes: its
    ``NAME_MAX`` (``os.pathconf``), else 255 (Windows, where :func:`name_length` counts UTF-16 code units as NTFS
    does; a file system that sets no limit)."""
    d = Path(folder)
    try:
        while not d.exists() and d != d.parent:
            d = d.parent
        limit = os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows), no such setting, no folder to start from
        return 255
    return limit if limit > 0 else 255  # (-1: no limit)


def name_length(name: str) -> int:
    """How long the file name ``name`` is as :func:`name_max` counts: bytes of its file system encoding, UTF-16
    code units on Windows (NTFS, exFAT, FAT's long names)."""
    if sys.platform == "win32":
        return len(name.encode("utf-16-le", "surrogatepass")) // 2
    return len(os.fsencode(name))


def hidden_name(path: Union[str, Path], tail: str) -> Path:
    """The hidden file ``.NAME{tail}`` beside ``path`` (``NAME`` its name); where that is longer than the folder's
    file system allows (:func:`name_max`: a name that fits itself, near the limit), ``.{12 hex}{tail}`` instead,
    the hex the start of the sha1 of the name's bytes: as hidden, and one name per ``path`` all the same."""
    p = Path(path)
    long = f".{p.name}{tail}"
    if name_length(long) <= name_max(p.parent):
        return p.with_name(long)
    return p.with_name(f".{hashlib.sha1(os.fsencode(p.name)).hexdigest()[:12]}{tail}")


def temp_path(path: Union[str, Path]) -> Path:
    """A hidden temporary name beside ``path`` that no other process or thread picks (pid and a random part), for
    writing a file whole and then ``os.replace``-ing it into place: two writers of one file with a fixed ``.tmp``
    name removed each other's (one batch's summary failed to write after the whole corpus had run).

    ``.NAME.<pid>-<8 hex>.tmp``; where that is too long for the file system (a ``NAME`` within about 20 bytes of
    its limit: each output's name was checked to fit, and then its sidecar could not be written, "File name too
    long"), ``.<12 hex>.<pid>-<8 hex>.tmp`` (:func:`hidden_name`), still hidden and still ending
    ``.<pid>-<8 hex>.tmp``."""
    import uuid

    return hidden_name(path, f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


#: seconds :func:`replace_retrying` waits before each further try of ``os.replace`` on Windows (about 1.5 s in all)
REPLACE_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8)


def replace_retrying(src: Union[str, Path], dst: Union[str, Path], waits: Tuple[float, ...] = REPLACE_WAITS,
                     retry: Optional[bool] = None) -> None:
    """``os.replace(src, dst)``, tried again after each of ``waits`` seconds while it raises ``PermissionError``
    where ``retry`` (default: on Windows, where another program holding ``dst`` open, a log viewer, an antivirus
    scan, pandas mid-read, lets go within moments); the last ``PermissionError`` is raised (at once where not
    ``retry``: elsewhere it is a folder that cannot be written). Callers turn it into their own error."""
    import os
    import time

    if retry is None:
        retry = sys.platform == "win32"
    for wait in (*waits, None):
        try:
            os.replace(src, dst)
            return
        except PermissionError:
            if wait is None or not retry:
                raise
            time.sleep(wait)


def write_atomic(path: Union[str, Path], text: str, newline: Optional[str] = None) -> None:
    """Write ``text`` to ``path`` whole or not at all: through a temporary file of its own (:func:`temp_path`),
    then ``os.replace``. On an error (a full disk) the temporary file is removed and the error raised; ``path`` is
    as it was. ``newline`` as ``open``'s: ``""`` for CSV text, whose ``\\r\\n`` line ends Windows would otherwise
    write as ``\\r\\r\\n``."""
    import contextlib
    import errno

    p = Path(path)
    tmp = temp_path(p)
    try:
        tmp.write_text(text, encoding="utf-8", newline=newline)
        replace_retrying(tmp, p)  # (Windows: another program holding the file open lets go within moments)
    except UnicodeEncodeError as e:  # a name that is not text (a Linux file name's bytes) in a table: no OSError
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OSError(errno.EILSEQ, f"cannot be written as UTF-8 text ({e.reason} at character {e.start})",
                      str(p)) from None
    except BaseException as e:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a failed write names no file: name the one being
            e.filename = str(p)                            # written (callers report it)
        raise


#: where a folder cannot be probed (:func:`names_caseless`): whether the platform's usual file systems compare names
#: without case (macOS's APFS and HFS+, Windows' NTFS: there `Clip.csv` and `clip.csv` are one file)
CASELESS_NAMES = sys.platform in ("darwin", "win32", "cygwin")


def names_caseless(folder: Union[str, Path, None]) -> bool:
    """Whether the file system that holds ``folder`` (or its nearest existing parent) compares names without case,
    probed with a temporary file: on Linux a FAT or exFAT drive, an SMB share or a case-folding ext4 folder do, a
    case-sensitive APFS volume does not. :data:`CASELESS_NAMES` where it cannot be probed (``folder`` None, not
    writable)."""
    import os
    import tempfile

    if folder is None:
        return CASELESS_NAMES
    try:  # (abspath of a relative folder needs the current one, which may have been deleted: said elsewhere)
        d = Path(os.path.abspath(folder))
        while not d.is_dir() and d != d.parent:
            d = d.parent
        fd, probe = tempfile.mkstemp(prefix=".facecycle-CaseProbe-", dir=d)
    except OSError:
        return CASELESS_NAMES
    try:
        os.close(fd)
        return os.path.exists(os.path.join(os.path.dirname(probe), os.path.basename(probe).swapcase()))
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def name_key(name: str, caseless: bool) -> str:
    """``name`` as a file system compares it: in Unicode's composed form (NFC) and lower case where it compares
    names without case (``caseless``, :func:`names_caseless`: macOS's APFS and HFS+, which also compare ``Zoë``
    composed and decomposed as one name; Windows' NTFS), else as it is."""
    import unicodedata

    return unicodedata.normalize("NFC", name).lower() if caseless else name


def caseless_note(caseless: bool) -> str:
    """What an error about two outputs of one name adds where names are compared without case."""
    return ", names compared without case, as the output folder's file system does" if caseless else ""


def write_failure(e: BaseException) -> str:
    """What a failed write says in a one-line error: ``disk full`` (ENOSPC), ``disk quota exceeded`` (EDQUOT),
    ``file size limit reached`` (EFBIG: ``ulimit -f``, or the file system's largest file), else the system's own
    words (``e.strerror``; FFmpeg's errors carry an ``errno`` and ``strerror`` too), else ``str(e)``."""
    import errno

    code = getattr(e, "errno", None)
    if code == errno.ENOSPC:
        return "disk full"
    if code == errno.EDQUOT:
        return "disk quota exceeded"
    if code == errno.EFBIG:
        return "file size limit reached"
    return str(getattr(e, "strerror", None) or e)


def match_umask(path: Union[str, Path]) -> None:
    """Give a file written through a private temporary file (safetensors' writer makes it 0600: another user or a
    container could not read a shared model) the mode an ordinary ``open()`` would have: ``0o666 & ~umask``."""
    import os

    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    """The process's umask, read without setting it where Linux allows (``os.umask`` sets it process-wide, for
    every thread)."""
    import os

    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_file(path: Union[str, Path]) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Union[str, Path], want: str, what: str = "file",
                 fix: str = "re-export the model") -> None:
    """A :class:`~facecycle.errors.ModelError` (one line naming ``path``) where the sha256 of the file at ``path``
    is not ``want`` (a manifest's record; nothing is checked where it is empty), or where it cannot be read. The one
    wording of a model's graphs, weights and head: "sha256 1a2b… does not match the manifest (3c4d…); the file is
    truncated, corrupt or was replaced — ``fix``"."""
    from .errors import ModelError

    if not want:
        return
    try:
        got = sha256_file(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if got != want.lower():
        raise ModelError(f"{path}: sha256 {got[:12]}… does not match the manifest ({want[:12]}…); the file is "
                         f"truncated, corrupt or was replaced — {fix}")


def json_safe(obj: Any) -> Any:
    """``obj`` with every float that JSON cannot hold (NaN, ±infinity; Python's or NumPy's) replaced by None, in
    dicts, lists and tuples at any depth. ``json.dumps`` writes them as ``NaN``/``Infinity``, which strict readers
    (JavaScript's ``JSON.parse``, Go, R's jsonlite by default) refuse."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # a NumPy array or scalar (NumPy not imported here)
        return json_safe(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def json_text(obj: Any, indent: Optional[int] = 2) -> str:
    """``obj`` as JSON text, as every JSON file here is written: NaN and infinities as ``null`` (:func:`json_safe`),
    NumPy values as numbers, anything else JSON has no type for (paths, fractions) as its ``str``."""
    return json.dumps(json_safe(obj), indent=indent, default=str, allow_nan=False)


def walk_once(folder: Union[str, Path], follow_links: bool = False) -> Iterator[Tuple[str, List[str], List[str]]]:
    """``os.walk(folder, followlinks=follow_links)`` (top-down: ``dirs`` may be pruned in place) that enters each
    real folder once: where links are followed, a folder reached again (same ``st_dev``, ``st_ino``: a link back to
    a folder above it, ``sub/up -> ..``, or a second link to one folder) is not read again, and one warning names
    the first such link. Without it a loop was walked until the path grew too long: one class folder's 3 images
    read as 123 (``probe eval``), a folder's one video found 41 times (``batch``)."""
    import os

    seen: Dict[Tuple[int, int], str] = {}
    again: List[Tuple[str, str]] = []  # (the link's path, the folder first read under another)
    for top, dirs, files in os.walk(folder, followlinks=follow_links):
        if follow_links:
            try:
                st = os.stat(top)
            except OSError:  # gone or unreadable since it was listed: os.walk lists nothing in it either
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                again.append((top, seen[key]))
                dirs.clear()
                continue
            seen[key] = top
        yield top, dirs, files
    if again:  # one warning: the first loop (a link to a folder above it), else the first second link
        loops = [(link, first) for link, first in again if link.startswith(os.path.join(first, ""))]
        link, first = (loops or again)[0]
        more = f"; {len(again) - 1} more folder link(s) to a folder already read" if len(again) > 1 else ""
        log.warning("%s leads to %s, %s: not read again%s", text_name(link), text_name(first),
                    "a folder above it (a symlink loop)" if loops else "a folder already read (a second link to it)",
                    more)


def visible_files(folder: Union[str, Path], skip_dir: Optional[Callable[[str], bool]] = None,
                  follow_links: bool = False) -> List[Path]:
    """Every file under ``folder``, at any depth, unsorted, leaving out dot-files and dot-folders (``.DS_Store``,
    ``.ipynb_checkpoints``, macOS's ``._x.jpg``: never data) and the folders ``skip_dir(name)`` names. With
    ``follow_links``, linked folders are read, each real folder once (:func:`walk_once`)."""
    found: List[Path] = []
    for top, dirs, files in walk_once(folder, follow_links):
        dirs[:] = [x for x in dirs if not x.startswith(".") and not (skip_dir and skip_dir(x))]
        found.extend(Path(top) / f for f in files if not f.startswith("."))
    return found


def unread_pictures(folder: Union[str, Path]) -> Dict[str, int]:
    """How many files of each :data:`UNREAD_PICTURE_SUFFIXES` kind ``folder`` holds (``{".heic": 12}``; empty
    when none), for the errors that say to convert them."""
    counts: Dict[str, int] = {}
    for p in Path(folder).iterdir():
        s = p.suffix.lower()
        if s in UNREAD_PICTURE_SUFFIXES and p.is_file():
            counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def check_can_create(path: Union[str, Path]) -> None:
    """Raise :class:`~facecycle.errors.OutputError` (one line) unless a file can be made at ``path``: tried with a
    temporary file in the nearest folder that exists on the way (which also finds read-only mounts and immutable
    folders, where ``os.access`` says yes to root). For outputs written at the end of a long run, checked before
    it starts. Creates nothing that stays."""
    import os
    import tempfile

    from .errors import OutputError

    d = Path(os.path.abspath(path)).parent
    while not d.exists() and d != d.parent:
        d = d.parent
    if not d.is_dir():
        raise OutputError(f"{path}: cannot write ({d} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=d, prefix=".facecycle-write-check-"):
            pass
    except OSError as e:
        raise OutputError(f"{path}: cannot write in {d} ({e.strerror or e})") from None


class Busy(Exception):
    """Another live process holds a lock taken with :func:`lock_file`; ``holder`` is what it wrote into the lock
    file (``host``, ``pid`` and what it is writing; empty where it could not be read), ``path`` the lock file."""

    def __init__(self, path: Union[str, Path], holder: Dict[str, Any]) -> None:
        super().__init__(f"{path}: held by {_who(holder)}")
        self.path = Path(path)
        self.holder = holder

    @property
    def who(self) -> str:
        """``host H, pid P`` of the holder (``?`` for what it did not say)."""
        return _who(self.holder)


def _who(holder: Dict[str, Any]) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}"


def lock_name(path: Union[str, Path]) -> Path:
    """The hidden lock file of an output ``path``, beside it: ``.clip.csv.lock`` for ``clip.csv`` (for a folder
    output, ``.pq.lock`` beside the folder ``pq``); for a name too long for that, ``.<12 hex>.lock``
    (:func:`hidden_name`: the same for every run given ``path``; such an output was left unlocked)."""
    return hidden_name(path, ".lock")


def _read_holder(fd: int) -> Dict[str, Any]:
    """What the holder of the lock file ``fd`` wrote there; it writes it just after taking the lock, so an empty or
    partial text is read again for a moment."""
    import time

    for _ in range(25):
        try:
            holder = json.loads(os.pread(fd, 4096, 0) or b"null")
        except (OSError, ValueError):
            holder = None
        if isinstance(holder, dict):
            return holder
        time.sleep(0.02)
    return {}


#: ``flock`` errors that mean the file system has no working locks: nothing is locked there, as on Windows
_NO_LOCKS = frozenset(getattr(errno, n) for n in ("ENOLCK", "EOPNOTSUPP", "ENOTSUP", "ENOSYS") if hasattr(errno, n))


def lock_file(path: Union[str, Path], holder: Dict[str, Any], what: str = "its lock") -> Optional[int]:
    """Take the exclusive advisory lock of the file ``path`` (created as needed, its folder too): an open file
    descriptor that holds it until :func:`unlock_file` or the process's end (the OS releases a ``flock`` when the
    process dies, also when it is killed: a lock file left behind by a killed process is simply taken). ``holder``
    (plus this ``host`` and ``pid``) is written into the file as JSON, for the error of whoever finds it taken.

    Raises :class:`Busy` (with the holder's JSON) where another open file holds it: another process, or another
    run of this one. Returns None where the OS has no ``flock`` (Windows) or the file system no working locks
    (``ENOLCK``: an NFS v3 mount without its lock daemon): nothing is locked there. An ``OSError`` where
    the file cannot be made (a read-only folder): callers decide whether that matters. ``what`` names the lock in
    the :class:`~facecycle.errors.OutputError` raised where it is removed again and again as it is taken."""
    import socket

    from .errors import OutputError

    try:
        import fcntl
    except ImportError:
        return None
    p = Path(path)
    for _ in range(100):
        p.parent.mkdir(parents=True, exist_ok=True)  # another run may have removed an empty folder meanwhile
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found = _read_holder(fd)
            os.close(fd)
            raise Busy(p, found) from None
        except OSError as e:
            os.close(fd)
            if e.errno in _NO_LOCKS:  # a file system without working locks (NFS v3 without its lock daemon)
                log.debug("%s: not locked (%s)", p, e.strerror or e)
                try:
                    os.unlink(p)  # nobody can hold it there: no file is left behind
                except OSError:
                    pass
                return None
            raise
        except BaseException:
            os.close(fd)
            raise
        # the holder before may have removed the file between our open and our lock: lock the file that is there
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(p))
        except FileNotFoundError:
            same = False
        if same:
            me = {**holder, "host": socket.gethostname(), "pid": os.getpid()}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(me, default=str).encode(), 0)
            except OSError as e:  # a full disk: the lock holds all the same; the other side reads no holder
                log.debug("%s: holder not written (%s)", p, e)
            return fd
        os.close(fd)
    raise OutputError(f"{p}: cannot take {what} (removed again and again by another process)")


def unlock_file(path: Union[str, Path], fd: Optional[int]) -> None:
    """Release a lock taken with :func:`lock_file`: the lock file is removed while still held (a process that
    opened it meanwhile finds it gone and takes a new one), then closed. Never raises; None does nothing (also at
    the interpreter's exit, where a dropped run's outputs are closed: nothing is imported here)."""
    if fd is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass
    try:
        os.close(fd)
    except OSError:
        pass


def pid_alive_windows(pid: int) -> bool:
    """Whether process ``pid`` runs, on Windows: ``OpenProcess`` and ``GetExitCodeProcess`` (``STILL_ACTIVE``)."""
    import _winapi  # Windows only

    try:
        h = _winapi.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    except OverflowError:
        return True  # not a pid (cannot tell): leave its files alone
    except OSError as e:
        return getattr(e, "winerror", None) != 87  # 87: no such process; 5 (access denied) and others: alive
    try:
        return _winapi.GetExitCodeProcess(h) == 259  # STILL_ACTIVE (a handle kept open outlives its process)
    except OSError:
        return True
    finally:
        _winapi.CloseHandle(h)


def pid_alive(pid: int, windows: Optional[Callable[[int], bool]] = None) -> bool:
    """Whether process ``pid`` runs on this machine: ``os.kill(pid, 0)``, where a process of another user, or a pid
    that cannot be told, counts as alive (leave its files alone). On Windows, where signal 0 is a Ctrl+C to the
    console (``CTRL_C_EVENT``), ``windows(pid)`` (default :func:`pid_alive_windows`). The one test of whether the
    writer of a temporary is gone: the engine cache's, the batch's datasets', the export's staging folders."""
    if os.name == "nt" or sys.platform == "win32":
        return (windows or pid_alive_windows)(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, OSError):
        return True  # someone else's process (or cannot tell): leave its files alone
    return True


def fsync_file(path: Path) -> None:
    """Flush ``path``'s bytes to the disk (before a rename puts the file in place: after a power cut the name must
    not point at an empty file). Best effort: where the system cannot (a file system without it), the bytes are
    left to the system's own flush, as before, and the save goes on. On Windows the file is opened for writing
    (``FlushFileBuffers`` refuses a read-only handle: every save failed there); on POSIX read-only (a temporary
    that a restrictive umask made unwritable is still flushed)."""
    flags = (os.O_RDWR if os.name == "nt" else os.O_RDONLY) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(str(path), flags)
    except OSError as e:
        log.debug("%s: not flushed (%s)", path, e)
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _CANNOT_FLUSH:  # (EIO, ENOSPC, EDQUOT: the bytes did not reach the disk; the caller's
            raise                        # rename must not put them in place of the last good file)
        log.debug("%s: not flushed (%s)", path, e)
    finally:
        os.close(fd)


#: the errors of an fsync that this file system or handle cannot do (the bytes are left to the system's own
#: flush); any other (EIO, ENOSPC, EDQUOT) means they did not reach the disk, and is raised
_CANNOT_FLUSH = frozenset(getattr(errno, n) for n in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "EBADF", "EROFS", "EACCES",
                                                        "EPERM", "ENOSYS") if hasattr(errno, n))


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (its renames) to the disk, on POSIX (Windows cannot open a folder)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
