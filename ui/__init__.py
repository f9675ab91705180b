"""FaceCycle RT desktop app (PyQt6): live view, per-face panel, recording and CSV export.

Entry points: ``facecycle app`` (CLI) and the ``facecycle-app`` GUI script
(:func:`ui.app.main`). See ``docs/app.md`` for the threading design.
"""
