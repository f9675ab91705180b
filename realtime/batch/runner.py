"""Drive a batch: skip complete inputs, run the rest on an executor, one progress bar, ``batch.json``,
and the Parquet dataset."""
from __future__ import annotations

import logging
import os
import platform
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, Union

from facecycle.errors import InputError, OutputError, UsageError
from facecycle.files import check_can_create, json_text, json_text_fields, text_name, write_atomic
from facecycle.terminal import REPEATING, TERMINATING, note, quiet, stderr_is_terminal

from .job import SOFTWARE_FIELDS, BatchSettings, made_with, not_a_file, output_paths, same_input, sidecar_reading
from .plan import BatchItem, is_complete, item_fingerprint, served_file_changed, settings_fingerprint, url_validators

__all__ = ["run_batch", "BatchResult"]

log = logging.getLogger(__name__)


class BatchResult(dict):
    """The content of ``batch.json`` (a dict) plus ``exit_code``: 0; 3 when an input failed; the code of a
    fatal error (model, output, backend) that stopped the batch."""

    @property
    def exit_code(self) -> int:
        return int(self["exit_code"])


def _validators(urls: List[str]) -> Dict[str, Optional[Dict[str, str]]]:
    """Each served file's validators (:func:`~realtime.batch.plan.url_validators`), asked for 8 at a time."""
    if not urls:
        return {}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(urls))) as pool:
        return dict(zip(urls, pool.map(url_validators, urls), strict=True))


#: backslashes escaped in ``--dry-run``'s fields where a name may hold one; on Windows a backslash is the path
#: separator, and no name there holds a tab, a line end or another control character
_ESCAPE_BACKSLASH = os.sep == "/"
_FIELD_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_FIELD_SPECIAL = re.compile(r"[\\\x00-\x1f\x7f]" if _ESCAPE_BACKSLASH else r"[\x00-\x1f\x7f]")


def dry_run_field(s: str) -> str:
    """One field of a ``--dry-run`` line (``DECISION<TAB>INPUT<TAB>CSV``) as one line's text: a backslash as
    ``\\\\`` (not on Windows, where it separates folders), a tab, line feed or carriage return as ``\\t``,
    ``\\n``, ``\\r``, another control character as ``\\xNN``; then a name's bytes that are not UTF-8 as ``\\xNN``
    (:func:`~facecycle.files.text_name`, as ``batch.json`` has them). Each line is one input, its fields split at
    tabs, whatever the names hold; C-style unescaping gives the name's bytes back."""
    s = _FIELD_SPECIAL.sub(lambda m: _FIELD_ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"), s)
    return text_name(s)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    try:  # a temporary name of its own: two batches writing one summary must not remove each other's
        # (every path as UTF-8 text: `input` and `rel` as the Parquet `video` column names them, so the two join)
        write_atomic(path, json_text(json_text_fields(data)) + "\n")
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None


def _bar(total: int, enabled: bool):
    """The progress bar, or None: where stderr is a terminal only (its carriage-return redraws filled log files)."""
    if not enabled or total == 0 or not stderr_is_terminal():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="video", desc="batch", dynamic_ncols=True, file=sys.stderr, mininterval=0.5,
                smoothing=0.1)


def run_batch(items: List[BatchItem], out_dir: Union[str, Path], settings: BatchSettings, executor=None, *,
              duplicates: Optional[List[Dict[str, Any]]] = None, parquet: Optional[Union[str, Path]] = None,
              force: bool = False, progress: bool = True, summary: Optional[Union[str, Path]] = None,
              dry_run: bool = False, command: Optional[List[str]] = None) -> BatchResult:
    """Process ``items`` into ``out_dir``; returns (and writes to ``summary``, default ``out_dir/batch.json``)
    per-input status, time, frames, fps, retries and errors.

    Args:
        executor: :class:`~realtime.batch.executors.LocalExecutor` or ``RayExecutor`` (started here only if
            something is left to do, and shut down at the end); None = in this process.
        parquet: also write every complete input's CSV rows as one dataset there; its path is locked from here
            to the end of the batch (:func:`~realtime.batch.parquet.lock_parquet`): a second batch given the same
            path is refused at its start (OutputError, exit 4) instead of replacing this one's dataset.
        force: redo complete inputs too.
        dry_run: decide what to skip and what to run, write nothing, run nothing.
    """
    lock: Optional[int] = None
    if parquet:  # refuse before any input is processed, not after hours of it
        from .parquet import check_parquet_path, lock_parquet, require_pyarrow

        require_pyarrow()
        check_parquet_path(parquet, out_dir)
        if not dry_run:  # held to the end of the batch: a second batch given this --parquet is refused now
            lock = lock_parquet(parquet, "facecycle batch", "give each batch its own --parquet (docs/batch.md)")
    try:
        return _run_batch(items, out_dir, settings, executor, duplicates=duplicates, parquet=parquet, force=force,
                          progress=progress, summary=summary, dry_run=dry_run, command=command)
    finally:
        if lock is not None:
            from .parquet import unlock_parquet

            unlock_parquet(parquet, lock)  # type: ignore[arg-type]


