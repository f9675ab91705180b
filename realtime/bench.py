"""``facecycle bench pipeline`` and ``facecycle bench soak`` (registered into the ``bench`` group).

pipeline: end-to-end fps, p50/p95 per-frame latency (decode start → outputs
written), time per stage, drops; the median of ``--runs`` runs, with a
baseline measured in the same process (decode-only fps of the same frames) and
the ratio pipeline/baseline. Figures depend on what else runs on the machine:
the record includes the load average before and after.

soak: one long run over real clips played in a loop (``--frames`` in total),
reporting resident memory (RSS) at the start and end and throughput per
window, so leaks and slow-downs show.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from facecycle.cpus import usable_cpus
from facecycle.errors import InputError, UsageError

from .sources.base import Source
from .sources.video import VideoSource
from .types import FramePacket

__all__ = ["bench_pipeline", "bench_soak", "bench_detectors", "LoopingSource", "decode_fps"]

log = logging.getLogger(__name__)


def _rss_mb() -> float:
    from .soak import rss_mb

    return rss_mb()


def _load() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):  # AttributeError: Windows has no load average
        return None


def decode_fps(path: str, frames: int) -> float:
    """Baseline: frames per second of decoding alone (PyAV → BGR arrays, as the pipeline's source does)."""
    t = time.perf_counter()
    n = 0
    with VideoSource(path) as src:
        for _ in src:
            n += 1
            if n >= frames:
                break
    return n / (time.perf_counter() - t)


class LoopingSource(Source):
    """Play ``paths`` one after the other, in a loop, until ``frames`` frames were produced.

    Timestamps keep increasing across loops (each clip is offset by the end of the previous one);
    ``index`` counts all frames.
    """

    def __init__(self, paths: Sequence[str], frames: int) -> None:
        super().__init__()
        if not paths:
            raise UsageError("no clips to loop")
        self.paths = [str(p) for p in paths]
        for p in self.paths:
            if not Path(p).is_file():
                raise InputError(f"{p}: no such file")
        self.frames = int(frames)
        self.frame_count = self.frames
        self.name = f"loop({len(self.paths)} clips)"
        self.time_base = Fraction(1, 1000000)
        self.fps = 30.0
        self.loops = 0

    def __iter__(self) -> Iterator[FramePacket]:
        n, offset = 0, 0.0
        while n < self.frames:
            for p in self.paths:
                last = 0.0
                with VideoSource(p) as src:
                    for pkt in src:
                        if n >= self.frames:
                            return
                        last = pkt.timestamp
                        pkt.timestamp += offset
                        pkt.pts = int(round(pkt.timestamp * 1e6))
                        pkt.time_base = self.time_base
                        pkt.index = n
                        self.height, self.width = pkt.image.shape[:2]
                        n += 1
                        yield pkt
                    self.errors += src.errors
                offset += last + 1.0 / 30
            self.loops += 1


def _analyzer_from_args(args, tmp: Path):
    from .analyzer import Analyzer

    model = args.model
    if getattr(args, "config", None):
        from engines.bench import export_random

        model = export_random(args.config, tmp / f"random_{args.config}", graphs=["analyze", "neutralize"], atol=1e-2)
    return Analyzer(model=model, backend=args.backend, detector=args.detector, detector_model=args.detector_model,
                    neutral_passes=getattr(args, "neutral_passes", None),
                    neutral_reference=getattr(args, "neutral_reference", True),
                    neutral_lookahead=getattr(args, "neutral_lookahead", None),
                    baseline_lookahead=getattr(args, "baseline_lookahead", False),
                    detect_every=args.detect_every,
                    detect_size=320 if args.detect_size is None else (args.detect_size or None),
                    adapt_detect_size=args.detect_size is None,
                    neutralize=getattr(args, "neutralize", False), threads=args.threads,
                    infer_workers=args.infer_workers, precision=getattr(args, "precision", None),
                    calibration=getattr(args, "calibration", None))



def _median_of(runs: list, key: str, digits: int) -> "float | None":
    """The median of ``key`` over the runs that have a value (a run without frames has none), rounded; None when
    no run has one."""
    vals = [s[key] for s in runs if s.get(key) is not None]
    return round(statistics.median(vals), digits) if vals else None

def bench_pipeline(args: argparse.Namespace) -> dict:
    """Run the benchmark described in the module docstring; returns the JSON record."""
    video = str(args.video_in)
    if not Path(video).is_file():
        raise InputError(f"{video}: no such file")
    if args.runs < 1 or args.frames < 1:
        raise UsageError("--runs and --frames must be >= 1")
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="fc_bench_") as td:
        tmp = Path(td)
        an = _analyzer_from_args(args, tmp)
        with an:
            # warm-up: sessions, allocations, caches
            for _ in an.process_video(video, max_frames=min(30, args.frames), annotate=False):
                pass
            runs, base = [], []
            for r in range(args.runs):
                base.append(decode_fps(video, args.frames))
                run = an.process_video(video, csv=tmp / "bench.csv", video=(tmp / "bench.mp4") if args.video else None,
                                       overwrite=True, max_frames=args.frames, audio=True,
                                       annotate=None if args.video else False)
                run.run()
                s = run.stats.summary()
                runs.append(s)
                log.info("run %d: %.1f fps (decode-only %.1f fps)", r + 1, s["fps"], base[-1])
            info = an.describe()
    med = statistics.median
    fps = med([s["fps"] for s in runs])
    stages = sorted({k for s in runs for k in s["stage_ms_per_frame"]})
    rec = {
        "benchmark": "pipeline", "video": video, "frames_per_run": runs[0]["frames"], "runs": args.runs,
        "video_output": bool(args.video), "csv_output": True,
        "fps_median": round(fps, 2), "fps_runs": [s["fps"] for s in runs],
        "latency_ms_p50": _median_of(runs, "latency_ms_p50", 2),
        "latency_ms_p95": _median_of(runs, "latency_ms_p95", 2),
        "cpu_ms_per_frame": _median_of(runs, "cpu_ms_per_frame", 3),
        "frames_per_cpu_s": round(1000.0 / cpu, 2) if (cpu := _median_of(runs, "cpu_ms_per_frame", 6)) else None,
        "stage_ms_per_frame": {k: round(med([s["stage_ms_per_frame"].get(k, 0.0) for s in runs]), 3)
                               for k in stages},
        "drops": max(s["drops"] for s in runs),
        "detector_runs_per_run": runs[0]["detector_runs"],
        "baseline": {"what": "decode-only fps (PyAV -> BGR), same frames, same process",
                     "fps_median": round(med(base), 2), "fps_runs": [round(b, 2) for b in base]},
        "ratio_to_baseline": round(fps / med(base), 4) if med(base) > 0 else None,
        "config": {"model": info["model"], "backend": info["backend"], "detector": info["detector"],
                   "detect_every": info["detect_every"], "pose_source": info["pose_source"],
                   "expression_head": info["model"]["expression_head"] is not None,
                   "neutralize": info["neutralize"], "neutral_passes": info["neutral_passes"],
                   "neutral_reference": info.get("neutral_reference"),
                   "neutral_lookahead": info.get("neutral_lookahead"),
                   "baseline_lookahead": info.get("baseline_lookahead"),
                   # the threads used: --threads capped to the CPUs this process may use (affinity, CPU quota)
                   "threads": getattr(an.backend, "intra_op_threads", None) or min(args.threads, usable_cpus()),
                   "infer_workers": an.infer_workers,
                   "precision": an.backend.precision},
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_avg_before": load_before, "load_avg_after": _load()},
    }
    return rec


