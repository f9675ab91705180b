"""``python -m facecycle_cli`` (and ``python -m facecycle``): the CLI. A Ctrl-C while the CLI is still importing
exits 130 without a traceback."""
import sys

try:
    from facecycle_cli import run
except KeyboardInterrupt:
    sys.stderr.write("facecycle: interrupted\n")
    sys.exit(130)

run()