def _run_batch(items: List[BatchItem], out_dir: Union[str, Path], settings: BatchSettings, executor, *,
               duplicates: Optional[List[Dict[str, Any]]], parquet: Optional[Union[str, Path]], force: bool,
               progress: bool, summary: Optional[Union[str, Path]], dry_run: bool,
               command: Optional[List[str]]) -> BatchResult:
    """:func:`run_batch` once its ``--parquet`` path is checked (and locked)."""
    from .executors import LocalExecutor

    t_start = time.time()
    out = Path(os.path.abspath(out_dir))
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: not a folder")
    summary_path = Path(summary) if summary else out / "batch.json"
    check_can_create(summary_path)  # found now, not after the whole corpus has run
    settings_fp, fp_detail = settings_fingerprint(settings)
    run_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    entries: List[Dict[str, Any]] = []
    todo: Deque[Dict[str, Any]] = deque()
    served = _validators([it.path for it in items if isinstance(it.path, str) and not it.error])
    earlier: Optional[Dict[str, Dict[str, Any]]] = None  # earlier batch.json's fingerprinted dicts (read if needed)
    redo_kinds: List[Tuple[str, Optional[List[str]]]] = []  # why each input with earlier outputs is redone
    for it in items:
        fp, stat = item_fingerprint(settings_fp, it.path, served.get(it.path) if isinstance(it.path, str) else None)
        paths = output_paths(out, it.rel, settings.csv, settings.video)
        if any(p is not None and Path(os.path.abspath(str(p))) == Path(os.path.abspath(summary_path))
               for k, p in paths.items() if k in ("csv", "video", "sidecar")):
            raise UsageError(f"{it.path}: its outputs would replace the batch's summary {summary_path}: rename the "
                             "input or give --summary another path")
        e: Dict[str, Any] = {"input": str(it.path), "rel": it.rel.as_posix(), "status": "pending",
                             "retries": 0,
                             "csv": str(paths["csv"]) if paths["csv"] else None,
                             "sidecar": str(paths["sidecar"])}
        entries.append(e)
        if it.error:
            e.update(status="failed", error=it.error, exit_code=3)
            continue
        bad = not_a_file(paths, str(it.path))  # a folder at an output's path: said now (a dry run too), kept
        if bad is not None:
            e.update(status="failed", error=bad, exit_code=OutputError.exit_code)
            continue
        # info: None, or a sidecar whose fields read here have the types batch writes (outputs_complete)
        done, info = (False, None) if force else is_complete(it, out, settings, fp)
        other = ((info or {}).get("batch") or {}).get("input")
        if other is not None and not same_input(other, it.path):  # force: replaced, as asked
            # another input's results at this input's output paths: a batch over other folders into the same
            # --out-dir (its default root, the inputs' deepest common folder, was another); they were overwritten
            e.update(status="failed", exit_code=UsageError.exit_code,
                     error=f"{it.path}: its outputs {paths['sidecar']} hold the results of {other}: batches "
                           "sharing --out-dir must mirror the same folder (give each the same --root), or give "
                           "--force to replace them")
            continue
        changed = served_file_changed(((info or {}).get("batch") or {}).get("input_stat"), stat) if done else None
        if changed:  # the URL is the same, but the server says the file is not
            done = False
        if done:
            info = info or {}
            st = info.get("stats") or {}
            e.update(status="skipped", frames=st.get("frames"), fps=st.get("fps"),
                     rows=(info.get("batch") or {}).get("rows"), reading=sidecar_reading(info),
                     # the software that made it (the sidecar just read): compared with this run's at the end
                     made_with=made_with(info))
            continue
        if info:  # why an input with outputs from before runs again
            if changed:
                e["redo"], kind = f"the served file changed ({changed})", ("served", None)
            else:
                if earlier is None:  # the batch.json this one replaces: what its fingerprint hashed
                    earlier = _earlier_fingerprinted(summary_path, out / "batch.json")
                e["redo"], kind = _redo_reason(info, paths, fp, settings_fp, fp_detail, stat, earlier)
            redo_kinds.append(kind)
        # planned_complete: redone on purpose though complete (--force, a served file that changed); else the task
        # skips an input another batch completes (with these settings) before it takes the input's lock
        todo.append({"input": str(it.path), "rel": it.rel.as_posix(), "out_dir": str(out), "run_id": run_id,
                     "fingerprint": fp, "batch": {"settings_fingerprint": settings_fp, "input_stat": stat},
                     "planned_complete": bool(force or changed),
                     # the command the sidecar records (as batch.json does; `process` records its own)
                     "command": command,
                     "_entry": len(entries) - 1})
    for e in entries:
        if e["status"] == "failed":
            print(f"facecycle batch: error: {text_name(e['error'])}", file=sys.stderr)
    for d in duplicates or []:
        note(f"facecycle batch: {text_name(d['input'])} given {d['count']} times; processed once")
    n_skip = sum(e["status"] == "skipped" for e in entries)
    result = BatchResult(run_id=run_id, started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)),
                         command=command, out_dir=str(out), settings=settings.to_dict(),
                         settings_fingerprint=settings_fp, fingerprinted=fp_detail, executor=None,
                         host=platform.node(), duplicates=duplicates or [], inputs=entries)
    if dry_run:
        for e in entries:
            what = e["status"] if e["status"] != "pending" else "run" + (f" (redo: {e['redo']})" if e.get("redo")
                                                                        else "")
            # the file it writes too (where it goes depends on the inputs' common folder: said before the run)
            # (one line each: names' tabs, line ends and backslashes escaped, bytes that are not UTF-8 as \xNN)
            print("\t".join(dry_run_field(str(f)) for f in (what, e["input"], e["csv"] or e["sidecar"])))
        _provenance(result, entries, settings, executor)
        n_failed = sum(e["status"] == "failed" for e in entries)
        # as the run would end: an input that cannot be run fails it
        result.update(exit_code=3 if n_failed else 0,
                      counts={"inputs": len(entries), "to_run": len(todo), "skipped": n_skip, "failed": n_failed})
        return result
    if n_skip:
        note(f"facecycle batch: {n_skip} of {len(entries)} inputs already complete (same model and settings); "
             f"skipped")
    if redo_kinds:  # outputs from before, redone: said once, the most common reasons first
        note(_redo_note(redo_kinds, len(entries)))
    out.mkdir(parents=True, exist_ok=True)
    ex = executor or LocalExecutor(settings)
    fatal: Optional[Dict[str, Any]] = None
    t_work = time.perf_counter()
    frames_done = 0
    interrupted = 0  # the exit code of a signal that stopped the batch
    if todo:
        bar = _bar(len(todo), progress)
        failed = 0

        def refresh() -> None:
            if bar is None:
                return
            live = sum(n for k, n in ex.frames().items() if k in running)
            el = time.perf_counter() - t_work
            bar.set_postfix_str(f"frames={frames_done + live} fps={(frames_done + live) / max(el, 1e-6):.1f} "
                                f"failed={failed}", refresh=True)

        ex.on_progress = (lambda: refresh()) if isinstance(ex, LocalExecutor) else None
        pending: Dict[int, Dict[str, Any]] = {}
        saves = {"last": float("-inf"), "cost": 0.0, "dirty": False, "warned": False, "final": False, "stop": 0}
        save_lock = threading.RLock()  # (a stop's write may come from another thread: _SigtermSeen)

        def save(stopping: int = 0) -> None:
            """Write batch.json as things stand (atomically, as at the end), so that a batch stopped or killed
            mid-run leaves one: it was written only after the executor was cancelled and shut down, and a SIGTERM to
            every process of a Ray batch (as Slurm sends it), or a SIGKILL after the grace time, left none. While
            the batch goes (``stopping`` 0): ``state`` ``running``, the inputs in flight ``running``, no
            ``exit_code``; once a signal stops it (``stopping``: its exit code), as the final one will be: those
            in flight ``interrupted``, those not started ``cancelled``. Errors are a warning (once): the final
            write reports them. None once the final write is under way."""
            with save_lock:
                if saves["final"]:
                    return
                if stopping:
                    saves["stop"] = stopping
                elif saves["stop"]:  # once stopping, every write is the stop's
                    stopping = saves["stop"]
                t = time.perf_counter()
                snap = BatchResult(result)
                snap["inputs"] = [dict(e) for e in entries]
                if stopping:
                    for e in snap["inputs"]:
                        if e["status"] in ("pending", "running"):
                            e["status"] = _stopped_status(e["status"], fatal)
                _finish(snap, snap["inputs"], t_start, t_work, fatal, stopping)
                if not stopping:
                    snap.update(state="running", exit_code=None, finished=None)
                try:
                    _write_json(summary_path, snap)
                except Exception as e:  # noqa: BLE001 - the final write says what failed
                    if not saves["warned"]:
                        saves["warned"] = True
                        log.warning("%s: cannot write the batch's progress (%s)", summary_path, e)
                    return
                saves.update(last=time.perf_counter(), cost=time.perf_counter() - t, dirty=False)
                if not stopping and saves["stop"]:
                    # the signal came while this progress write was under way (its handler's write, nested in this
                    # one on the main thread, came first): the stop's is written again, last (a review's finding)
                    save(saves["stop"])

        def save_progress() -> None:
            """batch.json after inputs finished: at once, unless the last write was under 2 s ago (or 20 times
            what a write takes, for a corpus so large that writing it costs): then at a later turn."""
            if saves["dirty"] and time.perf_counter() - saves["last"] >= max(_SAVE_EVERY_S, 20 * saves["cost"]):
                save()

        def on_stop(code: int) -> None:  # (in the signal handler: before anything is cancelled or shut down)
            _STOPPING[0] = True
            save(code)

        term = _SigtermSeen(on_stop)
        _STOPPING[0] = False
        running: set = set()  # rel paths in flight (their frames count live until they finish)
        try:
            t_up = time.perf_counter()
            result["executor"] = ex.start()
            term.watch()  # after the executor's start, which may install handlers of its own (Ray's)
            if getattr(ex, "name", None) == "ray":
                _quiet_ray()
            result["executor"]["startup_s"] = round(time.perf_counter() - t_up, 3)
            t_work = time.perf_counter()  # throughput counts from a started executor
            last_refresh = 0.0
            while todo or pending:
                while todo and len(pending) < ex.capacity and fatal is None:
                    t = todo.popleft()
                    idx = t.pop("_entry")
                    h = ex.submit(t)
                    pending[h] = {"entry": idx, "rel": t["rel"]}
                    running.add(t["rel"])
                    entries[idx]["status"] = "running"
                if fatal is not None:
                    todo.clear()
                for h, res in ex.wait(list(pending), timeout=0.5):
                    if h not in pending:  # cancelled after a fatal error earlier in this round
                        continue
                    sent = pending.pop(h)
                    idx = sent["entry"]
                    e = entries[idx]
                    running.discard(sent["rel"])  # (the task's rel, as the executor counts its frames)
                    saves["dirty"] = True
                    e.update({k: v for k, v in res.items() if k not in ("input", "rel", "csv", "sidecar")})
                    if e["status"] == "error":  # an error that stops the batch: the input failed (its exit_code
                        e["status"] = "failed"  # and error say which kind)
                    if res["status"] == "skipped":  # another batch completed it after this one planned it
                        if bar is not None:
                            bar.update(1)
                        continue
                    if res["status"] == "busy":  # another batch is on it: not done by this one, and not failed
                        msg = f"facecycle batch: {text_name(str(res.get('error')))}"
                        _note(bar, msg)
                        if bar is not None:
                            bar.update(1)
                        continue
                    frames_done += int(res.get("frames") or 0)
                    damage = [f"~{res['frames_missing']} frames missing (truncated or damaged file)"
                              if res.get("frames_missing") else "",
                              f"{res['decode_errors']} damaged packets skipped" if res.get("decode_errors") else "",
                              f"damage read through in {res['damaged']} places (frames with errors concealed, or "
                              "packets the demuxer flagged)" if res.get("damaged") else "",
                              "cut short (an MPEG-TS file that ends inside a packet)" if res.get("cut_short") else "",
                              "the file grew while it was read (a recording in progress?): rerun when it ends"
                              if res.get("grew_while_read") else ""]
                    if res["status"] == "done" and any(damage):
                        msg = f"facecycle batch: {text_name(e['input'])}: " + ", ".join(d for d in damage if d)
                        _note(bar, msg)
                    if res["status"] != "done":
                        failed += 1
                        msg = f"facecycle batch: error: {text_name(str(res.get('error')))}"
                        (bar.write(msg, file=sys.stderr) if bar is not None else print(msg, file=sys.stderr))
                        if res["status"] == "error" and fatal is None:
                            fatal = res
                            ex.cancel()
                            for p in pending.values():
                                entries[p["entry"]]["status"] = "cancelled"
                            pending.clear()
                            todo.clear()
                    if bar is not None:
                        bar.update(1)
                save_progress()
                if time.perf_counter() - last_refresh > 0.5:
                    last_refresh = time.perf_counter()
                    refresh()
        except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C; SIGTERM, SIGHUP, SIGXCPU (the CLI raises
            # SystemExit(128 + signum)). Their code also where a library turned the exception into another (Ray's
            # wait raises SystemExit(1))
            code = e.code if isinstance(e, SystemExit) and e.code in _SIGNAL_CODES else None
            interrupted = term.code or code or 130
            _STOPPING[0] = True
            save(interrupted)  # before the executor is cancelled and shut down (a SIGKILL may follow)
            ex.cancel()
            for p in pending.values():
                entries[p["entry"]]["status"] = "interrupted"
            if interrupted != 130 and code != interrupted:
                raise SystemExit(interrupted) from None
            raise
        finally:
            term.unwatch()
            if bar is not None:
                bar.close()
            try:
                ex.shutdown()
            except Exception as e:  # noqa: BLE001 - a stopping batch's batch.json is still written
                if not interrupted:
                    raise
                log.debug("shutting the executor down failed (%s)", e, exc_info=True)
            with save_lock:  # no write of the progress after the final one (a stop's, from another thread)
                saves["final"] = True
            for e in entries:
                if e["status"] in ("pending", "running"):
                    e["status"] = _stopped_status(e["status"], fatal)
            _finish(result, entries, t_start, t_work, fatal, interrupted)
            if interrupted:
                _provenance(result, entries, settings, ex, probe=False)
                try:
                    _write_json(summary_path, result)
                except OutputError:
                    pass
                else:
                    _print_summary(result, summary_path)
    else:
        result["executor"] = {"mode": "none (nothing to run)"}
        _finish(result, entries, t_start, t_work, None, 0)
    _provenance(result, entries, settings, ex)
    parquet_error: Optional[Union[OutputError, InputError]] = None
    if parquet and fatal is None:
        from .parquet import write_parquet

        pairs = [(e["rel"], e["csv"]) for e in entries if e["status"] in ("done", "skipped") and e.get("csv")]
        try:
            result["parquet"] = write_parquet(pairs, parquet)
        except (OutputError, InputError) as e:  # the inputs are done: batch.json still says so, then the error
            # (exit 4; 3 for a damaged CSV: it lost batch.json)
            parquet_error = e
            result["parquet"] = {"path": str(parquet), "error": str(e)}
            result["error"] = str(e)
            result["exit_code"] = e.exit_code
        else:
            want = sum(int(e.get("rows") or 0) for e in entries
                       if e["status"] in ("done", "skipped") and e.get("csv"))
            result["parquet"]["rows_expected"] = want
    _write_json(summary_path, result)
    if parquet_error is not None:
        raise parquet_error
    _print_summary(result, summary_path)
    return result


def _earlier_fingerprinted(*summaries: Path) -> Dict[str, Dict[str, Any]]:
    """``{settings_fingerprint: fingerprinted}`` of the earlier batch summaries that can be read (this batch's
    ``--summary``, the output folder's ``batch.json``): what an earlier fingerprint hashed, to name what changed."""
    import json

    found: Dict[str, Dict[str, Any]] = {}
    for p in dict.fromkeys(summaries):
        try:
            d = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(d, dict) and isinstance(d.get("settings_fingerprint"), str)
                and isinstance(d.get("fingerprinted"), dict)):
            found.setdefault(d["settings_fingerprint"], d["fingerprinted"])
    return found


