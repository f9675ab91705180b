"""The ``facecycle`` command line: the application layer, the one package that may import every other.

The layers, bottom up (``pyproject.toml``, ``[tool.importlinter]``; checked by ``tests/test_layers.py``)::

    facecycle_cli   the command line and the ``facecycle-app`` launcher (this package)
    ui              the desktop app (PyQt6)
    realtime        the pipeline: sources, detectors, tracking, crops, inference, sinks, the Analyzer
    engines         inference backends behind one interface
    facecycle       the model, training and probes, and the shared basics every layer uses
                    (errors, files, config, preprocess, assets)

Each sub-command lives in its own module exposing ``register(subparsers)``;
the module sets ``func`` on its parser(s). ``func(args) -> int`` returns the
exit code. Errors derived from :class:`facecycle.errors.FaceCycleError` become
one line on stderr and their exit code; anything else becomes one line too
(``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import copy as _copy
import difflib
import logging
import os
import re
import sys
from typing import Any, Iterable, List, Optional, Sequence, TextIO

from facecycle import __version__
from facecycle.cpus import cli_thread_env
from facecycle.errors import BackendUnavailable, FaceCycleError, InputError, OutputError, UsageError
from facecycle.files import write_failure

# before anything imports numpy (the commands below; none of the imports above does): OpenBLAS one thread, OpenMP and
# MKL the CPUs of a CPU quota, where the environment says nothing (facecycle.cpus.cli_thread_env). The command's only,
# not the library's; Ray's local workers inherit this environment
os.environ.update({k: v for k, v in cli_thread_env().items() if k not in os.environ})

from . import (
    app_cmd,
    batch_cmd,
    bench_cmd,
    data_cmd,
    engine_cmd,
    export_cmd,
    model_cmd,
    probe_cmd,
    process_cmd,
    sigterm,
    train_cmd,
)
from .stderr import guard as guard_stderr
from .stderr import reserve_std_fds
from .stderr import unguard as unguard_stderr

__all__ = ["main", "build_parser", "run", "COMMAND_MODULES"]

log = logging.getLogger("facecycle")

#: optional dependencies (top-level module) -> the extra of pyproject.toml that installs them: a command that needs
#: one says so in one line (exit 6) instead of "internal error: ModuleNotFoundError"
_EXTRAS = {"torch": "torch", "onnx": "torch", "PyQt6": "ui", "ray": "cluster", "pyarrow": "cluster",
           "tensorrt": "tensorrt", "insightface": "insightface", "ai_edge_litert": "judge", "skimage": "judge"}

def _missing(module: str) -> bool:
    """True when ``module`` cannot be found (not installed, or blocked as ``sys.modules[name] = None``)."""
    import importlib.util

    if module in sys.modules and sys.modules[module] is None:
        return True
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


#: sub-command modules, in the order ``facecycle --help`` lists them
COMMAND_MODULES = (
    process_cmd,   # process, live
    batch_cmd,     # batch (many videos, Ray)
    app_cmd,       # app
    model_cmd,     # model info / convert
    export_cmd,    # export
    engine_cmd,    # engine build / list / clean
    data_cmd,      # data prepare
    train_cmd,     # train
    probe_cmd,     # probe fit / eval
    bench_cmd,     # bench engines / pipeline / soak / detectors
)


#: the namespace entries that count a global count option (``-v``) given after a sub-command's name:
#: ``_after_<dest>@<prog>``, one per parser (a sub-command's namespace is copied over its parent's, so one shared name
#: would keep the innermost count only); the top-level parser adds them to its own (``-v process -v``: ``-vv``)
_AFTER = "_after_"


class _Parser(argparse.ArgumentParser):
    #: a sub-command's parser (:func:`_share_global_options`): it reports what it does not take itself, under its own
    #: name (``facecycle process: error: unrecognized arguments: ...``), and with a suggestion among its own options
    _sub = False

    def error(self, message: str) -> None:  # one line, exit 2 (with a "did you mean" where one is close)
        self.exit(2, f"{self.prog}: error: {message}{_suggestion(self, message, getattr(self, '_argv', []))}\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
        ns, rest = super().parse_known_args(args, namespace)
        for a in self._actions:  # Python 3.11 reads ``--opt=--`` as an empty list (without calling ``type``)
            if (isinstance(a, argparse._StoreAction) and a.nargs is None and a.option_strings
                    and getattr(ns, a.dest, None) == [] and a.default != []):
                self.error(f"argument {'/'.join(a.option_strings)}: expected one argument")
        if self._sub and rest:  # argparse leaves them to the top-level parser, which named itself ("facecycle:")
            self.error(f"unrecognized arguments: {' '.join(rest)}")
        if not self._sub:
            for key in [k for k in vars(ns) if k.startswith(_AFTER)]:
                dest = key[len(_AFTER):].split("@", 1)[0]
                setattr(ns, dest, (getattr(ns, dest, None) or 0) + vars(ns).pop(key))
        return ns, rest


def _option_strings(parser: argparse.ArgumentParser, argv: Sequence[str]) -> List[str]:
    """The long options valid where ``argv`` puts them: ``parser``'s own; every sub-command's too where ``argv``
    names none (where it names one, what follows its name is that sub-command's parser's to report)."""
    out = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            first = next((i for i, t in enumerate(argv) if not t.startswith("-")), None)
            if first is not None and argv[first] in a.choices:
                break
            for sp in a.choices.values():
                out += _option_strings(sp, [])
    return sorted(set(out))


def _suggestion(parser: argparse.ArgumentParser, message: str, argv: Sequence[str] = ()) -> str:
    m = re.search(r"unrecognized arguments: (\S+)", message)
    if m and m.group(1).startswith("--"):
        bad = m.group(1).split("=", 1)[0]
        close = difflib.get_close_matches(bad, [o for o in _option_strings(parser, argv) if o != bad], n=1, cutoff=0.6)
        return f" (did you mean {close[0]}?)" if close else ""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group(2))
        close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
        return f" (did you mean {close[0]}?)" if close else ""
    return ""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="facecycle", description="FaceCycle RT: real-time facial expression analysis.")
    p.add_argument("--version", action="version", version=f"facecycle {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="errors only on stderr: no end lines, summaries, progress or warnings (exit codes unchanged)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in COMMAND_MODULES:
        mod.register(sub)
    _share_global_options(p, [a for a in p._actions if a.option_strings and not isinstance(
        a, (argparse._HelpAction, argparse._VersionAction))])
    _tidy_metavars(p)
    return p


def _share_global_options(parser: argparse.ArgumentParser, actions: Sequence[argparse.Action]) -> None:
    """Give every sub-command's parser (and sub-sub-command's) the top-level ``actions`` (``--verbose``, ``--debug``),
    with the same meaning: ``facecycle process clip.mp4 --debug`` as ``facecycle --debug process clip.mp4``. Their
    default there is SUPPRESS, so a sub-command that is not given one keeps the value given before its name; a count
    (``-v``) given after the name adds to the one given before it (:data:`_AFTER`)."""
    for a in parser._actions:
        if not isinstance(a, argparse._SubParsersAction):
            continue
        for sp in a.choices.values():
            if isinstance(sp, _Parser):
                sp._sub = True
            group = sp.add_argument_group("global options (also before the command)")
            for g in actions:
                copy = _copy.copy(g)
                copy.default = argparse.SUPPRESS
                if isinstance(g, argparse._CountAction):
                    copy.dest = f"{_AFTER}{g.dest}@{sp.prog}"
                group._add_action(copy)
            _share_global_options(sp, actions)


_PATH_WORDS = ("model", "checkpoint", "out", "json", "init", "weights", "calibration", "head", "dir", "video",
               "csv", "record", "file")


def _tidy_metavars(parser: argparse.ArgumentParser) -> None:
    """Give every value option without a metavar a short one (``N``, ``X``, ``PATH``, ``NAME``) instead of
    argparse's upper-cased dest (``SCORE_THRESHOLD``)."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                _tidy_metavars(sp)
            continue
        if not a.option_strings or a.nargs == 0 or a.metavar is not None or a.choices is not None:
            continue
        if a.type is int:
            a.metavar = "N"
        elif a.type is float:
            a.metavar = "X"
        elif any(w in a.dest.split("_") for w in _PATH_WORDS):
            a.metavar = "PATH"
        elif a.nargs in ("+", "*") or a.dest in ("batch", "graphs", "detectors"):
            a.metavar = "LIST"
        else:
            a.metavar = "NAME" if a.dest in ("config", "backend", "baseline", "detector", "split") else "VALUE"


