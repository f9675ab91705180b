"""Faces in a dark room: their crops are brightened before their expression is read (a dark face read "angry"
whatever it showed, and froze there); lit faces are never touched."""
from __future__ import annotations

import logging
from typing import List

import av
import numpy as np
import pytest

from realtime.inference import DARK_LIFT, lift_dark

from .conftest import shared_video

#: a neutral talker: "neutral" on every one of its first frames, lit
TALKER = "videoretalking_face_2.mp4"


def test_lift_dark_brightens_only_dark_crops_and_says_by_how_much():
    rng = np.random.default_rng(0)
    lit = rng.integers(60, 200, (2, 16, 16, 3), dtype=np.uint8)
    out, gains = lift_dark(lit)
    assert out is lit and gains.tolist() == [1.0, 1.0]  # nothing copied where nothing is dark
    dark = np.concatenate([lit[:1], (lit[1:] // 10).astype(np.uint8), np.zeros((1, 16, 16, 3), np.uint8)])
    out, gains = lift_dark(dark)
    assert np.array_equal(out[0], dark[0]) and gains[0] == 1.0
    assert gains[1] > 1.0 and abs(float(out[1].mean()) - DARK_LIFT[1]) < 3.0  # scaled to the target level
    assert gains[2] == 10.0 and not out[2].any()  # black stays black: the gain is capped, nothing made up
    assert out.dtype == np.uint8 and not np.shares_memory(out, dark)
    assert lift_dark(np.zeros((0, 16, 16, 3), np.uint8))[1].shape == (0,)


def test_the_faces_own_level_decides_not_the_background():
    """The crop's middle half decides: a face against a bright window is lifted, a lit face against a dark wall is
    not (the whole crop's mean went down to 46 on a lit shared clip; lit faces' middles are 63 and up)."""
    backlit = np.full((1, 16, 16, 3), 240, np.uint8)
    backlit[:, 4:12, 4:12] = 25
    out, gains = lift_dark(backlit)
    assert gains[0] > 1.0 and abs(float(out[0, 4:12, 4:12].mean()) - DARK_LIFT[1]) < 3.0
    dark_wall = np.full((1, 16, 16, 3), 10, np.uint8)
    dark_wall[:, 4:12, 4:12] = 90
    assert float(dark_wall.mean()) < DARK_LIFT[0] and lift_dark(dark_wall)[1][0] == 1.0


def _dark_talker(n: int = 40) -> List[np.ndarray]:
    rng = np.random.default_rng(1)
    out = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24").astype(np.float32) * 0.1 + rng.normal(0, 2.0, (f.height, f.width, 3))
            out.append(np.clip(img, 0, 255).astype(np.uint8))
            if len(out) >= n:
                break
    return out


def test_a_dark_talker_reads_as_lit_and_the_run_says_so(caplog):
    from realtime import Analyzer

    frames = _dark_talker()
    with Analyzer() as an:
        with caplog.at_level(logging.WARNING, logger="realtime.analyzer"):
            run = an.process_video(frames)
            faces = [f for p in run for f in p.faces]
        said = [r.getMessage() for r in caplog.records if "too dark" in r.getMessage()]
        assert len(said) == 1 and "from frame 0" in said[0], said
        assert run.info["dark_faces"]["rows"] == len(faces) == len(frames)
        assert run.info["dark_faces"]["gain_max"] > 5 and run.describe()["dark_lift"] == list(DARK_LIFT)
        assert all(f.lift > 1.0 for f in faces)
        lifted = np.mean([f.emotion == "neutral" for f in faces])
        an.inference.dark_lift = None  # as before: read as it is
        run = an.process_video(frames)
        as_is = np.mean([f.emotion == "neutral" for p in run for f in p.faces])
        assert "dark_faces" not in run.info and run.describe()["dark_lift"] is None
    assert lifted >= 0.9 and as_is <= 0.2, (lifted, as_is)


def test_a_lit_clip_is_never_brightened():
    from realtime import Analyzer

    with av.open(str(shared_video(TALKER))) as c:
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(20), c.decode(video=0), strict=False)]
    with Analyzer() as an:
        run = an.process_video(frames)
        assert all(f.lift == 1.0 for p in run for f in p.faces)
    assert "dark_faces" not in run.info


@pytest.mark.parametrize("neutralize", [True])
def test_a_dark_faces_neutral_face_stays_as_dark_as_the_face(neutralize):
    """The expression is read brightened; the neutral face is the crop's as it was, so that it looks like the
    person there (not a bright face pasted into a dark frame)."""
    from realtime import Analyzer

    frames = _dark_talker(6)
    with Analyzer(neutralize=neutralize) as an:
        faces = [f for p in an.process_video(frames) for f in p.faces]
    assert faces and all(f.neutral is not None for f in faces)
    assert max(float(f.neutral.mean()) for f in faces) < DARK_LIFT[0]


# ----------------------------------------------------------------- which faces: the sidecar and the warning name them
def _lit_and_dark_side_by_side(n: int = 12) -> List[np.ndarray]:
    """The lit talker on the left of each frame and the same talker at a tenth of the light, with a little noise, on
    the right: two faces, one too dark to read as it is."""
    rng = np.random.default_rng(2)
    out = []
    with av.open(str(shared_video(TALKER))) as c:
        for f in c.decode(video=0):
            img = f.to_ndarray(format="bgr24")
            dark = np.clip(img.astype(np.float32) * 0.1 + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
            out.append(np.concatenate([img, dark], axis=1))
            if len(out) >= n:
                break
    return out


def test_the_sidecar_and_the_warning_name_the_dark_face_not_the_lit_one(tmp_path, caplog):
    """Of two people side by side, one in the dark: the sidecar's ``dark_faces.tracks`` lists the dark one's
    ``face_id`` (as the CSV has it) with its rows, the warning names it, and the per-track summary gives the share
    of its rows read brightened; the lit one is in none of them. The batch's settings (the Parquet metadata, which
    groups a dataset's inputs by how their rows were made) do not see these run counts."""
    import csv
    import json

    from realtime import Analyzer
    from realtime.batch.parquet import _settings

    frames = _lit_and_dark_side_by_side()
    half = frames[0].shape[1] // 2
    with Analyzer() as an, caplog.at_level(logging.WARNING, logger="realtime.analyzer"):
        an.process_video(frames, csv=tmp_path / "two.csv").run()
    with open(tmp_path / "two.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["success"] == "1"]
    side = {int(r["face_id"]): float(r["face_x"]) > half for r in rows}  # face_id -> on the dark (right) side
    assert len(rows) == 2 * len(frames) and sorted(side.values()) == [False, True], side
    dark_id = next(t for t, right in side.items() if right)
    lit_id = next(t for t, right in side.items() if not right)

    info = json.loads((tmp_path / "two.json").read_text())
    d = info["dark_faces"]
    assert d["rows"] == len(frames) and d["first_frame"] == 0 and d["tracks_total"] == 1
    assert d["tracks"] == [{"face_id": dark_id, "rows": len(frames), "first_frame": 0, "last_frame": len(frames) - 1,
                            "gain_max": d["gain_max"]}] and d["gain_max"] > 5

    said = [r.getMessage() for r in caplog.records if "too dark" in r.getMessage()]
    assert len(said) == 1 and "from frame 0" in said[0], said
    assert f"face #{dark_id} brightened" in said[0] and f"#{lit_id}" not in said[0], said

    tracks = {t["face_id"]: t for t in info["summary"]["tracks"]}
    assert tracks[dark_id]["lifted_rows"] == len(frames) and tracks[dark_id]["lifted_share"] == 1.0
    assert "lifted_share" not in tracks[lit_id] and "lifted_rows" not in tracks[lit_id]  # a lit face: as it was
    assert info["summary"]["faces"]["lifted_share"] == 0.5

    # the run's own counts, not its settings: a batch's dataset does not split over them
    lit = {k: v for k, v in info.items() if k != "dark_faces"}
    (tmp_path / "lit.json").write_text(json.dumps(lit))
    assert _settings(tmp_path / "two.csv") == _settings(tmp_path / "lit.csv") is not None


def test_dark_faces_lists_the_most_brightened_faces_and_counts_the_rest(caplog):
    """A run with very many dark faces (a folder of dark photos has a track per face): the sidecar lists the
    ``DARK_TRACKS_LISTED`` with the most rows brightened, most first, and ``tracks_total`` counts them all; the
    warning names a few ("and N more"), and faces brightened later are each said (at INFO level) only up to a
    bound."""
    from fractions import Fraction

    from realtime import Analyzer
    from realtime.analyzer import DARK_TRACKS_LISTED, DARK_TRACKS_SAID, _name_faces
    from realtime.types import Face, FramePacket

    assert _name_faces([3]) == "face #3" and _name_faces([1, 2, 4]) == "faces #1, #2 and #4"
    assert _name_faces(list(range(8)), most=5) == "faces #0, #1, #2, #3, #4 and 3 more"

    def face(tid: int, lift: float) -> Face:
        return Face(box=np.array([0, 0, 10, 10], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                    track_id=tid, lift=lift)

    def packet(i: int, faces: List[Face]) -> FramePacket:
        return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25,
                           image=np.zeros((8, 8, 3), np.uint8), faces=faces)

    frames = [np.zeros((64, 64, 3), np.uint8)]
    with Analyzer() as an:
        run = an.process_video(frames)
        try:
            with caplog.at_level(logging.INFO, logger="realtime.analyzer"):
                # frame 0: seven dark faces and a lit one (id 99)
                run._note_dark(packet(0, [face(t, 4.0) for t in range(7)] + [face(99, 1.0)]))
                # then 200 faces brightened once each (later ids), and face 3 on 5 more frames, face 5 on 2
                for i in range(200):
                    run._note_dark(packet(1 + i, [face(1000 + i, 2.0 + i / 100)]))
                for i in range(5):
                    run._note_dark(packet(300 + i, [face(3, 9.5)] + ([face(5, 1.5)] if i < 2 else [])))
            said = [r for r in caplog.records if "too dark" in r.getMessage()]
            warned = [r.getMessage() for r in said if r.levelno == logging.WARNING]
            assert len(warned) == 1 and "(from frame 0): faces #0, #1, #2, #3, #4 and 2 more brightened" in warned[0]
            assert "#99" not in warned[0]
            later = [r.getMessage() for r in said if r.levelno == logging.INFO]
            assert len(later) == DARK_TRACKS_SAID and "face #1000 too dark as well (from frame 1)" in later[0]
            assert "further ones: the sidecar's dark_faces" in later[-1]

            d = run.describe()["dark_faces"]
            assert d["rows"] == 7 + 200 + 5 + 2 and d["first_frame"] == 0 and d["gain_max"] == 9.5
            assert d["tracks_total"] == 7 + 200 and len(d["tracks"]) == DARK_TRACKS_LISTED
            assert d["tracks"][:2] == [{"face_id": 3, "rows": 6, "first_frame": 0, "last_frame": 304, "gain_max": 9.5},
                                       {"face_id": 5, "rows": 3, "first_frame": 0, "last_frame": 301,
                                        "gain_max": 4.0}]
            ids = [t["face_id"] for t in d["tracks"]]
            assert ids[2:7] == [0, 1, 2, 4, 6] and ids[7:] == list(range(1000, 1000 + DARK_TRACKS_LISTED - 7))
            assert 99 not in ids and run.info["dark_faces"] is d  # the run's info is what the sidecar writes
        finally:
            run.close()
