#!/usr/bin/env python3
"""How often the per-frame ``emotion`` label changes, and how late it follows the lasting changes (experiment 55).

Runs the pipeline (shipped model, smoothing on) over clips and compares, on the same smoothed probabilities:
* the label the pipeline gives (``Face.emotion``: held until another class leads it by ``LABEL_MARGIN``), and
* the plain argmax of the smoothed probabilities (the rule before experiment 55).

Per rule: switches a second (all clips; steady and expressive clips apart), blips a second (a run under 300 ms that
returns to the class before it: A -> B -> A), and the delay of the label behind the argmax's lasting changes (a
switch after which the argmax holds for 500 ms). Usage::

    python3 scripts/eval_label_flicker.py --out benchmarks/DAY/label_flicker.json [--max-frames 300]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: clips a person talks through with a steady face (steady) besides the held-out list's (benchmarks/heldout_clips.csv)
STEADY = ["videos/3ddfa_obama.mp4", "videos/pyfeat_single_face.mp4", "videos/tpsmm_driving.mp4",
          "videos/videoretalking_face_1.mp4", "videos/videoretalking_face_2.mp4"]
MORE = ["videos/liveportrait_driving_d0.mp4", "videos/liveportrait_driving_d10.mp4",
        "videos/liveportrait_driving_d11.mp4", "videos/liveportrait_driving_d6.mp4",
        "videos/pyfeat_WolfgangLanger_Pexels.mp4"]


RULES = ("label", "argmax")


def switches(lab: np.ndarray) -> int:
    return int(np.count_nonzero(lab[1:] != lab[:-1]))


def blips(lab: np.ndarray, t: np.ndarray, short: float = 0.3) -> int:
    ch = np.r_[0, np.nonzero(lab[1:] != lab[:-1])[0] + 1, len(lab)]
    n = 0
    for k in range(1, len(ch) - 2):
        a, b = ch[k], ch[k + 1]
        if t[b - 1] - t[a] < short and lab[a - 1] == lab[b]:
            n += 1
    return n


def lasting_changes(lab: np.ndarray, t: np.ndarray, hold: float = 0.5) -> List[tuple]:
    ch = np.nonzero(lab[1:] != lab[:-1])[0] + 1
    out = []
    for k, i in enumerate(ch):
        end = ch[k + 1] if k + 1 < len(ch) else len(lab)
        if t[end - 1] - t[i] >= hold - 1e-6:
            out.append((i, int(lab[i]), end))
    return out


def delays(lab: np.ndarray, t: np.ndarray, events: List[tuple]) -> List[float]:
    out = []
    for i0, c, end in events:
        hit = np.nonzero(lab[i0:end] == c)[0]
        out.append(float(t[i0 + hit[0]] - t[i0]) if len(hit) else float("inf"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--max-frames", type=int, default=300)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from realtime.analyzer import Analyzer
    from realtime.smoothing import HOLD_S, LABEL_MARGIN
    from realtime.types import EMOTIONS

    data = Path(args.shared) / "data"
    with open(ROOT / "benchmarks" / "heldout_clips.csv", newline="") as fh:
        held = [(r["clip"], r["kind"]) for r in csv.DictReader(fh)]
    clips = held + [(c, "steady") for c in STEADY] + [(c, "other") for c in MORE]
    per: Dict[str, dict] = {}
    t_start = time.perf_counter()
    with Analyzer(backend="onnxruntime") as an:
        for name, kind in clips:
            path = data / name
            if not path.is_file():
                print(f"{path}: absent, skipped", file=sys.stderr)
                continue
            lab, top, ts = [], [], []
            for p in an.process_video(path, max_frames=args.max_frames):
                if p.faces:
                    f = p.largest_face
                    lab.append(EMOTIONS.index(f.emotion))
                    top.append(int(np.argmax(f.emotions)))
                    ts.append(p.timestamp)
            t, L, A = np.array(ts), np.array(lab), np.array(top)
            d = delays(L, t, lasting_changes(A, t))
            per[name] = {"kind": "steady" if kind in ("steady", "neutral") else kind, "rows": len(t),
                         "seconds": float(t[-1] - t[0]) if len(t) > 1 else 0.0,
                         "switches": {"label": switches(L), "argmax": switches(A)},
                         "blips": {"label": blips(L, t), "argmax": blips(A, t)},
                         "agree": float(np.mean(L == A)) if len(t) else None,
                         "lasting_changes": len(d), "delays_s": d}
            print(f"{Path(name).stem}: {per[name]['switches']} in {per[name]['seconds']:.1f} s", flush=True)

    def rate(key: str, rule: str, kinds=None) -> float:
        sel = [v for v in per.values() if kinds is None or v["kind"] in kinds]
        s = sum(v["seconds"] for v in sel)
        return round(sum(v[key][rule] for v in sel) / s, 3) if s else float("nan")

    dl = [x for v in per.values() for x in v["delays_s"]]
    fin = np.array([x for x in dl if np.isfinite(x)]) * 1000
    summary = {
        "clips": len(per), "seconds": round(sum(v["seconds"] for v in per.values()), 1),
        "label_margin": LABEL_MARGIN, "hold_s": HOLD_S,
        **{f"switches_per_s_{r}": rate("switches", r) for r in RULES},
        **{f"switches_per_s_{r}_steady": rate("switches", r, ("steady",)) for r in RULES},
        **{f"switches_per_s_{r}_expressive": rate("switches", r, ("expressive",)) for r in RULES},
        **{f"blips_per_s_{r}": rate("blips", r) for r in RULES},
        "lasting_argmax_changes": len(dl), "label_missed": int(sum(not np.isfinite(x) for x in dl)),
        "label_delay_ms_median": float(np.median(fin)) if len(fin) else None,
        "label_delay_ms_max": float(fin.max()) if len(fin) else None,
        "agree": round(float(np.mean([v["agree"] for v in per.values()])), 4),
    }
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": platform.processor()
           or platform.machine(), "max_frames": args.max_frames, "wall_s": round(time.perf_counter() - t_start, 1),
           "summary": summary, "clips": per}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
