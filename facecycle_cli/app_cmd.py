"""``facecycle app``: the desktop app (PyQt6) — see docs/app.md."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def register(sub: argparse._SubParsersAction) -> None:
    from ui.app import add_arguments  # imports no Qt: PyQt6 is only needed when the command runs

    p = sub.add_parser("app", help="open the desktop app (webcam or video file; live view, recording, CSV)",
                       description="Open the FaceCycle RT window. With --exit-after/--screenshot/--stats-json it "
                                   "runs unattended (tests, docs, benchmarks) and exits 0 when done; 4 where a "
                                   "--record or --csv cannot be written, and the other codes of the README's table on "
                                   "errors.")
    add_arguments(p)
    p.set_defaults(func=_app)


def _app(args: argparse.Namespace) -> int:
    from ui.app import run_app

    from .sigterm import describe

    code = run_app(args)
    if code >= 129 and code != 130:  # stopped by SIGTERM, SIGHUP, SIGXCPU, SIGBREAK: say which, as process does
        print(f"facecycle: {describe(code)}; outputs flushed and closed", file=sys.stderr)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """The ``facecycle-app`` GUI script: same options as ``facecycle app``."""
    from . import main as cli_main

    return cli_main(["app", *(sys.argv[1:] if argv is None else list(argv))])


if __name__ == "__main__":
    sys.exit(main())
