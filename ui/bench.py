"""Display-rate benchmark of the app: ``python -m ui.bench VIDEO [--model DIR] [--runs 3] [--frames 300] --json OUT``.

Each round runs, in fresh processes and one after the other, the headless
pipeline (``facecycle bench pipeline --runs 1``, the baseline: the same model,
detector and clip without any GUI) and the app (``facecycle app --exit-after N
--stats-json``, offscreen unless a display is set). The JSON holds every
run, the medians, the app's displayed fps as a ratio of the baseline measured
in the same rounds, and the load average before each round (the machine is
shared: figures are only comparable at similar load).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

__all__ = ["main"]


def _run(cmd: List[str], env: dict) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"ui.bench: {' '.join(cmd[2:5])} … failed ({r.returncode}): {last}")


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ui.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("video")
    p.add_argument("--model", default=None, help="exported model dir (default: the shipped model)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--detector", default="centerface")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--no-baseline", action="store_true", help="app runs only")
    p.add_argument("--json", required=True)
    a = p.parse_args(argv)
    env = dict(os.environ)
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        env.setdefault("QT_QPA_PLATFORM", "offscreen")
    model = ["--model", a.model] if a.model else []
    common = [*model, "--backend", a.backend, "--detector", a.detector]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.runs):
            rnd = {"loadavg_before": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None}
            if not a.no_baseline:
                out = Path(tmp) / f"pipe{i}.json"
                _run([sys.executable, "-m", "facecycle", "bench", "pipeline", a.video, *common,
                      "--frames", str(a.frames), "--runs", "1", "--json", str(out)], env)
                rnd["pipeline_headless_fps"] = json.loads(out.read_text(encoding="utf-8"))["fps_median"]
            out = Path(tmp) / f"app{i}.json"
            _run([sys.executable, "-m", "facecycle", "app", "--input", a.video, *common,
                  "--exit-after", str(a.frames), "--stats-json", str(out)], env)
            st = json.loads(out.read_text(encoding="utf-8"))
            rnd.update(app_displayed_fps=st["displayed_fps"], app_pipeline_fps=st["pipeline_fps"],
                       frames_painted=st["frames_painted"], display_drops=st["display_drops"],
                       source_drops=st["source_drops"], latency_ms_p50=st["latency_ms_p50"],
                       qt_platform=st["qt_platform"])
            rounds.append(rnd)
            print(json.dumps(rnd), flush=True)

    def med(k):
        v = [r[k] for r in rounds if k in r]
        return round(statistics.median(v), 2) if v else None

    res = {"benchmark": "app display rate", "video": a.video, "model": a.model or "default",
           "backend": a.backend, "detector": a.detector, "frames_per_run": a.frames, "runs": a.runs,
           "cpu_count": os.cpu_count(), "rounds": rounds,
           "displayed_fps_median": med("app_displayed_fps"), "app_pipeline_fps_median": med("app_pipeline_fps"),
           "pipeline_headless_fps_median": med("pipeline_headless_fps")}
    if not a.no_baseline:
        ratios = [r["app_displayed_fps"] / r["pipeline_headless_fps"] for r in rounds if r["pipeline_headless_fps"]]
        res["displayed_over_headless_ratio_median"] = round(statistics.median(ratios), 3) if ratios else None
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(f"displayed fps median {res['displayed_fps_median']} "
          f"(headless pipeline {res['pipeline_headless_fps_median']}) -> {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
