"""What a batch has to do: the inputs (files, folders, globs, ``@list.txt``), where each one's outputs go,
the settings fingerprint, and which inputs are already complete."""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from facecycle.errors import InputError, OutputError, UsageError
from facecycle.files import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    caseless_note,
    file_id,
    name_key,
    names_caseless,
    text_name,
    unread_pictures,
    walk_once,
)

from ..sources.video import local_path, url_scheme
from .job import PARTIAL_DIR, BatchSettings, outputs_complete

__all__ = ["VIDEO_SUFFIXES", "BatchItem", "collect_inputs", "settings_fingerprint", "item_fingerprint",
           "url_output_path", "url_name", "url_validators", "served_file_changed", "URL_VALIDATORS", "is_complete"]

log = logging.getLogger(__name__)

_GLOB_CHARS = set("*?[")


@dataclass
class BatchItem:
    """One input: ``path`` absolute (symlinks kept, so mirrored names stay the user's), or a served file's URL
    (a string); ``rel`` its path relative to the batch root (a URL's: ``HOST/PATH``), mirrored under
    ``--out-dir``; ``error`` set when it cannot be submitted."""

    path: Union[Path, str]
    rel: Path
    error: Optional[str] = None


#: URL schemes a batch reads: files served over HTTP(S) or FTP (they end; a live stream would run for ever)
BATCH_URL_SCHEMES = ("http", "https", "ftp")


def _url_host_and_path(url: str) -> Tuple[str, List[str]]:
    """A URL's host (``host_port`` with a port) and its path's parts (query and fragment dropped)."""
    from urllib.parse import unquote, urlsplit

    u = urlsplit(url)
    # on Windows both separators (`..%5C..%5Cx.mp4` reached two folders above --out-dir there, `C%3A%5Cx.mp4` the
    # drive's root), and characters no Windows name may hold made safe; elsewhere the names stay as they were (a
    # colon, common in object stores' keys, is a plain character there)
    if _WINDOWS:
        parts = [_safe_part(p) for p in re.split(r"[/\\]", unquote(u.path)) if p not in ("", ".", "..")]
    else:  # control characters made safe everywhere (a `%00` was an internal error, "embedded null byte")
        parts = [re.sub(r"[\x00-\x1f]", "_", p) for p in unquote(u.path).split("/") if p not in ("", ".", "..")]
    try:
        port = u.port
    except ValueError:  # not a number: left to the reader to refuse
        port = None
    host = (u.hostname or "host").replace(":", "_")  # an IPv6 address's colons
    if set(host) <= {"."}:  # `http://../x.mp4`: the host `..` put the outputs beside --out-dir
        host = "host"
    return host + (f"_{port}" if port else ""), parts


#: URL paths made Windows file names (:func:`_safe_part`) on Windows only
_WINDOWS = os.name == "nt"
#: names Windows reserves for devices (with any suffix: `con.csv` is the console there)
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def _safe_part(part: str) -> str:
    """One part of a URL's path as a file or folder name on every system: ``: * ? " < > |`` and control characters
    as ``_``, a Windows device name (``con``, ``nul``, ``com1``, … with any suffix) prefixed with ``_``."""
    part = re.sub(r'[:*?"<>|\x00-\x1f]', "_", part)
    return "_" + part if part.split(".")[0].lower() in _RESERVED else part


def url_output_path(url: str) -> Path:
    """``HOST/PATH`` of a URL (query and fragment dropped), where its outputs go under ``--out-dir``."""
    host, parts = _url_host_and_path(url)
    return Path(host, *parts) if parts else Path(host, "stream")


def url_stem(url: str) -> str:
    """The outputs' name of a URL input (``process``): its path's last part without its suffix (``clip`` of
    ``https://h/a/clip.mp4?v=2``), or, where it has no path, its host and port (``10.0.0.5_554`` of
    ``rtsp://10.0.0.5:554/``: a host's dots are no suffix; ``127.0.0.csv`` lost the port and part of the address,
    and two cameras at 10.0.0.5 and 10.0.0.6 wrote the same files)."""
    host, parts = _url_host_and_path(url)
    if not parts:
        return host
    return Path(parts[-1]).stem if Path(parts[-1]).suffix else parts[-1]


