"""Behaviour that must not depend on the platform a user runs: names a Windows path reads otherwise, text that is
not UTF-8, a header written with Windows line ends."""
from __future__ import annotations

import os

import pytest

from facecycle.errors import ModelError
from facecycle.files import write_atomic, write_failure
from facecycle.manifest import model_file


@pytest.mark.parametrize("name", ["C:..\\x.onnx", "C:x.onnx", "c:/x.onnx", "\\\\server\\share\\x.onnx", "\\x.onnx",
                                  "../x.onnx", "/x.onnx", "a/../../x.onnx"])
def test_a_manifest_file_name_with_a_drive_or_a_root_is_refused_everywhere(name):
    """``C:..\\x.onnx`` has no ``..`` part and is not absolute, yet on Windows it is drive-relative: outside the
    model folder. Refused on every platform, so that a model folder reads the same everywhere."""
    with pytest.raises(ModelError, match="leaves the model folder"):
        model_file(name, "graph 'analyze'")
    assert model_file("graphs/analyze.onnx", "graph 'analyze'") == "graphs/analyze.onnx"


def test_a_name_that_is_not_text_fails_the_write_as_an_os_error_and_leaves_nothing(tmp_path):
    """A Linux file name's bytes that are not UTF-8 reach a table as surrogates: writing them raised
    UnicodeEncodeError (an internal error) and left the temporary file behind."""
    with pytest.raises(OSError) as e:
        write_atomic(tmp_path / "index.csv", "source\nclip\udcff.mp4\n", newline="")
    assert "UTF-8" in write_failure(e.value) and e.value.filename == str(tmp_path / "index.csv")
    assert os.listdir(tmp_path) == []


def test_a_header_only_csv_with_windows_line_ends_is_no_data(tmp_path):
    """A header-only CSV an older build wrote on Windows ends in CRLF: it is recognised as no data."""
    from facecycle_cli.process_cmd import _holds_no_rows
    from realtime.sinks.csv_sink import csv_columns

    p = tmp_path / "a.csv"
    p.write_bytes((",".join(csv_columns(8)) + "\r\n").encode())
    assert _holds_no_rows(p)
    p.write_bytes(b"frame,face_id,timestamp,confidence,success,notes\r\n")
    assert not _holds_no_rows(p)
