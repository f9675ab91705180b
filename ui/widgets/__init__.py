"""The app's widgets: live view, per-face side panel, time plot, error banner."""
from .banner import ErrorBanner
from .face_panel import FaceCard, FacePanel
from .live_view import LiveView
from .plot import TimePlot

__all__ = ["LiveView", "FacePanel", "FaceCard", "TimePlot", "ErrorBanner"]
