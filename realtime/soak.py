"""Measurements and verdicts for ``facecycle bench soak`` (the run itself: :func:`realtime.bench.bench_soak`).

A soak run plays real clips in a loop for tens of thousands of frames and samples, every ``window``
frames: wall-clock throughput (fps), throughput per CPU-second of this process (``cpu_fps``: frames
divided by the process's user+system CPU time in the window, all threads), resident memory (RSS) and the
1-minute load average. On a shared machine wall fps follows the other processes' load; ``cpu_fps`` is the
work per frame, so a leak that slows the pipeline (a growing list scanned per frame, say) shows as a
falling ``cpu_fps`` even while the load changes.

Verdicts (issue 7): memory grows < ``RSS_LIMIT_MB`` (50 MB) from the end of the first window (sessions,
arenas and decoder pools are allocated by then) to the end, and throughput does not decay: the median
``cpu_fps`` of the second half of the windows is ≥ ``DECAY_LIMIT`` (0.9) × that of the first half.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional

from facecycle.errors import UsageError

__all__ = ["DEFAULT_CLIPS", "RSS_LIMIT_MB", "DECAY_LIMIT", "default_clips", "rss_mb", "WindowMeter",
           "summarize_soak"]

log = logging.getLogger(__name__)

#: clips of ../shared/data/videos looped by default: one face, a face that comes and goes, a close-up
DEFAULT_CLIPS = ("pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_face_noface.mov", "liveportrait_driving_d0.mp4")
RSS_LIMIT_MB = 50.0
DECAY_LIMIT = 0.9


def default_clips() -> List[str]:
    """The :data:`DEFAULT_CLIPS` found in ``$FACECYCLE_SHARED/data/videos`` (default ``../shared`` next to
    a clone of the project; an installed package has none). Raises UsageError when none is there (then the user
    must name clips)."""
    project = Path(__file__).resolve().parents[1]
    env = os.environ.get("FACECYCLE_SHARED")
    if not env and not (project / "pyproject.toml").is_file():  # an installed package: no ../shared beside it
        raise UsageError("no VIDEO given, and the default clips are found only in a clone beside ../shared or "
                         "where FACECYCLE_SHARED points; name one or more video files to loop")
    shared = Path(env) if env else project.parent / "shared"
    found = [str(shared / "data" / "videos" / n) for n in DEFAULT_CLIPS
             if (shared / "data" / "videos" / n).is_file()]
    if not found:
        raise UsageError(f"no VIDEO given and the default clips are not in {shared / 'data' / 'videos'}; "
                         "name one or more video files to loop")
    return found


def rss_mb() -> float:
    """Resident set size of this process in MiB (psutil, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2 ** 20
    except ImportError:
        try:
            with open("/proc/self/status") as f:  # Linux; macOS and Windows have no /proc: NaN there
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
    return float("nan")


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system  # this process, all threads


class WindowMeter:
    """Call :meth:`tick` once per finished frame; every ``window`` frames it returns (and keeps) a sample
    ``{"end_frame", "fps", "cpu_fps", "cpu_util", "rss_mb", "load1"}``."""

    def __init__(self, window: int) -> None:
        self.window = int(window)
        self.samples: List[Dict[str, float]] = []
        self._n = 0
        self._t = time.perf_counter()
        self._c = _cpu_s()

    def tick(self, end_frame: int) -> Optional[Dict[str, float]]:
        self._n += 1
        if self._n < self.window:
            return None
        now, cpu = time.perf_counter(), _cpu_s()
        dt, dc = now - self._t, cpu - self._c
        try:
            load1 = round(os.getloadavg()[0], 2)
        except (OSError, AttributeError):  # AttributeError: Windows has no load average
            load1 = None
        s = {"end_frame": int(end_frame), "fps": round(self._n / dt, 2) if dt > 0 else None,
             "cpu_fps": round(self._n / dc, 2) if dc > 0 else None,
             "cpu_util": round(dc / dt, 2) if dt > 0 else None, "rss_mb": round(rss_mb(), 1), "load1": load1}
        self.samples.append(s)
        self._n, self._t, self._c = 0, now, cpu
        log.info("soak: %d frames, %.1f fps, %.1f frames/CPU-s, RSS %.1f MB, load %s", end_frame,
                 s["fps"] or 0, s["cpu_fps"] or 0, s["rss_mb"], load1)
        return s


def _halves(vals: List[float]):
    vals = [v for v in vals if v]
    if len(vals) < 2:
        return None, None, None
    h = len(vals) // 2
    a, b = statistics.median(vals[:h]), statistics.median(vals[h:])
    return round(a, 2), round(b, 2), round(b / a, 4) if a else None


def summarize_soak(samples: List[Dict[str, float]], rss_start: float, rss_end: float) -> dict:
    """Memory growth, throughput halves and the pass/fail verdicts of a soak run (see the module doc)."""
    rss_warm = samples[0]["rss_mb"] if samples else rss_start
    f1, f2, fr = _halves([s["fps"] for s in samples])
    c1, c2, cr = _halves([s["cpu_fps"] for s in samples])
    growth_warm = round(rss_end - rss_warm, 1)
    mem_ok = growth_warm < RSS_LIMIT_MB
    tput_ok = cr is None or cr >= DECAY_LIMIT
    return {
        "rss_mb_after_first_window": round(rss_warm, 1),
        "rss_growth_after_first_window_mb": growth_warm,
        "fps_first_half_median": f1, "fps_second_half_median": f2, "fps_ratio_second_to_first_half": fr,
        "cpu_fps_first_half_median": c1, "cpu_fps_second_half_median": c2,
        "cpu_fps_ratio_second_to_first_half": cr,
        "verdict": {"memory_growth_under_50mb": mem_ok, "throughput_no_decay": tput_ok, "pass": mem_ok and tput_ok,
                    "rule": f"RSS growth after the first window < {RSS_LIMIT_MB:g} MB; median frames per CPU-second "
                            f"of the second half >= {DECAY_LIMIT:g} x the first half's"},
    }
