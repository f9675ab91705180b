"""The sink interface: a context manager with ``write(packet)``."""
from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Union

from facecycle.errors import OutputError

from ..types import FramePacket

__all__ = ["Sink", "prepare_output"]


def prepare_output(path: Union[str, Path], overwrite: bool = False) -> Path:
    """Check that ``path`` may be written: its folder exists (created) and is writable, and
    the file does not exist unless ``overwrite``. Raises :class:`OutputError`."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{p.parent}: cannot create folder ({e.strerror or e})") from None
    if p.exists() and not overwrite:
        raise OutputError(f"{p}: exists (use --overwrite to replace it)")
    if p.is_dir():
        raise OutputError(f"{p}: is a directory")
    if not os.access(p.parent, os.W_OK):
        raise OutputError(f"{p.parent}: not writable")
    return p


class Sink(abc.ABC):
    """Receives finished packets in frame order. Use as a context manager; ``close`` is idempotent
    and leaves a valid file behind even after an error or an interrupt."""

    path: Path

    @abc.abstractmethod
    def write(self, packet: FramePacket) -> None:
        ...

    def close(self) -> None:
        pass

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
