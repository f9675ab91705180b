"""The command line moved to the top-layer package :mod:`facecycle_cli` (``facecycle`` and ``facecycle-app``
point there). This stub only answers console scripts installed before the move, with how to reinstall; it
imports nothing, so the model layer still reaches no layer above it. Remove it once installs have caught up.
"""
import sys

__all__ = ["run", "main"]

_MESSAGE = ("facecycle: the command line moved to the facecycle_cli package; reinstall this checkout "
            "(pip install --no-deps -e .), or run `python -m facecycle` from the repository root\n")


def main(argv=None) -> int:
    sys.stderr.write(_MESSAGE)
    return 2


def run() -> None:
    sys.exit(main())
