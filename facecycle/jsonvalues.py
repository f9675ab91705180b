"""The types of values read back from JSON and metadata files a user or a crash may have damaged.

``json.loads`` gives ``True``/``False`` as Python bools, which are ints too: a check written as
``isinstance(v, int)`` takes ``true`` for a count. It also reads ``NaN``, ``Infinity`` and integers of any size
(``1e999`` written out as digits), which ``math.isfinite`` refuses or cannot even convert (OverflowError). These three
tests say what a field holds; each caller keeps its own range (``> 0``, ``1 .. 4096``) after them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Type

from .errors import FaceCycleError

__all__ = ["is_finite", "is_int", "is_number", "read_json_object"]


def is_int(v: object) -> bool:
    """Whether ``v`` is a JSON integer: an ``int`` that is not a bool (JSON ``true`` is no count)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: object) -> bool:
    """Whether ``v`` is a JSON number: an ``int`` or ``float`` that is not a bool (NaN and infinities included)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_finite(v: object) -> bool:
    """Whether ``v`` is a finite JSON number: :func:`is_number` and neither NaN nor an infinity; an integer too large
    for a float is not finite either (``math.isfinite`` raises OverflowError on it, this says False)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):  # is_number, written out so type checkers narrow v
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def read_json_object(path: Path, what: str, error: Type[FaceCycleError]) -> Dict[str, Any]:
    """The JSON object in the file at ``path`` (a settings file the project wrote: a data set's ``meta.json``, a
    critic's ``critic.json``); ``error`` (a :class:`~facecycle.errors.FaceCycleError` class) naming the file and
    ``what`` it holds where it cannot be read, is not UTF-8 JSON text, or holds another JSON type than an object."""
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    except ValueError as e:  # JSON or UTF-8
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise error(f"{path}: damaged {what} (not JSON text: {why})") from None
    if not isinstance(obj, dict):
        raise error(f"{path}: damaged {what} (a JSON {type(obj).__name__}, not an object)")
    return obj