def _changed_keys(before: Dict[str, Any], now: Dict[str, Any]) -> List[str]:
    """The top-level keys of two ``fingerprinted`` dicts whose values differ (or that only one has), sorted."""
    import json

    def norm(v: Any) -> str:  # as the fingerprint hashes them (a tuple now is a list read back)
        return json.dumps(v, sort_keys=True, default=str)

    return sorted(k for k in set(before) | set(now)
                  if k not in before or k not in now or norm(before[k]) != norm(now[k]))


def _redo_reason(info: Dict[str, Any], paths: Dict[str, Any], fp: str, settings_fp: str,
                 fp_detail: Dict[str, Any], stat: Dict[str, Any],
                 earlier: Dict[str, Dict[str, Any]]) -> Tuple[str, Tuple[str, Optional[List[str]]]]:
    """Why an input whose sidecar :func:`~realtime.batch.plan.is_complete` did not accept is redone: the reason
    (batch.json's ``redo``, ``--dry-run``'s ``run (redo: ...)``) and its kind for the note before the run (kind,
    the fingerprint's changed keys where known)."""
    if info.get("status") != "complete":
        return "partial", ("partial", None)
    b = info.get("batch") or {}
    if info.get("fingerprint") != fp:
        before = b.get("settings_fingerprint")
        if info.get("fingerprint") is None and before is None:
            return "outputs with no batch fingerprint (not made by facecycle batch)", ("other", None)
        if before != settings_fp:
            keys = (_changed_keys(earlier[before], fp_detail)
                    if isinstance(before, str) and before in earlier else None)
            return ("other settings or another facecycle version"
                    + (f" (changed: {', '.join(keys)})" if keys else "")), ("settings", keys)
        was = b.get("input_stat") or {}
        if any(was.get(k) != stat.get(k) for k in ("bytes", "mtime_ns")):
            return "the input changed (size or modification time)", ("input", None)
        return "the input's fingerprint differs (its sidecar edited?)", ("other", None)
    for k in ("csv", "video"):
        if paths.get(k) is not None and not Path(paths[k]).is_file():
            return f"an output is missing ({paths[k]})", ("missing", None)
    want = b.get("csv_bytes")
    if paths.get("csv") is not None and want is not None:
        try:
            size: Optional[int] = Path(paths["csv"]).stat().st_size
        except OSError:
            size = None
        if size != want:
            return f"the CSV was changed ({size} bytes, recorded {want})", ("csv", None)
    return "settings or outputs changed", ("other", None)