def bench_soak(args: argparse.Namespace) -> dict:
    if args.frames < 1 or args.window < 1:
        raise UsageError("--frames and --window must be >= 1")
    from .soak import WindowMeter, default_clips, summarize_soak

    clips = [str(c) for c in args.videos] or default_clips()
    with tempfile.TemporaryDirectory(prefix="fc_soak_") as td:
        tmp = Path(td)
        an = _analyzer_from_args(args, tmp)
        with an:
            src = LoopingSource(clips, args.frames)
            import gc

            gc.collect()
            rss0 = _rss_mb()
            meter = WindowMeter(args.window)  # per window: fps, frames per CPU-second, RSS, load
            windows = meter.samples
            run = an.process_video(src, csv=tmp / "soak.csv", video=(tmp / "soak.mp4") if args.video else None,
                                   overwrite=True, annotate=None if args.video else False)
            rss_peak = rss0
            for p in run:
                if meter.tick(p.index + 1) is not None:
                    rss_peak = max(rss_peak, windows[-1]["rss_mb"])
            gc.collect()
            rss1 = _rss_mb()
            s = run.stats.summary()
            csv_bytes = (tmp / "soak.csv").stat().st_size
    fps = [w["fps"] for w in windows]
    half = max(1, len(fps) // 2)
    return {
        "benchmark": "soak", "clips": clips, "frames_requested": args.frames, "frames_processed": s["frames"],
        "loops": src.loops, "rss_mb_start": round(rss0, 1), "rss_mb_end": round(rss1, 1),
        "rss_mb_peak": round(rss_peak, 1), "rss_growth_mb": round(rss1 - rss0, 1),
        "fps_overall": s["fps"], "window": args.window, "windows": windows,
        "fps_first_half_median": statistics.median(fps[:half]) if fps else None,
        "fps_second_half_median": statistics.median(fps[half:]) if len(fps) > 1 else None,
        "throughput_ratio_second_to_first_half": (
            round(statistics.median(fps[half:]) / statistics.median(fps[:half]), 4) if len(fps) > 1 else None),
        "csv_bytes": csv_bytes, "drops": s["drops"], "decode_errors": s["decode_errors"],
        "machine": {"cpus": os.cpu_count(), "usable_cpus": usable_cpus(), "load_avg_end": _load()},
        **summarize_soak(windows, rss0, rss1),  # warm-up-aware memory growth, CPU-normalised decay, verdict
    }


def detector_model_options(args) -> dict:
    """``bench detectors``: detector name -> (its model file from ``args``, the option that gives it)."""
    return {"yunet": (args.yunet_model, "--yunet-model"), "scrfd": (args.scrfd_model, "--scrfd-model"),
            "insightface": (args.scrfd_model, "--scrfd-model")}


def bench_detectors(args: argparse.Namespace) -> dict:
    """Detection rate and speed of each detector on every ``--step``-th frame of the given clips.

    "rate" = share of frames with at least one face (on clips that show one person throughout it is
    the recall; clips named ``*no_face*`` have none, ``*noface*`` ones a face for part of the clip and
    are reported apart); "extra" = frames with two or more boxes;
    timings are the detector call only (BGR frame in, boxes in frame pixels out), median per clip
    then median over clips, measured in the same process for every detector, so ratios compare.
    """
    from .detectors import create_detector

    specs = []
    for item in args.detectors.split(","):
        name, _, size = item.strip().partition("@")
        specs.append((name, int(size) if size else 320))
    clips = [Path(c) for c in args.videos]
    frames = {}
    for c in clips:
        with VideoSource(c) as src:
            frames[c.name] = [p.image for p in src if p.index % args.step == 0]
    out = {"benchmark": "detectors", "step": args.step, "frames": sum(len(v) for v in frames.values()),
           "load_avg_before": _load(), "detectors": {}}
    for name, size in specs:
        model = detector_model_options(args).get(name, (None, ""))[0]
        if name != "centerface" and not model:
            continue
        det = create_detector(name, model, max_side=size, score_threshold=0.5)
        det.detect(next(iter(frames.values()))[0])  # warm-up
        per_clip, ms_clip = {}, []
        for cname, imgs in frames.items():
            n1 = n2 = 0
            ts = []
            for img in imgs:
                t = time.perf_counter()
                r = det.detect(img)
                ts.append(time.perf_counter() - t)
                n1 += len(r) >= 1
                n2 += len(r) >= 2
            per_clip[cname] = {"frames": len(imgs), "rate": round(n1 / len(imgs), 4), "extra": n2,
                               "median_ms": round(statistics.median(ts) * 1000, 2)}
            ms_clip.append(statistics.median(ts) * 1000)
        no_face = [k for k in per_clip if "no_face" in k]
        transitions = [k for k in per_clip if "noface" in k and k not in no_face]  # a face for part of the clip
        faces = [k for k in per_clip if k not in no_face and k not in transitions]
        out["detectors"][f"{name}@{size}"] = {
            "median_ms": round(statistics.median(ms_clip), 2),
            "rate_face_clips": round(sum(per_clip[k]["rate"] * per_clip[k]["frames"] for k in faces)
                                     / max(1, sum(per_clip[k]["frames"] for k in faces)), 4),
            "face_clips": len(faces),
            "min_rate_clip": min(((per_clip[k]["rate"], k) for k in faces), default=None),
            "no_face_rate": {k: per_clip[k]["rate"] for k in no_face},
            "transition_rate": {k: per_clip[k]["rate"] for k in transitions},
            "extra_boxes": sum(v["extra"] for v in per_clip.values()),
            "per_clip": per_clip,
        }
    out["load_avg_after"] = _load()
    ref = out["detectors"].get("centerface@320")
    if ref:
        for v in out["detectors"].values():
            v["speed_vs_centerface320"] = round(ref["median_ms"] / v["median_ms"], 2) if v["median_ms"] else None
    return out
