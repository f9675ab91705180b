"""`facecycle.jsonvalues`: what a JSON value read back from a damaged file holds (bools are no numbers, NaN and
infinities and integers too large for a float are not finite)."""
from __future__ import annotations

import json
import math
from typing import Callable

import pytest

from facecycle.jsonvalues import is_finite, is_int, is_number

#: value -> (is_int, is_number, is_finite)
TABLE = [
    (True, (False, False, False)),
    (False, (False, False, False)),
    (1, (True, True, True)),
    (0, (True, True, True)),
    (-3, (True, True, True)),
    (1.5, (False, True, True)),
    (1.0, (False, True, True)),
    (math.nan, (False, True, False)),
    (math.inf, (False, True, False)),
    (-math.inf, (False, True, False)),
    (10**400, (True, True, False)),
    (-(10**400), (True, True, False)),
    ("1", (False, False, False)),
    (None, (False, False, False)),
    ([1], (False, False, False)),
    ({"a": 1}, (False, False, False)),
]
FUNCTIONS: list[Callable[[object], bool]] = [is_int, is_number, is_finite]


@pytest.mark.parametrize("value, expected", TABLE, ids=[repr(v)[:20] for v, _ in TABLE])
def test_table(value: object, expected: tuple[bool, bool, bool]) -> None:
    """Each function against each value of the table, and every answer a plain bool."""
    got = tuple(f(value) for f in FUNCTIONS)
    assert got == expected
    assert all(type(g) is bool for g in got)


def test_values_as_json_reads_them() -> None:
    """The same answers for what ``json.loads`` gives: ``true``, ``NaN``, ``Infinity``, a 400-digit integer."""
    read = json.loads('[true, 2, 2.5, NaN, Infinity, -Infinity, 1' + "0" * 400 + ', "2", null]')
    assert [is_int(v) for v in read] == [False, True, False, False, False, False, True, False, False]
    assert [is_number(v) for v in read] == [False, True, True, True, True, True, True, False, False]
    assert [is_finite(v) for v in read] == [False, True, True, False, False, False, False, False, False]