#: the note's words for each kind of redo: (one input, several)
_REDO_WORDS = {"settings": ("has outputs from other settings or another facecycle version",
                            "have outputs from other settings or another facecycle version"),
               "input": ("changed since its outputs were made (size or modification time)",
                         "changed since their outputs were made (size or modification time)"),
               "csv": ("has an edited CSV", "have edited CSVs"),
               "missing": ("has an output missing", "have outputs missing"),
               "partial": ("has outputs of a run that did not finish", "have outputs of runs that did not finish"),
               "served": ("is a served file that changed", "are served files that changed"),
               "other": ("has outputs that no longer match", "have outputs that no longer match")}


def _redo_note(kinds: List[Tuple[str, Optional[List[str]]]], total: int) -> str:
    """The one line before the work that says how many inputs with earlier outputs are redone and why, the most
    common reason first: ``facecycle batch: 3 of 3 inputs have outputs from other settings or another facecycle
    version (reading_rule, tracker): redone``."""
    counts: Dict[str, int] = {}
    keys: Dict[str, None] = {}
    for kind, changed in kinds:
        counts[kind] = counts.get(kind, 0) + 1
        keys.update(dict.fromkeys(changed or ()))
    order = sorted(counts, key=lambda k: (-counts[k], list(_REDO_WORDS).index(k)))
    parts = []
    for i, kind in enumerate(order):
        n = counts[kind]
        words = _REDO_WORDS[kind][n != 1]
        if kind == "settings" and keys:
            words += f" ({', '.join(sorted(keys))})"
        parts.append(f"{n} of {total} input{'s' * (total != 1)} {words}" if i == 0 else f"{n} {words}")
    return "facecycle batch: " + ", ".join(parts) + ": redone"


