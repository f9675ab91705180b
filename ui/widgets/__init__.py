"""The app's widgets: live view, per-face side panel, time plot, error banner, elided label, wrapping row."""
from .banner import ErrorBanner
from .elided import ElidedLabel
from .face_panel import FaceCard, FacePanel
from .live_view import LiveView
from .plot import TimePlot
from .wrap import WrapLayout, WrapRow

__all__ = ["LiveView", "FacePanel", "FaceCard", "TimePlot", "ErrorBanner", "ElidedLabel", "WrapLayout", "WrapRow"]
