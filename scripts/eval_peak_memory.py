#!/usr/bin/env python3
"""Peak memory of ``facecycle process`` with and without the look-aheads (docs/pipeline.md).

Builds the reel of :mod:`eval_reel_ids` (the first ``--frames`` frames of every clip of ``--dir``, 640×360),
then runs ``python -m facecycle process REEL --no-video`` once per setting in a fresh process and records that
process's peak resident memory (``os.wait4``'s ``ru_maxrss``), its wall time and the fps it reports.

Usage::

    python scripts/eval_peak_memory.py --out benchmarks/DIR/peak_memory.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import write_result  # noqa: E402
from eval_reel_ids import make_reel  # noqa: E402

SETTINGS = {"default": [], "baseline_lookahead": ["--baseline-lookahead"], "neutralize": ["--neutralize"],
            "neutralize_read_once": ["--neutralize", "--no-neutral-lookahead"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=ROOT.parent / "shared" / "data" / "videos")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    res = {"what": __doc__.splitlines()[0], "runs": {}}
    with tempfile.TemporaryDirectory() as td:
        reel = Path(td) / "reel.mp4"
        make_reel(sorted(a.dir.glob("*.mp4")), a.frames, reel)
        for name, opts in SETTINGS.items():
            out = Path(td) / name
            t = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-m", "facecycle", "process", str(reel), "--no-video",
                                     "--no-progress", "--out-dir", str(out), *opts], cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            side = json.loads((out / "reel.json").read_text())
            res["runs"][name] = {"options": opts, "exit": os.waitstatus_to_exitcode(status),
                                 "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
                                 "wall_s": round(time.perf_counter() - t, 1), "fps": side["stats"]["fps"],
                                 "frames": side["stats"]["frames"], "faces": side["stats"]["faces"]}
            print(name, res["runs"][name], flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