def _stopped_status(status: str, fatal: Optional[Dict[str, Any]]) -> str:
    """The status of an input not finished when the batch stopped: ``interrupted`` where it was in flight
    (``running``) and a signal stopped the batch; ``cancelled`` where it never started (``pending``), or where an
    error stopped the batch (docs/batch.md). Inputs that never started were all ``interrupted`` (a probe's h78 F7),
    while the end line counted them cancelled."""
    return "interrupted" if status == "running" and not fatal else "cancelled"


#: the software fields compared by their major.minor version only (a patch release changes no numbers)
_MAJOR_MINOR = ("onnxruntime", "torch")
#: how the provenance note names each field
_SOFTWARE_WORDS = {"backend": "backend", "precision": "precision", "facecycle": "facecycle",
                   "facecycle_source": "facecycle source", "onnxruntime": "onnxruntime", "torch": "torch"}


def _software_value(field: str, value: Optional[str]) -> Optional[str]:
    """``value`` of a :data:`~realtime.batch.job.SOFTWARE_FIELDS` field as it is compared: ONNX Runtime's and
    torch's major.minor (``2.5`` of ``2.5.1+cu121``); the others as they are."""
    if value is None or field not in _MAJOR_MINOR:
        return value
    m = re.match(r"(\d+)\.(\d+)", value)
    return f"{m.group(1)}.{m.group(2)}" if m else value


def _most_common(values: List[str]) -> Optional[str]:
    """The value most of ``values`` have (the first of them where two are as common), or None for none."""
    counts: Dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts, key=lambda v: counts[v]) if counts else None


#: the backends that run on the CPU: where ``auto`` finds no other here, the first of them is the one that runs
_CPU_BACKENDS = ("onnxruntime-cpu", "torch-cpu")


