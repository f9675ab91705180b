"""The app's widgets: live view, per-face side panel, time plot, error and notice banners, elided label, wrapping
row."""
from .banner import ErrorBanner, Notice, NoticeBanner
from .elided import ElidedLabel
from .face_panel import FaceCard, FacePanel
from .live_view import LiveView
from .plot import TimePlot
from .wrap import WrapLayout, WrapRow

__all__ = ["LiveView", "FacePanel", "FaceCard", "TimePlot", "ErrorBanner", "NoticeBanner", "Notice", "ElidedLabel",
           "WrapLayout", "WrapRow"]
