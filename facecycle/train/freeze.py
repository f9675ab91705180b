"""Freeze modules for one pass: gradients reach the inputs (and other modules), never these parameters; or
put them in eval mode for one pass."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn

__all__ = ["frozen", "eval_mode"]


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Within the block, ``requires_grad`` is off for every parameter of ``modules``; restored after (each
    parameter's own flag, so parameters frozen before stay frozen)."""
    ps = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in ps]
    for p in ps:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(ps, flags, strict=True):
            p.requires_grad_(f)


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Within the block, ``modules`` are in eval mode (no dropout); each one's previous mode is restored after."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(modules, was, strict=True):
            m.train(w)