def _predicted_backend(settings: BatchSettings) -> Optional[str]:
    """The backend this machine would run the batch's ``--backend`` with, where that can be said before one opens:
    an explicit one's name; for ``auto``, the first of :func:`engines.select.candidates` where every candidate runs
    on the CPU. None where it cannot be said: ``auto`` with a GPU backend available here (TensorRT, ONNX Runtime
    CUDA, PyTorch CUDA), which may fail to open or build and fall back to the next (the runs of a machine with
    TensorRT installed fell back to ONNX Runtime CUDA, and every input they made was reported as made on another
    backend than "tensorrt"), or nothing usable."""
    a = settings.analyzer
    try:
        from engines.select import candidates, canonical
        from facecycle.assets import default_model_dir

        name = canonical(str(a.get("backend") or "auto"))
        if name != "auto":
            return name
        opts = {k: a[k] for k in ("precision", "checkpoint") if a.get(k)}
        found = [c.name for c in candidates("auto", model_dir=a.get("model") or default_model_dir(), opts=opts)]
    except Exception as e:  # noqa: BLE001 - a report's guess (BackendUnavailable: nothing usable): none is said
        log.debug("the backend this machine would run is not known (%s)", e)
        return None
    return found[0] if found and all(n in _CPU_BACKENDS for n in found) else None


def _this_machine(settings: BatchSettings, executor: Any) -> Dict[str, str]:
    """The software this batch would run its inputs with, where none ran: facecycle's, ONNX Runtime's and torch's
    versions here (:func:`realtime.sinks.versions`, as a sidecar records them), and the backend this machine
    resolves ``--backend`` to (:func:`_predicted_backend`): not said for ``--backend auto`` on Ray workers, whose GPUs
    (and so their backend) may not be the driver's, nor where ``auto`` finds a GPU backend here (which one opens
    cannot be said before it does)."""
    from ..sinks import versions

    v = versions()
    out = {k: v[k] for k in ("facecycle", "facecycle_source", "onnxruntime") if isinstance(v.get(k), str)}
    from .executors import LocalExecutor

    elsewhere = executor is not None and not isinstance(executor, LocalExecutor)
    if not elsewhere or str(settings.analyzer.get("backend") or "auto") != "auto":
        name = _predicted_backend(settings)
        if name is not None:
            out["backend"] = name
            if name.startswith("torch"):
                try:
                    from importlib.metadata import version

                    out["torch"] = version("torch")
                except Exception:  # noqa: BLE001 - not installed: nothing to compare
                    pass
    out["precision"] = str(settings.analyzer.get("precision") or "fp32")
    return out


def _provenance(result: Dict[str, Any], entries: List[Dict[str, Any]], settings: BatchSettings,
                executor: Any, probe: bool = True) -> None:
    """Compare the software that made each finished input (its ``made_with``, from the sidecar read for the skip
    decision or from the run) with this run's (``batch.json``'s ``made_with``: what the inputs processed now ran
    with, the most common where they differ; where none ran, this machine's), record the inputs that differ
    (each one's ``other_software``, ``mixed_provenance``) and say so in one line: a resumed batch skipped outputs
    that other code, another backend or other libraries made (the fingerprint holds the settings and the
    requested ``--backend``, not the backend ``auto`` resolved to nor the code), and mixed them into one dataset
    unsaid (a probe's h78 F5). Reported, not redone: ``--force`` redoes them. ``probe``: False on a signal's way
    out, where this machine's software is not looked up (the inputs' most common stands for it)."""
    made = [e for e in entries if e["status"] in ("done", "skipped") and isinstance(e.get("made_with"), dict)]
    result["made_with"] = None
    result["mixed_provenance"] = None
    if not made:
        return
    ran = [e["made_with"] for e in made if e["status"] == "done"]
    this: Dict[str, str] = {}
    for k in SOFTWARE_FIELDS:
        v = _most_common([m[k] for m in ran if isinstance(m.get(k), str)])
        if v is not None:
            this[k] = v
    source = "the inputs processed now"
    if not ran and not probe:
        source = "the inputs (no input ran)"
    elif not ran:
        source = "this machine (no input ran)"
        try:
            this = _this_machine(settings, executor)
        except Exception as e:  # noqa: BLE001 - the report is not worth the batch
            log.debug("this machine's software not known (%s)", e)
    # a field not known for the inputs processed now: the most common of all the inputs'. Not in this machine's
    # record: what it cannot say (the backend `auto` opens on Ray workers, or where a GPU backend may fall back) is
    # left out of it, and so out of the comparison; filled in from the inputs, it was shown as this machine's
    for k in SOFTWARE_FIELDS if source != "this machine (no input ran)" else ():
        if k not in this:
            v = _most_common([e["made_with"][k] for e in made if isinstance(e["made_with"].get(k), str)])
            if v is not None:
                this[k] = v
    result["made_with"] = {**this, "from": source}
    differ: Dict[str, Dict[str, int]] = {}
    counts = {"skipped": [0, 0], "done": [0, 0]}  # status: [inputs made with other software, inputs]
    for e in made:
        m = e["made_with"]
        other = [k for k in SOFTWARE_FIELDS if isinstance(m.get(k), str) and k in this
                 and _software_value(k, m[k]) != _software_value(k, this[k])]
        counts[e["status"]][1] += 1
        if not other:
            e.pop("other_software", None)
            continue
        e["other_software"] = other
        counts[e["status"]][0] += 1
        for k in other:
            was, seen = _software_value(k, m[k]), differ.setdefault(k, {})
            seen[was] = seen.get(was, 0) + 1  # type: ignore[index]
    if not differ:
        return
    result["mixed_provenance"] = {
        "skipped": counts["skipped"][0], "of_skipped": counts["skipped"][1],
        "processed": counts["done"][0], "of_processed": counts["done"][1],
        # per field: this run's value, and the others' with the count of inputs made with each
        "differ": {k: {"this_run": _software_value(k, this[k]), "others": differ[k]}
                   for k in SOFTWARE_FIELDS if k in differ}}
    note(_provenance_note(result["mixed_provenance"]))


