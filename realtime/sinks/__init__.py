"""Sinks: context managers with ``write(packet)`` — the CSV (+ JSON sidecar), the annotated video, and annotated
pictures for stills."""
from .base import Sink, check_output_name, prepare_output
from .csv_sink import CsvSink, csv_columns, format_rows
from .image_sink import ImageSink, is_image_path
from .sidecar import read_sidecar, versions, write_sidecar
from .video_sink import VideoSink

__all__ = ["Sink", "CsvSink", "VideoSink", "ImageSink", "is_image_path", "csv_columns", "format_rows", "write_sidecar",
           "read_sidecar", "versions", "prepare_output", "check_output_name"]