def _actions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> List[argparse.Action]:
    """The actions of ``parser`` and of the subcommands ``args`` chose (``probe eval``: three parsers)."""
    out: List[argparse.Action] = []
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            chosen = a.choices.get(getattr(args, a.dest, None) or "") if a.dest != argparse.SUPPRESS else None
            if chosen is not None:
                out += _actions(chosen, args)
        else:
            out.append(a)
    return out


def _empty_value(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Optional[str]:
    """The option (or positional) given an empty string, where that is not its default: ``Path("")`` is the
    current folder, so ``facecycle process "$CLIP"`` with CLIP unset read the whole folder, and ``live --input ""``
    opened the camera."""
    for a in _actions(parser, args):
        v = getattr(args, a.dest, None)
        if a.default == "" or not (v == "" or (isinstance(v, list) and "" in v)):
            continue
        return a.option_strings[-1] if a.option_strings else str(a.metavar or a.dest)
    return None


def _signal_exit(e: BaseException) -> Optional[int]:
    """The exit code of a recorded SIGINT/SIGTERM (SIGHUP, SIGXCPU) whose exception ``e`` wraps (its ``__cause__`` /
    ``__context__`` chain holds the KeyboardInterrupt or SystemExit the handler raised), else None. A Ctrl-C that
    lands while Python 3.11 builds a class reaches the caller as "RuntimeError: Error calling __set_name__ on 'Field'
    instance ...", which was reported as an internal error (exit 1)."""
    if not sigterm.received():
        return None
    seen, cur = set(), e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, (KeyboardInterrupt, SystemExit)):
            return sigterm.received_code()
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class _WatchedStdout:
    """``sys.stdout`` while a command runs: everything goes to the stream it stands for, and the first write or flush
    that fails (``OSError``) is kept in ``error`` before it is raised, so that the top level tells stdout's failures
    (a reader that left, a full disk) from those of any other file or pipe."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.error: Optional[OSError] = None

    def write(self, s: str) -> int:
        try:
            return self._stream.write(s)
        except OSError as e:
            self.error = e
            raise

    def writelines(self, lines: Iterable[str]) -> None:
        for s in lines:
            self.write(s)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, buffer, ...
        if name.startswith("__") or name == "_stream":
            raise AttributeError(name)
        return getattr(self._stream, name)


def _from_stdout(e: BaseException) -> bool:
    """Whether ``e`` (or what it was raised from) is the error a write to stdout or its flush raised."""
    failed = getattr(sys.stdout, "error", None) if isinstance(sys.stdout, _WatchedStdout) else None
    seen: set = set()
    cur: Optional[BaseException] = e
    while failed is not None and cur is not None and id(cur) not in seen:
        if cur is failed:
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _stdout_failed(e: OSError) -> int:
    """The exit code of a run whose stdout failed with ``e``: 0 where its reader left (``| head``: the reader's
    choice, not our error; under ``set -o pipefail`` it failed jobs at random), else an output error said in one line
    (a full disk, a device error: 4). Descriptor 1 is pointed at /dev/null, so that what stdout still buffers does
    not fail again at the interpreter's exit (the Python docs' recipe, "Note on SIGPIPE")."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, sys.stdout.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation too: a stream without a descriptor
        pass
    if isinstance(e, (BrokenPipeError, ConnectionResetError)):
        return 0
    print(f"facecycle: error: standard output: {write_failure(e)}", file=sys.stderr)
    return OutputError.exit_code