def url_name(url: str) -> str:
    """The name of a URL's input: its path's last part (``clip.mp4`` of ``https://h/a/clip.mp4?v=2``), or its host
    where it has no path (``cam1`` of ``rtsp://cam1/``)."""
    host, parts = _url_host_and_path(url)
    return parts[-1] if parts else host


def _is_out_dir(d: Path, out_dir: Optional[Path], out_id: Optional[Tuple[int, int]]) -> bool:
    """Whether the folder ``d`` is the output folder ``out_dir``: by identity (``out_id``, its
    :func:`~facecycle.files.file_id`) where both exist, else by path. Paths alone missed the output folder spelled
    otherwise (``~/Videos/out`` given as ``~/videos/out`` on macOS, where both are one folder)."""
    if out_dir is None:
        return False
    if d == out_dir:
        return True
    return out_id is not None and file_id(d) == out_id


def _annotated_output(f: Path, out_dir: Optional[Path], out_id: Optional[Tuple[int, int]] = None) -> bool:
    """Whether ``f`` is an annotated video this tool wrote under ``out_dir`` (``clip.annotated.mp4``): never an
    input, also where the output folder is the input folder or lies under a pattern's reach. ``out_id``: the
    output folder's :func:`~facecycle.files.file_id`, to find it however ``f``'s folders are spelled."""
    if out_dir is None or Path(f.stem).suffix != ".annotated":
        return False
    if f.parent == out_dir or out_dir in f.parents:
        return True
    return out_id is not None and any(file_id(q) == out_id for q in f.parents)


