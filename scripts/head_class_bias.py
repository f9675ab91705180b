#!/usr/bin/env python3
"""Set a post-hoc bias on classes of an emotion head file, in place (MODEL_CARD.md, experiment 37).

The bias is relative to the head as fitted: a bias already recorded in the file's ``class_bias`` metadata is
taken off first, so running this twice changes nothing, and no ``--set`` restores the fit
(:func:`facecycle.probe.linear.with_class_bias`). The shipped head was made with::

    python scripts/head_class_bias.py facecycle/assets/default/expression_head.safetensors --set sad=0.25

(``scripts/ship_default.py --class-bias sad=0.25`` does the same when a model is shipped from training.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecycle.errors import InputError  # noqa: E402
from facecycle.probe.linear import load_head, parse_class_bias, save_head, with_class_bias  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("head", type=Path)
    ap.add_argument("--set", action="append", default=[], metavar="CLASS=B")
    a = ap.parse_args()
    try:
        head = with_class_bias(load_head(a.head), parse_class_bias(a.set))
    except InputError as e:
        print(f"head_class_bias: error: {e}", file=sys.stderr)
        return 3
    save_head(head, a.head)
    print(f"{a.head}: class_bias {head.meta.get('class_bias', '{}')}; bias {head.bias.round(4).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