def _provenance_note(mixed: Dict[str, Any]) -> str:
    """The one line that says how many finished inputs other software made, and what differs: ``facecycle batch: 3
    of 3 skipped inputs were made with other software: facecycle 0.2.0 -> 0.2.1, backend torch-cpu ->
    onnxruntime-cpu; use --force to remake them (it redoes every input; batch.json's other_software says which)``."""
    def shown(k: str, v: str) -> str:
        return v[:12] + ("-dirty" if v.endswith("-dirty") else "") if k == "facecycle_source" else v

    what = []
    for k, d in mixed["differ"].items():
        others = sorted(d["others"], key=lambda v: -d["others"][v])
        was = ", ".join(shown(k, v) for v in others[:3]) + (", ..." if len(others) > 3 else "")
        what.append(f"{_SOFTWARE_WORDS[k]} {was} -> {shown(k, d['this_run'])}")
    parts = []
    if mixed["skipped"]:
        parts.append(f"{mixed['skipped']} of {mixed['of_skipped']} skipped input{'s' * (mixed['of_skipped'] != 1)} "
                     f"{'was' if mixed['skipped'] == 1 else 'were'} made with other software")
    if mixed["processed"]:
        parts.append(f"{mixed['processed']} of the {mixed['of_processed']} input{'s' * (mixed['of_processed'] != 1)} "
                     "processed now ran on other software than the rest")
    redo = (f"; use --force to remake {'it' if mixed['skipped'] == 1 else 'them'} (it redoes every input; "
            "batch.json's other_software says which)")
    return "facecycle batch: " + ", and ".join(parts) + ": " + ", ".join(what) + (redo if mixed["skipped"] else "")


def _note(bar, msg: str) -> None:
    """A note while the batch goes (an input left to another batch, damage read through): above the bar where one
    is drawn; nothing under ``--quiet`` (batch.json records it)."""
    if quiet():
        return
    if bar is not None:
        bar.write(msg, file=sys.stderr)
    else:
        note(msg)


def _print_summary(result: BatchResult, summary_path: Path) -> None:
    """The end line: inputs processed, skipped, failed, left to another batch, cancelled (by an error that stopped
    the batch, or by a signal), retries, frames, time, and where ``batch.json`` is."""
    c = result["counts"]
    damaged = f" ({c['damaged']} of them cut or damaged: see above)" if c.get("damaged") else ""
    busy = f", {c['busy']} left to another batch running them" if c.get("busy") else ""
    cancelled = f", {c['cancelled']} cancelled" if c.get("cancelled") else ""  # they used to go unsaid
    # (stderr closed or gone, the terminal of a SIGHUP: note() says nothing, and batch.json says it all)
    note(f"facecycle batch: {c['done']} processed{damaged}, {c['skipped']} skipped, {c['failed']} failed{busy}"
         f"{cancelled}{', ' + str(c['retries']) + ' retries' if c['retries'] else ''}; {c['frames']} frames "
         f"in {result['wall_s']:.1f} s -> {summary_path}")


#: the exit codes (128 + signum) of the signals that stop a batch as SIGTERM does (facecycle.terminal)
_SIGNAL_CODES = frozenset(128 + int(s) for s in TERMINATING)


#: the least time between two writes of batch.json while the batch goes (after inputs finished)
_SAVE_EVERY_S = 2.0
#: whether a batch of this process is stopping (a signal came): Ray's helpers' messages are not shown from then on
_STOPPING = [False]


def _quiet_ray() -> None:
    """What Ray's helper processes say of their own end by a signal goes to the debug log, not to stderr: a
    scheduler that signals every process of the job (Slurm) made the driver's error listener print the
    autoscaler's "(raylet) The autoscaler failed with the following error: Terminated with signal 15" and its
    stack, often before the driver's own handler ran. Other messages of Ray's are printed as before, and all once
    the batch is stopping (:attr:`_SigtermSeen.code`). Best effort: Ray's internals may change."""
    try:
        import ray._private.worker as w
    except Exception:  # noqa: BLE001
        return
    shown = getattr(w, "print_to_stdstream", None)
    if shown is None or getattr(shown, "_facecycle_quiet", False):
        return

    def quiet(data: Dict[str, Any], *a: Any, **k: Any) -> None:
        if isinstance(data, dict) and data.get("pid") == "raylet":
            text = " ".join(str(x) for x in data.get("lines") or [])
            if _STOPPING[0] or "Terminated with signal" in text:
                log.debug("ray: %s", text)
                return
        shown(data, *a, **k)

    quiet._facecycle_quiet = True  # type: ignore[attr-defined]
    w.print_to_stdstream = quiet