def _expand(spec: str, out_dir: Optional[Path], origin: str,
            out_id: Optional[Tuple[int, int]] = None) -> List[Tuple[Path, Path, Optional[str]]]:
    """(file, root it is mirrored from, error) for one spec; ``error`` for a missing path or an empty pattern.
    ``out_id``: the output folder's :func:`~facecycle.files.file_id` (None: not made yet)."""
    if _GLOB_CHARS & set(spec) and not Path(spec).exists():
        hits = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        if not hits:
            p = Path(os.path.abspath(spec))
            return [(p, p.parent, f"{spec}: no file matches this pattern{origin}")]
        # the output folder is not searched where the pattern names it (its annotated videos are never inputs)
        hits = [h for h in hits if not _is_out_dir(Path(os.path.abspath(h)), out_dir, out_id)]
        return [t for h in hits for t in _expand(h, out_dir, origin, out_id)]
    p = Path(os.path.abspath(os.path.expanduser(spec)))
    if p.is_dir():
        found: List[Tuple[Path, Path, Optional[str]]] = []
        # each real folder once: a link back up (`sub/up -> ..`) found a folder's one video 41 times
        for dirpath, dirnames, filenames in walk_once(p, follow_links=True):
            d = Path(dirpath)
            # hidden folders (our own .facecycle-partial among them) and the output folder are not inputs
            dirnames[:] = sorted(n for n in dirnames if not n.startswith(".")
                                 and not _is_out_dir(d / n, out_dir, out_id))
            for name in sorted(filenames):
                if (not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES
                        and not _annotated_output(d / name, out_dir, out_id)):
                    found.append((d / name, p, None))
        if not found:
            images = sum(1 for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            hint = (f"; it holds {images} image{'s' * (images != 1)}: `facecycle process {spec}` reads an image "
                    "folder (as a video's frames or as separate photos, --images)") if images else ""
            unread = sum(unread_pictures(p).values())
            if unread:
                hint += (f"; it holds {unread} picture{'s' * (unread != 1)} of a kind not read here (a phone's HEIC "
                         "or a camera's raw files): convert them to JPEG or PNG, then `facecycle process` the folder")
            log.warning("%s: no videos (%s, ...) in this folder%s", spec, ", ".join(VIDEO_SUFFIXES[:6]), hint)
        return found
    if not p.exists():
        return [(p, p.parent, f"{spec}: no such file or folder{origin}")]
    if _annotated_output(p, out_dir, out_id):
        log.info("%s: an annotated video of this output folder, not an input", spec)
        return []
    return [(p, p.parent, None)]


def read_input_list(spec: str) -> List[str]:
    """The paths and URLs of an input list, ``spec`` = ``@list.txt`` (:func:`list_entries`, without where each came
    from); :class:`~facecycle.errors.InputError` for one that cannot be read."""
    return [entry for entry, _ in list_entries(spec)]


def _list_path(line: str, base: Path) -> str:
    """A list's line as a path or URL: a relative path joined to the list's folder ``base``."""
    return line if os.path.isabs(os.path.expanduser(line)) or url_scheme(line) else str(base / line)


def _names_file(line: str, base: Path) -> bool:
    """Whether a list's line, as it stands, names a file or folder that exists (a link too, dangling or not)."""
    if not line or url_scheme(line):
        return False
    try:
        return os.path.lexists(os.path.expanduser(_list_path(line, base)))
    except (OSError, ValueError):  # a name too long; a character no path holds
        return False


def _line_texts(raw: bytes) -> Tuple[Optional[str], List[str]]:
    """A list line's bytes as UTF-8 text (None where they are not UTF-8), and every reading of them as a path, the
    file system's own first: :func:`os.fsdecode` names the file whose name has these very bytes (``caf\\xe9.mp4``,
    Latin-1, on Linux: kept as surrogates, as a folder's walk finds it), then the UTF-8 text, then the locale's
    encoding (a list saved as "ANSI" on Windows)."""
    import locale

    try:
        text: Optional[str] = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    readings: List[str] = []
    for decode in (os.fsdecode, lambda b: b.decode("utf-8"), lambda b: b.decode(locale.getpreferredencoding(False))):
        try:
            r = decode(raw)
        except (UnicodeDecodeError, LookupError):
            continue
        if r not in readings:
            readings.append(r)
    return text, readings


def list_entries(spec: str) -> List[Tuple[str, str]]:
    """The paths and URLs of an input list, ``spec`` = ``@list.txt``, each with where it came from (the words an
    error about it ends with: ``" (listed in list.txt)"``); :class:`~facecycle.errors.InputError` for a list that
    cannot be read.

    One path or URL a line, paths relative to the list's folder; blank lines are skipped. A line is read as the
    file it names, as it stands (only its line end, ``\\n`` or ``\\r\\n``, taken off): a name with leading or
    trailing spaces, or one that starts with ``#`` (``#1 interview.mp4``, as ``ls > list.txt`` lists it), is that
    file where it exists. Otherwise its surrounding white space is dropped (an editor's trailing spaces, an indent),
    and a line starting with ``#`` is a comment. The list is UTF-8 (a byte-order mark, as Notepad writes, is
    dropped; a UTF-16 list, as PowerShell's ``>`` writes, is read too); a line whose bytes are not UTF-8 is read as
    the file system reads names (:func:`os.fsdecode`: a file whose name is not UTF-8, listed by ``find``), and
    where it names no file, its input fails with the line's number and the advice to save the list as UTF-8."""
    import codecs

    path = Path(os.path.expanduser(spec[1:]))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read the input list ({e.strerror or e})") from None
    if data.startswith(codecs.BOM_UTF8):  # a list saved by Notepad starts with a byte-order mark
        data = data[len(codecs.BOM_UTF8):]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # PowerShell 5's `ls > list.txt`
        try:
            data = data.decode("utf-16").encode("utf-8", "surrogatepass")
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: cannot read the input list (it starts as UTF-16 text, but {e}); save it "
                             "as UTF-8") from None
    base = path.parent
    origin = f" (listed in {spec[1:]})"
    out: List[Tuple[str, str]] = []
    # lines end with \n (or \r\n); a list with \r alone (classic Mac OS) at \r. Nothing else ends a line: a
    # name may hold any other character (str.splitlines also split at \x0b, \x1c, \u2028, ...)
    lines = data.split(b"\n") if b"\n" in data else data.split(b"\r")
    for n, raw in enumerate(lines, 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\0" in raw:  # no path holds one (it was an internal error, "embedded null byte")
            raise InputError(f"{path}: line {n} holds a NUL byte: not a list of paths (one path or URL per line)")
        text, readings = _line_texts(raw)
        shown = text if text is not None else readings[0] if readings else raw.decode("latin-1")
        if not shown.strip():
            continue
        # the file the line names as it stands; else without trailing, then without any surrounding white space
        found = next((c for r in readings for c in dict.fromkeys((r, r.rstrip(), r.strip())) if _names_file(c, base)),
                     None)
        if found is not None:
            if found.startswith("#") and _names_file(found[1:].strip(), base):
                log.warning("%s: line %d, %s, names a file and is read as one, not as a comment; %s exists too",
                            path, n, text_name(found), text_name(found[1:].strip()))
            out.append((_list_path(found, base), origin))
            continue
        line = shown.strip()
        if line.startswith("#"):  # a comment (it names no file)
            continue
        if text is None:  # not UTF-8, and the file system's reading of it names no file either
            line = (readings[0] if readings else shown).strip()
            out.append((_list_path(line, base), f" (line {n} of {spec[1:]} is not UTF-8 text, and as the file "
                                                 "system reads names it names no file: save the list as UTF-8)"))
            continue
        out.append((_list_path(line, base), origin))
    return out


def collect_inputs(specs: Iterable[str], out_dir: Optional[Union[str, Path]] = None,
                   root: Optional[Union[str, Path]] = None) -> Tuple[List[BatchItem], List[Dict[str, Any]]]:
    """Resolve command-line inputs into batch items.

    Args:
        specs: files, folders (searched recursively for :data:`VIDEO_SUFFIXES`), glob patterns, served files'
            URLs (http, https, ftp), and ``@list.txt`` files (one path or URL per line, paths relative to the
            list's folder; ``#`` comments).
        out_dir: the output folder (never searched for inputs).
        root: mirror the outputs relative to this folder; default: the deepest folder that holds every input
            (a folder input counts as itself, a file as its folder), so a single file's outputs land directly
            in ``out_dir`` as with ``facecycle process``.

    Returns:
        (items in command-line order, duplicates: ``{"input", "count"}`` for paths given more than once
        (the same file under two names counts once: files are compared by device and inode, a missing path by its
        real path)). Items of missing paths carry
        ``error``.

    Raises:
        UsageError: two inputs would write the same outputs (``a.mp4`` and ``a.mov`` in one folder), an
            input lies outside ``root``, or an input is a live stream's URL (a served file's, ``http(s)://`` or
            ``ftp://``, is an input: its outputs go under ``HOST/PATH``).
        OutputError: the current folder was deleted and a path is relative to it (it was an internal error).
    """
    specs = list(specs)
    try:
        os.getcwd()
    except FileNotFoundError:
        rel = [str(x) for x in [*specs, out_dir, root] if x is not None and not url_scheme(str(x))
               and not os.path.isabs(os.path.expanduser(str(x).lstrip("@")))]
        if rel:
            raise OutputError(f"{rel[0]}: the current folder no longer exists (deleted?); cd to a folder "
                              "that exists, or give absolute paths") from None
    out = Path(os.path.abspath(out_dir)) if out_dir is not None else None
    out_id = file_id(out) if out is not None else None  # the output folder however a walk spells it
    pairs: List[Tuple[Path, Path, Optional[str]]] = []
    urls: List[str] = []  # served files: outputs under HOST/PATH
    refused: List[str] = []  # live streams: a batch task must end
    for spec in specs:
        listed = spec.startswith("@")
        entries = list_entries(spec) if listed else [(spec, "")]
        for entry, origin in entries:
            entry = local_path(entry)  # a file:// URL is its local path, as `facecycle process` reads it
            if url_scheme(entry):
                if url_scheme(entry) in BATCH_URL_SCHEMES:
                    urls.append(entry)
                else:
                    refused.append(entry + origin)
            else:
                try:
                    pairs += _expand(entry, out, origin, out_id)
                except OSError as e:  # a name too long for the file system (it was an internal error that printed
                    shown = entry if len(entry) <= 120 else f"{entry[:100]}... ({len(entry)} characters)"  # all of it)
                    p = Path(os.path.abspath(entry))
                    pairs.append((p, p.parent, f"{shown}: {e.strerror or e}{origin}"))
    if refused:
        more = f" and {len(refused) - 1} more URL{'s' * (len(refused) > 2)}" if len(refused) > 1 else ""
        raise UsageError(f"{refused[0]}{more}: batch reads files, folders and served files "
                         f"({', '.join(s + '://' for s in BATCH_URL_SCHEMES)}), not live streams, which never end; "
                         "`facecycle process URL` reads a stream")
    # duplicates: by identity (device and inode) where the file exists, else by real path: symlinks, ../
    # spellings, hard links of one file, and on macOS and Windows its case variants (`Clip.mp4`, `clip.mp4`)
    seen: Dict[Any, int] = {}
    counts: Dict[Any, int] = {}
    unique: List[Tuple[Path, Path, Optional[str]]] = []
    for f, r, e in pairs:
        key: Any = file_id(f) or os.path.realpath(f)
        if key in seen:
            counts[key] = counts.get(key, 1) + 1
            continue
        seen[key] = len(unique)
        unique.append((f, r, e))
    duplicates = [{"input": str(unique[seen[k]][0]), "count": n} for k, n in counts.items()]
    if root is not None:
        base = Path(os.path.abspath(root))
    else:
        # where the inputs that exist lie (a missing path is reported, and must not move every output)
        roots = sorted({str(r) for _, r, e in unique if e is None}) or sorted({str(r) for _, r, _ in unique})
        try:
            base = Path(os.path.commonpath(roots)) if roots else Path.cwd()
        except ValueError:  # different drives (Windows): a file on D: was "not under --root C:\\"
            raise UsageError("the inputs lie on different drives (" + ", ".join(sorted({Path(r).anchor for r in roots}))
                             + "): give --root, or run one batch per drive") from None
    items: List[BatchItem] = []
    claimed: Dict[Tuple[str, str], Union[Path, str]] = {}
    caseless = names_caseless(out)  # as the output folder's file system compares names
    located: List[Tuple[Union[Path, str], Path, Optional[str]]] = []
    for f, _, e in unique:
        try:
            located.append((f, f.relative_to(base), e))
        except ValueError:
            if e is None:
                raise UsageError(f"{f}: not under --root {base}") from None
            located.append((f, Path(f.name), e))  # missing: reported as failed, nothing is written for it
    for url in dict.fromkeys(urls):  # given twice: once (counted as a duplicate)
        if urls.count(url) > 1:
            duplicates.append({"input": url, "count": urls.count(url)})
        located.append((url, url_output_path(url), None))
    for f, rel, e in located:
        if e is not None:  # missing: reported as failed, writes nothing, so it claims no output name
            items.append(BatchItem(f, rel, e))
            continue
        # compared as the platform's file systems compare names: on macOS and Windows `Clip.csv` and `clip.csv`
        # are one file (the second input's outputs replaced the first's); on Linux two
        key = (name_key(str(rel.parent), caseless), name_key(rel.stem if rel.suffix else rel.name, caseless))
        if key in claimed:
            raise UsageError(f"inputs {claimed[key]} and {f} would write the same outputs "
                             f"({rel.parent / (rel.stem if rel.suffix else rel.name)}.*"
                             f"{caseless_note(caseless)}); "
                             "rename one of them")
        claimed[key] = f
        if PARTIAL_DIR in rel.parts:
            continue
        items.append(BatchItem(f, rel, e))
    return items, duplicates


# ------------------------------------------------------------------------------------------ fingerprint
def _sha_file(p: Path) -> str:
    from facecycle.files import sha256_file

    return sha256_file(p)


def _sha_path(p: Optional[Union[str, Path]]) -> Optional[str]:
    """sha256 of a file, or of a folder's files (names and contents), or None."""
    if p is None:
        return None
    p = Path(p)
    if p.is_file():
        return _sha_file(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + _sha_file(f).encode() + b"\n")
        return h.hexdigest()
    return None


def settings_fingerprint(settings: BatchSettings) -> Tuple[str, Dict[str, Any]]:
    """sha256 over everything that shapes the outputs, and the dict it was computed from.

    Covered: the model (sha256 of ``manifest.json``, which lists every graph's sha256, and of the expression
    head), the detector and its model file, detection and analysis options (with neutral faces, the number of
    neutralization passes, default or not, and the track reference's rule), the tracker's scene-cut rule, how
    pictures are read (``stills_rule``), precision and calibration video, the outputs asked for, the CSV's columns
    (with CSVs), ``max_frames``, the video preset and audio, and the facecycle version.
    Not covered: thread counts and worker counts (they change speed, not numbers)."""
    import facecycle
    from facecycle.assets import default_model_dir

    from .. import baseline as baseline_rule
    from .. import smoothing as smoothing_rule
    from ..analyzer import (
        DETECT_SIDE_MAX,
        FACE_PX_AT_SIZE,
        LOOK_AGAIN_S,
        LOOK_BESIDE_S,
        LOOK_FIRST_S,
        LOOK_GAIN,
        LOOKS_FIRST,
        RAISE_AGAIN_GAIN,
        reading_rule,
    )
    from ..crops import LEVEL_FROM_DEG, LEVEL_FULL_DEG
    from ..detectors import DETECTORS
    from ..detectors.base import ENLARGE, SMALL_STILL
    from ..heads import model_checksums
    from ..inference import DARK_LIFT, NEUTRAL_PASSES
    from ..neutral_reference import NeutralReference
    from ..reid import IdentityReID
    from ..sinks.csv_sink import csv_columns
    from ..sources.images import reads_gif
    from ..tracking import Tracker

    a = dict(settings.analyzer)
    det_cls = DETECTORS.get(str(a.get("detector", "centerface")).lower())
    box_scale = float(det_cls.box_scale) if det_cls is not None else 1.0
    reid = IdentityReID()
    ref = a.get("neutral_reference", True)
    # the reference's rule (gap, pose bins, the identity check's threshold): it shapes the neutral faces
    stats = ("identity_check", *NeutralReference.RUN_COUNTS)
    ref_rule = ({k: v for k, v in NeutralReference(**(ref if isinstance(ref, dict) else {})).describe().items()
                 if k not in stats} if ref is not False else None)
    model = model_checksums(a.get("model") or default_model_dir())
    detail = {"facecycle": getattr(facecycle, "__version__", "?"), "model": model,
              "backend": a.get("backend", "auto"), "precision": a.get("precision"),
              "calibration_sha256": _sha_path(a.get("calibration")),
              "detector": a.get("detector", "centerface"),
              "detector_model_sha256": _sha_path(a.get("detector_model")),
              # the crop's framing for the detector's boxes (the key is absent for CenterFace's, as before it existed)
              **({"detector_box_scale": box_scale} if box_scale != 1.0 else {}),
              # mirror-averaged detection (the key is absent when off, as before it existed)
              **({"mirror_detect": True} if a.get("mirror_detect") else {}),
              # tilted heads' crops turned level from this roll, wholly from that (every fingerprint has it: batches
              # redo their inputs once)
              "crop_level_deg": [LEVEL_FROM_DEG, LEVEL_FULL_DEG],
              # the person baseline's cap on a neutral's intensity: it shapes every rel_* column (batches redo their
              # inputs once, so that a dataset never mixes the two rules)
              "person_baseline_max_neutral": baseline_rule.MAX_NEUTRAL,
              # and its history and warm-up (30 s at most 30 frames a second, 1 s: since 2026-12-07 in seconds, not
              # 900 and 15 frames; the run's counts left out)
              "person_baseline": {k: v for k, v in baseline_rule.NeutralBaseline().describe().items()
                                  if k not in baseline_rule.NeutralBaseline.RUN_COUNTS},
              # the smoothed label's hysteresis and how long a lost track keeps its filters (experiment 55): they
              # shape the emotion column and the smoothed ones (batches redo their inputs once)
              "emotion_label": [smoothing_rule.LABEL_MARGIN, smoothing_rule.HOLD_S],
              # how the rows are read from the file and over time (batches redo their inputs once): untagged HD read
              # as BT.709 as players show it, a lone out-of-line pts mended between its neighbours, a smoothing step
              # after a gap counted as that many typical steps, every frame detected while a face is lost
              # (realtime.analyzer.reading_rule: the sidecar's ``reading_rule`` is the same dict)
              "reading_rule": reading_rule(),
              **{k: a.get(k) for k in ("detect_every", "detect_size", "score_threshold", "max_faces", "neutralize",
                                       "reid", "smooth")},
              # a larger detection size where small faces show only on a look at a larger size (off with an explicit
              # --detect-size), with the looks' rule (first looks, then looks for faces that come later)
              "adapt_detect_size": bool(a.get("adapt_detect_size", True)),
              **({"adapt_looks": [LOOK_FIRST_S, LOOKS_FIRST, LOOK_AGAIN_S]}
                 if a.get("adapt_detect_size", True) else {}),
              # and the raise's rule (every face a look finds counts, a face under FACE_PX_AT_SIZE at
              # the size raises it, the looks go on after a raise; batches redo their inputs once)
              **({"adapt_raise": {"face_px": FACE_PX_AT_SIZE, "max_side": DETECT_SIDE_MAX, "look_gain": LOOK_GAIN,
                                  "raise_again_gain": RAISE_AGAIN_GAIN, "beside_s": LOOK_BESIDE_S}}
                 if a.get("adapt_detect_size", True) else {}),
              # how pictures are read (every fingerprint has it, whatever --detect-size: batches redo their inputs
              # once): a small still looked at enlarged, and read whole where no face is found in it; a folder's
              # pictures (and a single picture) decoded by OpenCV, a JPEG cut short read as far as it goes, GIF
              # where this OpenCV decodes it
              "stills_rule": {"small_still": SMALL_STILL, "enlarge": list(ENLARGE), "read_whole": True,
                              "decode": "opencv", "gif": reads_gif()},
              # only with neutral faces (the key's absence keeps the fingerprints of runs without them)
              **({"neutral_passes": a.get("neutral_passes") or NEUTRAL_PASSES,
                  "neutral_reference": ref is not False, "neutral_reference_rule": ref_rule}
                 if a.get("neutralize") else {}),
              # on by default with neutral faces and the reference (a file is read twice: later resting faces
              # too); the key is absent when off, as before it existed
              **({"neutral_lookahead": True} if a.get("neutralize") and ref is not False
                 and a.get("neutral_lookahead") is not False else {}),
              # the rel_* columns' baseline read ahead (the key is absent when off, as before it existed)
              **({"baseline_lookahead": True} if a.get("baseline_lookahead") else {}),
              # dark faces read brightened (realtime.inference.DARK_LIFT): it changes their rows
              "dark_lift": list(DARK_LIFT) if DARK_LIFT else None,
              # every frame turned before it is read (--rotate; the key is absent when 0, as before it existed)
              **({"rotate": int(a["rotate"])} if a.get("rotate") else {}),
              # the head pose's camera centred on each face (--pose-camera face: the pose_* columns change; the key is
              # absent for the frame's camera, as before it existed)
              **({"pose_camera": str(a["pose_camera"])}
                 if a.get("pose_camera") not in (None, "frame") else {}),
              # the head pose's camera's focal length (--pose-focal: the pose_* columns change; the key is absent
              # for the frame's longer side, as before it existed)
              **({"pose_focal": float(a["pose_focal"])} if a.get("pose_focal") is not None else {}),
              # the tracker's scene-cut rule shapes face_id (tracks end at cuts)
              "tracker": Tracker().describe(),
              # only with --reid (the key's absence keeps the fingerprints of runs without it)
              **({"reid_rule": {"threshold": reid.threshold, "window_s": reid.window}} if a.get("reid") else {}),
              # the CSV's header before the code (exp_*, sized by the model, fingerprinted with it): a column added
              # or moved makes a batch redo its inputs, so that one dataset never holds two headers (the Parquet
              # writer refuses CSVs whose columns differ). Only with CSVs: a --no-csv batch keeps its fingerprint
              **({"csv_columns": ",".join(csv_columns(0))} if settings.csv else {}),
              "csv": settings.csv, "video": settings.video, "max_frames": settings.max_frames,
              "audio": settings.audio if settings.video else None,
              "video_preset": settings.video_preset if settings.video else None}
    blob = json.dumps(detail, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest(), detail


#: the HTTP response headers that change when a served file does (RFC 9110's validators, and its length)
URL_VALIDATORS = ("ETag", "Last-Modified", "Content-Length")


def url_validators(url: str, timeout: float = 10.0) -> Optional[Dict[str, str]]:
    """The served file's :data:`URL_VALIDATORS` from a HEAD request (http and https; ``{}`` for other schemes, or a
    server that sends none of them), or None when the request fails (the server down, HEAD refused, as by URLs
    signed for GET only): then nothing is known about the file beyond its URL."""
    import http.client
    import urllib.error
    import urllib.request

    if url_scheme(url) not in ("http", "https"):
        return {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as r:
            found = {k: r.headers[k] for k in URL_VALIDATORS if r.headers.get(k)}
            if "Last-Modified" in found and _request_time(found["Last-Modified"], r.headers.get("Date")):
                # a page made on request dates itself now: every run would see a new file
                log.debug("%s: Last-Modified is the response's Date; not a validator", url)
                del found["Last-Modified"]
            return found
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # not HTTP: a bad line
        log.debug("%s: HEAD failed (%s)", url, e)
        return None


def _request_time(last_modified: str, date: Optional[str], slack_s: float = 2.0) -> bool:
    """Whether a response's ``Last-Modified`` is its own ``Date`` (within ``slack_s``): a server that serves the
    file from a script, or re-dates it on every request, rather than the file's time."""
    from email.utils import parsedate_to_datetime

    if not date:
        return False
    try:
        return abs((parsedate_to_datetime(last_modified) - parsedate_to_datetime(date)).total_seconds()) <= slack_s
    except (TypeError, ValueError):
        return False


def served_file_changed(before: Optional[Dict[str, Any]], now: Optional[Dict[str, Any]]) -> Optional[str]:
    """Which validator of a served file differs between a completed run's ``input_stat`` and now (``"ETag"``, ...),
    or None: the same, or not known on one side (a server that sends none, a HEAD that failed).

    Where both sides have an ``ETag`` it decides with ``Content-Length``; ``Last-Modified`` counts only without one
    (a server behind a load balancer may date one file differently from node to node)."""
    before, now = before or {}, now or {}
    keys = ("ETag", "Content-Length") if before.get("ETag") and now.get("ETag") else URL_VALIDATORS
    for k in keys:
        a, b = before.get(k), now.get(k)
        if a is not None and b is not None and a != b:
            return k
    return None


def item_fingerprint(settings_fp: str, path: Union[Path, str],
                     validators: Optional[Dict[str, str]] = None) -> Tuple[str, Dict[str, Any]]:
    """Fingerprint of one input: the settings' plus the file's size and modification time; for a URL, the URL.
    A served file's ``validators`` (:func:`url_validators`) are recorded with it (``input_stat``) but not hashed,
    so that a server that stops answering HEAD does not make a finished input look new:
    :func:`served_file_changed` compares them."""
    if isinstance(path, str) and url_scheme(path):
        stat: Dict[str, Any] = {"url": path}
        blob = json.dumps({"settings": settings_fp, "input": stat}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest(), {**stat, **(validators or {})}
    else:
        try:
            st = Path(path).stat()
            stat = {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
        except OSError:
            stat = {"bytes": None, "mtime_ns": None}
    blob = json.dumps({"settings": settings_fp, "input": stat}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest(), stat


def is_complete(item: BatchItem, out_dir: Union[str, Path], settings: BatchSettings,
                fingerprint: str) -> Tuple[bool, Optional[Dict[str, Any]]]:
    """True (and the sidecar) when ``item``'s sidecar says ``complete`` with ``fingerprint`` and its outputs
    are there with the recorded CSV size; anything else (missing, partial, other settings) means redo
    (:func:`realtime.batch.job.outputs_complete`)."""
    return outputs_complete(out_dir, item.rel, settings, fingerprint)
