"""``python -m facecycle``: the command line, as the ``facecycle`` command runs it (:mod:`facecycle_cli`).

A launcher, not a library module: nothing imports it, so its one upward import closes no cycle. It is the
single exception in the layer contract (``pyproject.toml``, ``[tool.importlinter]``). A Ctrl-C while the
CLI's packages are still importing (numpy, OpenCV: the first fraction of a second) exits 130 without a
traceback, as ``facecycle_cli/__main__.py`` does for ``python -m facecycle_cli``.
"""
import sys

try:
    import facecycle_cli.__main__  # noqa: F401 - importing it runs the CLI
except KeyboardInterrupt:
    sys.stderr.write("facecycle: interrupted\n")
    sys.exit(130)
