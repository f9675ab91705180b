#!/usr/bin/env python
"""Throughput of `facecycle batch`: in this process vs Ray local with 1 and 2 workers, medians of several runs.

Each run is a fresh `python -m facecycle batch CLIPS --out-dir TMP --no-video --no-progress` (CSV only, the
research-corpus case) read back through its batch.json: ``work_s`` (from a started executor to the last video,
so Ray's start-up is reported apart as ``startup_s``), frames, fps and videos per minute, plus the command's
wall time. The machine's load average and the heavy-job lock are recorded before and after every run.

    python scripts/bench_batch.py --json benchmarks/2026-12-02-cpu2/batch_ray.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("3ddfa_obama.mp4", "liveportrait_driving_d5.mp4", "liveportrait_driving_d7.mp4",
         "liveportrait_driving_d18.mp4", "liveportrait_source_s32.mp4", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
         "tpsmm_driving.mp4", "videoretalking_face_3.mp4")
LOCK = Path("/tmp/facecycle-heavy.lock")


def _load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "heavy_lock": LOCK.exists()}


def _one(clips, mode: str, workers: int, extra) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        cmd = [sys.executable, "-m", "facecycle", "batch", *map(str, clips), "--out-dir", tmp, "--no-video",
               "--no-progress", *extra]
        cmd += ["--cluster", "none"] if mode == "in-process" else ["--cluster", "local", "--workers", str(workers)]
        before = _load()
        t = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            raise SystemExit(f"bench_batch: {' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
        rec = json.loads((Path(tmp) / "batch.json").read_text())
    per_video = [{"rel": e["rel"], "frames": e["frames"], "time_s": e["time_s"], "fps": e["fps"],
                  "model_loaded": e.get("model_loaded"), "max_rss_mb": e.get("max_rss_mb"),
                  "csv_bytes": e.get("csv_bytes")} for e in rec["inputs"]]
    return {"wall_s": round(wall, 3), "startup_s": rec["executor"].get("startup_s"),
            "work_s": rec["throughput"]["work_s"], "frames": rec["counts"]["frames"],
            "fps": rec["throughput"]["fps"], "videos_per_min": rec["throughput"]["videos_per_min"],
            "videos": rec["counts"]["done"], "load_before": before, "load_after": _load(), "per_video": per_video}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", help="videos (default: 8 clips of ../shared/data/videos)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="Ray local worker counts (default 1,2)")
    ap.add_argument("--no-in-process", dest="in_process", action="store_false",
                    help="skip the in-process (no Ray) baseline")
    ap.add_argument("--json", required=True)
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="-- then more `facecycle batch` options")
    a = ap.parse_args(argv)
    videos = Path(os.environ.get("FACECYCLE_SHARED", ROOT.parent / "shared")) / "data" / "videos"
    clips = [Path(c) for c in a.clips] or [videos / c for c in CLIPS]
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        raise SystemExit(f"bench_batch: missing clips: {', '.join(missing)}")
    extra = [x for x in a.extra if x != "--"]
    modes = ([("in-process", 1)] if a.in_process else []) + [("ray", int(w)) for w in a.workers.split(",")]
    out = {"what": "facecycle batch throughput, CSV only (--no-video), default model and detector",
           "clips": [c.name for c in clips], "extra_options": extra, "runs": a.runs,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "processor": platform.processor()},
           "load_at_start": _load(), "cases": []}
    try:
        import ray

        out["ray"] = ray.__version__
    except ImportError:
        out["ray"] = None
    for mode, w in modes:
        runs = []
        for i in range(a.runs):
            r = _one(clips, mode, w, extra)
            print(f"{mode} workers={w} run {i + 1}: {r['fps']} fps, {r['videos_per_min']} videos/min, "
                  f"wall {r['wall_s']} s (startup {r['startup_s']} s), load {r['load_before']['loadavg_1m']}",
                  file=sys.stderr)
            runs.append(r)
        med = {k: round(statistics.median(r[k] for r in runs if r[k] is not None), 3)
               for k in ("fps", "videos_per_min", "work_s", "wall_s", "startup_s")
               if any(r[k] is not None for r in runs)}
        # per-video cost of one worker: seconds per frame on the videos' own clocks (model load excluded)
        spf = [v["time_s"] / v["frames"] for r in runs for v in r["per_video"]
               if v["frames"] and not v["model_loaded"]]
        med["worker_s_per_frame"] = round(statistics.median(spf), 5) if spf else None
        rss = [v["max_rss_mb"] for r in runs for v in r["per_video"] if v.get("max_rss_mb")]
        med["worker_peak_rss_mb"] = max(rss) if rss else None
        vb = [(v["csv_bytes"], v["frames"]) for r in runs for v in r["per_video"] if v.get("csv_bytes")]
        med["csv_bytes_per_frame"] = round(sum(b for b, _ in vb) / sum(f for _, f in vb), 1) if vb else None
        out["cases"].append({"mode": mode, "workers": w, "median": med, "runs": runs})
    out["load_at_end"] = _load()
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps([{"mode": c["mode"], "workers": c["workers"], **c["median"]} for c in out["cases"]], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