def _flush_stdout() -> int:
    """Write what stdout still buffers now, not at the interpreter's exit (where a failure was "Exception ignored
    ... OSError" and exit 120 after the command's exit 0): 0, or :func:`_stdout_failed`'s code."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as e:
        return _stdout_failed(e)
    except ValueError:  # closed: nothing of it to write
        pass
    return 0


def _tolerant_std_streams() -> None:
    """Make stdout and stderr write what their encoding cannot hold as ``\\u``/``\\x`` escapes instead of failing.
    On Windows, redirected to a file or pipe, they are in the ANSI code page (cp1252, cp1250, ...) with
    ``errors="strict"``, so a name outside it (``视频.mp4`` on a Western-European PC) in ``batch --dry-run > plan.txt``
    was "internal error: UnicodeEncodeError"; elsewhere an ASCII stdout (``PYTHONIOENCODING=ascii``, a ``C`` locale
    where Python does not coerce it) failed alike, part way through its output, on a clip, a model folder or a home
    folder named outside ASCII. The encoding is kept (``PYTHONIOENCODING`` and ``PYTHONUTF8`` decide it, and programs
    that read the output decode it so), and so is an error handler other than ``strict``. A stream that cannot be
    reconfigured is left as it is."""
    for stream in (sys.stdout, sys.stderr):
        stream = getattr(stream, "wrapped", stream)  # stderr's SafeStream: the stream it writes to
        if stream is None or getattr(stream, "errors", None) != "strict" or not hasattr(stream, "reconfigure"):
            continue
        try:
            stream.reconfigure(errors="backslashreplace")
        except (OSError, ValueError, AttributeError, TypeError):  # io.UnsupportedOperation too
            pass


def main(argv: Optional[List[str]] = None) -> int:
    # a closed descriptor 0-2 gets /dev/null (the CSV would get descriptor 2, and libraries' messages with it), and
    # stderr drops what it cannot write (closed, full, a pipe whose reader left): the outputs matter more than the
    # messages, and the exit code is the run's (facecycle_cli.stderr). Stdout is the command's output: a reader that
    # left is no error (exit 0), one that cannot be written is an output error (exit 4), whenever either happens
    reserve_std_fds()
    _tolerant_std_streams()
    safe = guard_stderr()
    watched = None
    if sys.stdout is not None and not isinstance(sys.stdout, _WatchedStdout):
        watched = sys.stdout = _WatchedStdout(sys.stdout)  # type: ignore[assignment]
    from facecycle.errors import suggest_no_video

    suggest_no_video(False)  # each command says whether its out-of-memory errors offer --no-video (process, batch)
    try:
        try:
            code = _main(argv)
        except SystemExit as e:  # argparse's --help and usage errors, a signal's exit: what they printed is written
            failed = _flush_stdout()
            if failed and not e.code:
                raise SystemExit(failed) from None
            raise
        failed = _flush_stdout()
        return code or failed
    finally:
        if watched is not None and sys.stdout is watched:
            sys.stdout = watched._stream  # type: ignore[assignment]
        unguard_stderr(safe)


def _main(argv: Optional[List[str]]) -> int:
    # SIGTERM raises SystemExit(143) (SIGHUP, SIGXCPU: 129, 152), SIGINT KeyboardInterrupt, and all are recorded (a
    # signal swallowed during the imports is acted on later); from the first import on
    sigterm.install()
    try:  # building the parser imports every command module: a Ctrl-C here is still a clean exit
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("facecycle: interrupted", file=sys.stderr)
        return 130
    # the command as given, for the records (process's sidecars, batch.json): argv where main() was given one
    args.command_line = ["facecycle", *[str(a) for a in (sys.argv[1:] if argv is None else argv)]]
    level = logging.WARNING - 10 * min(args.verbose, 2)
    from facecycle.terminal import set_quiet

    set_quiet(getattr(args, "quiet", False))  # (each main() as its own arguments say: in-process callers too)
    if getattr(args, "quiet", False):
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    empty = _empty_value(parser, args)
    if empty is not None:
        print(f"facecycle: error: {empty}: an empty value ('': an unset shell variable?)", file=sys.stderr)
        return UsageError.exit_code
    try:
        code = int(args.func(args) or 0)
        if code == 0 and sigterm.received():  # a signal whose exception something swallowed (facecycle_cli.sigterm)
            got = sigterm.received_code()
            print(f"facecycle: {sigterm.describe(got)}", file=sys.stderr)
            return int(got or sigterm.EXIT_CODE)
        return code
    except SystemExit:  # SIGTERM, SIGHUP, SIGXCPU's handler (facecycle_cli.sigterm) where no command caught it
        if not sigterm.received() or sigterm.received_code() == sigterm.INTERRUPT_CODE:
            raise
        got = int(sigterm.received_code() or sigterm.EXIT_CODE)
        print(f"facecycle: {sigterm.describe(got)}", file=sys.stderr)
        return got
    except FaceCycleError as e:
        if args.debug:
            log.exception("error")
        if sigterm.received() and isinstance(e, InputError):  # an open the signal cut short: the signal's exit
            got = int(sigterm.received_code() or sigterm.EXIT_CODE)
            print(f"facecycle: {sigterm.describe(got)} ({e})", file=sys.stderr)
            return got
        print(f"facecycle: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("facecycle: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:  # an optional dependency this command needs: which extra brings it
        if _signal_exit(e) is not None:
            print(f"facecycle: {sigterm.describe(sigterm.received_code())}", file=sys.stderr)
            return int(sigterm.received_code() or sigterm.EXIT_CODE)
        top = (e.name or "").split(".")[0]
        extra = _EXTRAS.get(top) if top and _missing(top) else None
        if extra is None:  # not an optional dependency, or one that is installed (a broken import): a bug
            if args.debug:
                raise
            print(f"facecycle: internal error: ModuleNotFoundError: {e} (rerun with --debug for details)",
                  file=sys.stderr)
            return 1
        if args.debug:
            log.exception("error")
        print(f"facecycle: error: `facecycle {args.command}` needs {e.name}, which is not installed: "
              f'pip install "facecycle-rt[{extra}]"', file=sys.stderr)  # double quotes: cmd.exe keeps single ones
        return BackendUnavailable.exit_code
    except Exception as e:  # noqa: BLE001 - last resort: one line, no traceback
        if isinstance(e, OSError) and _from_stdout(e):  # stdout's reader left (exit 0) or it cannot be written (4)
            return _stdout_failed(e)
        got = _signal_exit(e)
        if got is not None:  # a signal's exception that something wrapped: the signal's exit, not a bug
            print(f"facecycle: {sigterm.describe(got)}", file=sys.stderr)
            return got
        from facecycle.errors import OutOfMemory, is_out_of_memory

        if is_out_of_memory(e):  # a MemoryError (or ENOMEM) no stage named: out of memory, exit 7, as those it named
            if args.debug:  # (it was "internal error: MemoryError", exit 1, from the video's frame conversion)
                log.exception("error")
            oom = OutOfMemory.while_(f"running facecycle {args.command}", e)
            print(f"facecycle: error: {oom}", file=sys.stderr)
            return oom.exit_code
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"facecycle: internal error: {type(e).__name__}: {msg} (rerun with --debug for details)",
              file=sys.stderr)
        return 1


def run() -> None:
    """Console-script entry point."""
    reserve_std_fds()
    guard_stderr()  # for the whole process: main's last lines and the interpreter's exit too
    sigterm.as_command_line()  # (after a signal, a run's scope leaves the stopping signals ignored: on its way out)
    try:
        code = main()
        if sigterm.received() or code == sigterm.INTERRUPT_CODE:  # on its way out (outputs closed): a repeated
            sigterm.ignore_stopping_signals()  # Ctrl-C or SIGTERM in the interpreter's shutdown must not kill it
    except KeyboardInterrupt:  # a Ctrl-C outside main's own handlers (e.g. during interpreter teardown)
        sigterm.ignore_stopping_signals()
        print("facecycle: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
