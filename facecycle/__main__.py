"""``python -m facecycle``: the command line, as the ``facecycle`` command runs it (:mod:`facecycle_cli`).

A launcher, not a library module: nothing imports it, so its one upward import closes no cycle. It is the
single exception in the layer contract (``pyproject.toml``, ``[tool.importlinter]``).
"""
import facecycle_cli.__main__  # noqa: F401 - importing it runs the CLI
