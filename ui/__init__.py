"""FaceCycle RT desktop app (PyQt6): live view, per-face panel, recording and CSV export.

Entry points: ``facecycle app`` (CLI) and the ``facecycle-app`` GUI script
(:func:`ui.app.main`). See ``docs/app.md`` for the threading design.
"""

import facecycle  # noqa: E402, F401 - first: it turns ONNX Runtime's telemetry off before anything imports it