class _SigtermSeen:
    """Notes a SIGTERM, SIGHUP (the terminal closed) or SIGXCPU (a CPU-time limit) and hands it to the handler it
    found, so that a batch stopped by one exits 128 + its number (143, 129, 152) whatever exception reached the
    runner: Ray's ``wait`` turns the handler's ``SystemExit(143)`` into ``SystemExit(1)``, and the batch exited 1
    with ``exit_code`` 130 in batch.json. Where a signal's handler is the default action, it raises ``SystemExit``
    instead (SIGHUP killed the batch: no batch.json, the input's lock and work folder left); an ignored signal
    (``nohup``) stays ignored. Works in the main thread only (elsewhere it sees nothing, as signals go to the main
    thread).

    ``on_stop`` is called once, with the exit code, as soon as such a signal comes: from a thread woken by the
    signal itself (``signal.set_wakeup_fd``) where it can be, else from the handler. Python runs a handler only
    where the main thread is back in Python, and Ray's ``get`` of a result whose worker the same SIGTERM killed
    waited for it to be made again until Ray's core ended the driver (exit 1, no batch.json written)."""

    def __init__(self, on_stop: Optional[Callable[[int], None]] = None) -> None:
        self.code = 0  # the exit code of the first such signal, 0 before one
        self._prev: Dict[int, Any] = {}
        #: called with the exit code at the first such signal, before its handler (batch.json written at once)
        self.on_stop = on_stop
        self._stop_called = False
        self._once = threading.Lock()
        self._wake: Optional[Tuple[int, int, int]] = None  # (read end, write end, the wakeup fd it replaced)

    def _stopping(self, code: int) -> None:
        """``on_stop(code)``, once (from the wakeup thread or the handler, whichever comes first)."""
        with self._once:
            if self._stop_called or self.on_stop is None:
                return
            self._stop_called = True
        try:
            self.on_stop(code)
        except Exception as e:  # noqa: BLE001 - the stop goes on
            log.debug("at the stop signal: %s", e, exc_info=True)

    def _watch_wakeup(self) -> None:
        """The thread that calls :meth:`_stopping` when a watched signal's number is written to the wakeup fd."""
        if self.on_stop is None or sys.platform == "win32":  # (Windows' wakeup fd must be a socket)
            return
        r, w = os.pipe()
        try:
            os.set_blocking(w, False)
            old = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):
            os.close(r)
            os.close(w)
            return
        self._wake = (r, w, old)
        watched = set(self._prev)

        def wait() -> None:
            try:
                while True:
                    data = os.read(r, 64)
                    if not data:  # (unwatch closed the write end)
                        return
                    if old >= 0:  # what the fd it replaced would have been told
                        try:
                            os.write(old, data)
                        except OSError:
                            pass
                    got = [b for b in data if b in watched]
                    if got:
                        self._stopping(128 + got[0])
            except OSError:
                return
            finally:
                os.close(r)

        threading.Thread(target=wait, name="facecycle-batch-stop", daemon=True).start()

    def watch(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_term(signum: int, frame: Any) -> None:
            if self.code and signum in REPEATING:  # SIGXCPU again, a CPU-second later: it broke the clean-up
                return  # (batch.json, the video's index) that the first one started
            self.code = self.code or 128 + int(signum)
            self._stopping(self.code)
            prev = self._prev.get(signum)
            if callable(prev):
                prev(signum, frame)
            elif prev in (signal.SIG_DFL, None):
                raise SystemExit(128 + int(signum))
        for s in TERMINATING:
            prev = signal.getsignal(s)
            if prev == signal.SIG_IGN and s != signal.SIGTERM:
                continue
            self._prev[s] = prev
            signal.signal(s, on_term)
        self._watch_wakeup()

    def unwatch(self) -> None:
        if self._wake is not None and threading.current_thread() is threading.main_thread():
            r, w, old = self._wake
            self._wake = None
            try:
                signal.set_wakeup_fd(old)
            except (ValueError, OSError):
                pass
            os.close(w)  # (the thread reads the end and closes its own)
        if self._prev and threading.current_thread() is threading.main_thread():
            for s, prev in self._prev.items():
                # once stopping, a repeat (SIGXCPU, each CPU-second) must not kill the clean-up still to come
                # (batch.json) where the handler found was the default action (run_batch called from Python)
                keep = signal.SIG_IGN if self.code and s in REPEATING else prev
                signal.signal(s, keep if keep is not None else signal.SIG_DFL)
            self._prev = {}


def _finish(result: BatchResult, entries: List[Dict[str, Any]], t_start: float, t_work: float,
            fatal: Optional[Dict[str, Any]], interrupted: int) -> None:
    work_s = time.perf_counter() - t_work
    done = [e for e in entries if e["status"] == "done"]
    failed = [e for e in entries if e["status"] == "failed"]
    frames = sum(int(e.get("frames") or 0) for e in done)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result["wall_s"] = round(time.time() - t_start, 3)
    result["counts"] = {"inputs": len(entries), "done": len(done),
                        "skipped": sum(e["status"] == "skipped" for e in entries), "failed": len(failed),
                        # being processed by another batch sharing the output folder: left to it
                        "busy": sum(e["status"] == "busy" for e in entries),
                        "cancelled": sum(e["status"] in ("cancelled", "interrupted") for e in entries),
                        "retries": sum(int(e.get("retries") or 0) for e in entries), "frames": frames,
                        # done, but cut or damaged: their rows end early or skip frames (frames_missing, decode_errors),
                        # or some frames were made with errors concealed (damaged)
                        "damaged": sum(bool(e.get("frames_missing") or e.get("decode_errors") or e.get("damaged")
                                            or e.get("cut_short") or e.get("grew_while_read")) for e in done)}
    result["throughput"] = {"work_s": round(work_s, 3), "fps": round(frames / work_s, 2) if work_s > 0 else None,
                            "videos_per_min": round(len(done) / work_s * 60, 2) if work_s > 0 else None}
    if fatal is not None:
        result["error"] = fatal.get("error")
        result["exit_code"] = int(fatal.get("exit_code") or 1)
    elif interrupted:
        result["exit_code"] = int(interrupted)
    elif failed or result["counts"]["busy"]:
        # as `facecycle process`: the other inputs were done, some input failed (or is not done by this run: it
        # is another batch's, still running)
        result["exit_code"] = 3
    else:
        result["exit_code"] = 0
