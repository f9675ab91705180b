"""Sinks: context managers with ``write(packet)`` — the CSV (+ JSON sidecar) and the annotated video."""
from .base import Sink, check_output_name, prepare_output
from .csv_sink import CsvSink, csv_columns, format_rows
from .sidecar import read_sidecar, versions, write_sidecar
from .video_sink import VideoSink

__all__ = ["Sink", "CsvSink", "VideoSink", "csv_columns", "format_rows", "write_sidecar", "read_sidecar", "versions",
           "prepare_output", "check_output_name"]
