"""The sink interface: a context manager with ``write(packet)``."""
from __future__ import annotations

import abc
import os
import sys
from pathlib import Path
from typing import TypeVar, Union

from facecycle.errors import OutputError
from facecycle.files import name_length, name_max

from ..types import FramePacket

__all__ = ["Sink", "prepare_output", "check_output_name"]


def check_output_name(path: Union[str, Path]) -> Path:
    """Raise :class:`OutputError` when the file name of ``path`` is longer than its file system allows (the nearest
    existing folder's ``NAME_MAX``, else 255 bytes; on Windows 255 UTF-16 code units, as NTFS counts): an input named
    near the limit gets ``NAME.annotated.mp4``."""
    p = Path(path)
    limit = name_max(p.parent)  # (the hidden files beside it, its temporary and lock, take a shorter name where
    n = name_length(p.name)     # theirs would not fit: facecycle.files.hidden_name)
    unit = "characters" if sys.platform == "win32" else "bytes"  # NTFS (and exFAT, FAT) count UTF-16 code units
    if n > limit:
        raise OutputError(f"{p.name[:40]}…{p.suffix}: output file name too long ({n} {unit}; this file system allows "
                          f"{limit}): rename the input")
    return p


def prepare_output(path: Union[str, Path], overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: its name fits the file system (:func:`check_output_name`), its folder
    exists (created) and is writable, and the file does not exist unless ``overwrite``. Raises
    :class:`OutputError`."""
    p = check_output_name(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{p.parent}: cannot create folder ({e.strerror or e})") from None
    try:
        exists, is_dir = p.exists(), p.is_dir()
    except OSError as e:
        raise OutputError(f"{p}: cannot be written ({e.strerror or e})") from None
    if exists and not overwrite:
        raise OutputError(f"{p}: exists (use --overwrite, or overwrite=True in Python, to replace it)")
    if is_dir:
        raise OutputError(f"{p}: is a directory")
    if not os.access(p.parent, os.W_OK):
        raise OutputError(f"{p.parent}: not writable")
    return p


_S = TypeVar("_S", bound="Sink")


class Sink(abc.ABC):
    """Receives finished packets in frame order. Use as a context manager; ``close`` is idempotent
    and leaves a valid file behind even after an error or an interrupt."""

    path: Path

    @abc.abstractmethod
    def write(self, packet: FramePacket) -> None:
        ...

    def close(self) -> None:
        pass

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
