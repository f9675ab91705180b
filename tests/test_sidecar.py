"""The JSON sidecar says what produced the numbers, and the CSV's cells keep their documented types.

One real run of the shipped default model over a short clip (a real face clip, then black frames: no-face rows) is
shared by the tests that read its outputs; the rest are unit tests without a model.
"""
from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import av
import cv2
import numpy as np
import pytest

from facecycle.files import sha256_file
from realtime.baseline import NeutralBaseline
from realtime.heads import HEAD_FILE
from realtime.sinks.csv_sink import csv_columns, format_rows
from realtime.smoothing import TrackSmoother
from realtime.types import EMOTIONS, Face, FramePacket

from .conftest import FACE_CLIP, real_frames, write_video

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "csv.md"
MAX_FRAMES = 36  # of the 40 frames written: a run cut short by max_frames


def _run(model_dir: Path, out: Path, frames: List[np.ndarray]) -> Tuple[Path, Path, dict]:
    from realtime import Analyzer

    clip = write_video(out / "clip.mp4", frames, rate=25)
    csv = out / "clip.csv"
    with Analyzer(model=model_dir, infer_workers=1) as an:
        for _ in an.process_video(clip, csv=csv, max_frames=MAX_FRAMES):
            pass
    return csv, out / "clip.json", json.loads((out / "clip.json").read_text())


@pytest.fixture(scope="module")
def default_model() -> Path:
    from facecycle.assets import default_model_dir

    d = Path(default_model_dir())
    if not (d / "manifest.json").is_file() or not (d / HEAD_FILE).is_file():
        pytest.skip(f"the shipped default model (with its expression head) is absent from {d}")
    return d


@pytest.fixture(scope="module")
def real_run(default_model, tmp_path_factory) -> Tuple[Path, Path, dict]:
    """(csv, sidecar path, sidecar) of the default model over a real face clip's 30 frames then 10 black ones."""
    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted)")
    frames = real_frames(30) + [np.zeros((180, 320, 3), np.uint8)] * 10
    return _run(default_model, tmp_path_factory.mktemp("sidecar"), frames)


# ------------------------------------------------------------------ defect 1: what produced the numbers
def test_the_sidecar_names_the_model_files_by_checksum_as_the_batch_fingerprint_does(real_run, default_model):
    from realtime.batch.job import BatchSettings
    from realtime.batch.plan import settings_fingerprint

    side = real_run[2]
    model = side["model"]
    assert model["manifest_sha256"] == sha256_file(default_model / "manifest.json")
    assert model["head_sha256"] == sha256_file(default_model / HEAD_FILE)
    # one helper, one answer: the batch fingerprint's record of the same model
    fp_model = settings_fingerprint(BatchSettings(analyzer={"model": str(default_model)}))[1]["model"]
    assert {k: model[k] for k in fp_model} == fp_model
    # the keys other code reads are unchanged
    assert model["dir"] == str(default_model) and model["code_dim"] == side["columns"]["code_dim"]
    assert side["smoothing"] == "one-euro"


def test_a_run_cut_short_by_max_frames_says_so(real_run):
    side = real_run[2]
    assert side["status"] == "complete"
    assert side["max_frames"] == MAX_FRAMES
    assert side["frames"] == side["stats"]["frames"] == MAX_FRAMES < side["input"]["frame_count"]


def test_the_sidecar_records_the_one_euro_parameters(real_run):
    params = real_run[2]["smoothing_params"]
    assert set(params) == {"pose", "code", "intensity", "emotions"}  # what the run smooths (not landmarks)
    assert params["pose"] == {"min_cutoff": 1.0, "beta": 0.3, "d_cutoff": 1.0}
    assert params["code"] == {"min_cutoff": 1.5, "beta": 0.05, "d_cutoff": 1.0}
    assert all(set(v) == {"min_cutoff", "beta", "d_cutoff"} for v in params.values())


def test_smoother_describe_gives_every_filters_parameters_and_follows_overrides():
    s = TrackSmoother({"pose": dict(min_cutoff=0.5, beta=0.1)})
    d = s.describe()
    assert d["pose"] == {"min_cutoff": 0.5, "beta": 0.1, "d_cutoff": 1.0}
    assert d["intensity"] == {"min_cutoff": 1.5, "beta": 0.5, "d_cutoff": 1.0}
    assert s.describe(["code"]) == {"code": {"min_cutoff": 1.5, "beta": 0.05, "d_cutoff": 1.0}}
    json.dumps(d)  # plain numbers


def test_a_model_without_a_head_has_no_head_checksum_and_an_empty_rel_intensity(default_model, tmp_path):
    """Defects 1 and 6 on a real run: the shipped model's graphs without its expression head."""
    if not FACE_CLIP.is_file():
        pytest.skip(f"{FACE_CLIP} is absent (../shared not mounted)")
    nohead = tmp_path / "nohead"
    nohead.mkdir()
    for f in default_model.iterdir():
        if f.is_file() and f.name not in (HEAD_FILE, "manifest.json"):
            (nohead / f.name).symlink_to(f)
    man = json.loads((default_model / "manifest.json").read_text())
    man.pop("head", None)  # the manifest records the shipped head: a folder without it records none
    (nohead / "manifest.json").write_text(json.dumps(man))
    import csv as csvlib

    csv, _, side = _run(nohead, tmp_path, real_frames(40))
    assert side["model"]["head_sha256"] is None and side["model"]["expression_head"] is None
    assert side["model"]["manifest_sha256"] == sha256_file(nohead / "manifest.json")
    with open(csv, newline="") as f:
        faces = [r for r in csvlib.DictReader(f) if r["success"] == "1"]
    ready = [r for r in faces if r["baseline_ready"] == "1"]
    assert ready, "the person baseline never warmed up"
    assert all(r["rel_intensity"] == "" for r in faces)  # no 0-1 intensity to be relative to
    assert all(r["rel_code_dist"] != "" for r in ready)  # the code's distance still is


# ------------------------------------------------------------------ defect 2: typed head metadata
def test_the_expression_head_metadata_is_json_not_json_in_strings(real_run):
    head = real_run[2]["model"]["expression_head"]
    assert head["classes"] == list(EMOTIONS)
    assert isinstance(head["config"], dict) and head["config"]["code_dim"] == real_run[2]["model"]["code_dim"]
    assert isinstance(head["class_bias"], dict)
    assert head["image_size"] == 64 and isinstance(head["image_size"], int)
    assert isinstance(head["feature_dim"], int)
    assert isinstance(head["source"], str) and isinstance(head["fit"], str)  # text stays text


# ------------------------------------------------------------------ defect 3: every key documented
def _sidecar_section() -> str:
    text = DOC.read_text()
    start = text.index("## JSON sidecar")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _documented(section: str, key: str) -> bool:
    return re.search(r"`" + re.escape(key) + r"`", section) is not None


def test_every_key_of_a_real_sidecar_is_documented(real_run):
    section = _sidecar_section()
    side = real_run[2]
    missing = [k for k in side if not _documented(section, k)]
    for part in ("input", "backend", "model"):
        missing += [f"{part}.{k}" for k in side[part] if not _documented(section, k)]
    # added by `facecycle batch` (realtime/batch/job.py)
    missing += [k for k in ("fingerprint", "batch") if not _documented(section, k)]
    assert not missing, f"sidecar keys not in docs/csv.md's JSON sidecar section: {missing}"


# ------------------------------------------------------------------ defect 4: baseline_ready always 0/1
def _packet(i: int, faces: List[Face], t: float = 0.0) -> FramePacket:
    return FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=t, image=np.zeros((8, 8, 3), np.uint8),
                       faces=faces)


def _cells(line: str, code_dim: int) -> Dict[str, str]:
    cols = csv_columns(code_dim)
    vals = line.rstrip("\n").split(",")
    assert len(vals) == len(cols)
    return dict(zip(cols, vals, strict=True))


def test_a_no_face_row_has_baseline_ready_0_and_nothing_else_after_success():
    row = _cells(format_rows(_packet(3, []), 8), 8)
    assert row["baseline_ready"] == "0" and row["success"] == "0" and row["face_id"] == "-1"
    cols = csv_columns(8)
    after = [c for c in cols[cols.index("success") + 1:] if c != "baseline_ready"]
    assert all(row[c] == "" for c in after)


def test_pandas_reads_a_face_less_file_with_the_column_types_of_one_with_faces(tmp_path):
    """Probe finding: a no-face row wrote `confidence` as `0`, so pandas read a file without a face with confidence
    int64 (float64 elsewhere) and a concat of files as object. Every column has one dtype either way, but for the
    text column `emotion` (all empty without a face; csv.md says to give its dtype)."""
    pd = pytest.importorskip("pandas")
    e = np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32)
    face = Face(box=np.array([10, 20, 110, 140], np.float32), score=0.9, landmarks=np.ones((5, 2), np.float32),
                track_id=0, intensity=0.4, emotions=e, code=np.zeros(8, np.float32))
    face.pose = np.array([0.1, -0.2, 0.05], np.float32)
    header = ",".join(csv_columns(8)) + "\n"
    (tmp_path / "none.csv").write_text(header + format_rows(_packet(0, []), 8) + format_rows(_packet(1, []), 8))
    (tmp_path / "some.csv").write_text(header + format_rows(_packet(0, [face]), 8) + format_rows(_packet(1, []), 8))
    none, some = (pd.read_csv(tmp_path / n, dtype={"emotion": str}) for n in ("none.csv", "some.csv"))
    assert none.dtypes.to_dict() == some.dtypes.to_dict()
    assert none["confidence"].dtype == np.float64 and (none["confidence"] == 0).all()


def test_pandas_reads_baseline_ready_as_int_on_a_clip_with_no_face_frames(real_run):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(real_run[0])
    assert (df.success == 0).any() and (df.success == 1).any()  # both kinds of row
    assert df["baseline_ready"].dtype == np.int64
    assert set(df["baseline_ready"].unique()) <= {0, 1}


def test_parquet_types_baseline_ready_alike_with_no_nulls(real_run, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    from realtime.batch.parquet import write_parquet

    write_parquet([("clip.mp4", real_run[0])], tmp_path / "rows.parquet")
    t = pq.read_table(tmp_path / "rows.parquet")
    col = t.column("baseline_ready")
    # int64 as in the CSV (pandas reads it so) and as `success` (it was float64: a probe's finding)
    assert str(col.type) == "int64" and col.null_count == 0
    np.testing.assert_array_equal(col.to_numpy(), np.loadtxt(real_run[0], delimiter=",", skiprows=1, usecols=[
        open(real_run[0]).readline().strip().split(",").index("baseline_ready")], dtype=np.int64))


def test_parquet_row_groups_gather_videos_not_one_per_video(real_run, tmp_path, monkeypatch):
    """Probe finding: one row group per video made a corpus of short clips pay ~33 KB of footer per video, all held
    in the writer until it closed (3,000 two-row clips: a 195-MB file, 94 MB of it footer, written in 1.74 GB). Now
    consecutive videos share a row group up to ROW_GROUP_BYTES: 200 copies of two rows of a real clip's CSV make one
    row group and a file a small fraction of the size; every row is there, in order, under its own video. (Before:
    200 row groups, 13.7 MB against 96 KB.)"""
    pq = pytest.importorskip("pyarrow.parquet")
    from realtime.batch import parquet

    two = tmp_path / "two.csv"
    with open(real_run[0]) as f:
        two.write_text("".join(f.readline() for _ in range(3)))
    pairs = [(f"v{i:03d}.mp4", two) for i in range(200)]
    parquet.write_parquet(pairs, tmp_path / "many.parquet")
    meta = pq.ParquetFile(tmp_path / "many.parquet").metadata
    t = pq.read_table(tmp_path / "many.parquet")
    assert meta.num_row_groups == 1 and meta.num_rows == 400, (meta.num_row_groups, meta.num_rows)
    assert (tmp_path / "many.parquet").stat().st_size < 1_000_000
    assert t.column("video").to_pylist() == [v for v, _ in pairs for _ in range(2)]
    # a row group closes once it holds ROW_GROUP_BYTES; with a tiny bound, one per video as before
    monkeypatch.setattr(parquet, "ROW_GROUP_BYTES", 1)
    parquet.write_parquet(pairs[:5], tmp_path / "each.parquet")
    assert pq.ParquetFile(tmp_path / "each.parquet").metadata.num_row_groups == 5



def test_parquet_says_how_its_rows_were_made(real_run, tmp_path, caplog):
    """Probe finding: a Parquet dataset's schema metadata held only its inputs' digest: two datasets of one clip,
    smoothed and not (expr_intensity up to 0.34 apart), looked alike, and a dataset gathered from several jobs could
    not tell its model or settings. Now ``facecycle_settings`` lists each distinct setting (from the CSVs' sidecars:
    model checksums, backend, detector, smoothing, baseline, versions) with its count of videos; where a machine's
    paths or thread counts differ, the setting is the same, and a mixed dataset is warned about."""
    import shutil

    pq = pytest.importorskip("pyarrow.parquet")
    from realtime.batch.parquet import SETTINGS_KEY, write_parquet

    csv_path, side_path, side = real_run
    pairs = []
    for name, change in (("a", {}), ("b", {"model": {**side["model"], "dir": "/elsewhere/model"},
                                          "backend": {**side["backend"], "intra_op_threads": 7},
                                          "versions": {**side["versions"], "platform": "another node"},
                                          # a batch's sidecar: its run's own records
                                          "fingerprint": "f00d", "batch": {"run_id": "r1", "rel": "b.mp4"},
                                          "person_baseline": {**side["person_baseline"],
                                                              "lookahead_tracks_seeded": 3},
                                          # a run that raised its detection size for small faces records the raised
                                          # one in detector.max_side (a review's finding: two settings)
                                          "detector": {**side["detector"], "max_side": 768},
                                          "detect_size": {"asked": side["detector"]["max_side"], "used": 768}}),
                         ("c", {"smoothing": None, "smoothing_params": None})):
        shutil.copy(csv_path, tmp_path / f"{name}.csv")
        (tmp_path / f"{name}.json").write_text(json.dumps({**side, **change}))
        pairs.append((f"{name}.mp4", tmp_path / f"{name}.csv"))
    write_parquet(pairs[:2], tmp_path / "same.parquet")
    groups = json.loads(pq.read_schema(tmp_path / "same.parquet").metadata[SETTINGS_KEY])
    assert [(g["videos"], g["first_video"]) for g in groups] == [(2, "a.mp4")]
    got = groups[0]["settings"]
    assert got["model"]["head_sha256"] == side["model"]["head_sha256"] and "dir" not in got["model"]
    assert got["smoothing"] == "one-euro" and got["versions"]["facecycle"] == side["versions"]["facecycle"]
    assert "summary" not in got and "stats" not in got and "input" not in got
    with caplog.at_level("WARNING", logger="realtime.batch.parquet"):
        write_parquet(pairs, tmp_path / "mixed.parquet")
    groups = json.loads(pq.read_schema(tmp_path / "mixed.parquet").metadata[SETTINGS_KEY])
    assert sorted((g["videos"], g["settings"]["smoothing"]) for g in groups) == [(1, None), (2, "one-euro")]
    assert "2 different settings" in caplog.text

# ------------------------------------------------------------------ defect 5: NaN is an empty cell everywhere
def _face(**kw) -> Face:
    rng = np.random.default_rng(0)
    e = np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32)
    f = Face(box=np.array([10, 20, 110, 140], np.float32), score=0.9,
             landmarks=rng.random((5, 2)).astype(np.float32) * 100, track_id=0, intensity=0.4, emotions=e,
             code=rng.normal(size=8).astype(np.float32))
    f.pose = np.array([0.1, -0.2, 0.05], np.float32)
    f.baseline_ready, f.rel_intensity, f.rel_code_dist = True, 0.1, 0.2
    f.rel_emotions = (e - 0.1).astype(np.float32)
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def test_a_nan_emotion_rel_emotion_or_code_value_is_an_empty_cell_and_finite_ones_read_as_before():
    e = np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32)
    e[2] = np.nan
    rel = (e - 0.1).astype(np.float32)
    rel[5] = np.inf
    code = np.arange(8, dtype=np.float32)
    code[[1, 6]] = np.nan
    row = _cells(format_rows(_packet(0, [_face(emotions=e, rel_emotions=rel, code=code)]), 8), 8)
    assert "nan" not in row.values() and "inf" not in row.values()
    assert row[f"emotion_{EMOTIONS[2]}"] == "" and row[f"rel_emotion_{EMOTIONS[5]}"] == ""
    assert row["exp_1"] == row["exp_6"] == "" and row["exp_2"] == "2"
    assert row[f"emotion_{EMOTIONS[0]}"] == "%.5f" % e[0]
    f = _face()  # finite values: as before
    row = _cells(format_rows(_packet(0, [f]), 8), 8)
    assert [row[f"emotion_{k}"] for k in EMOTIONS] == ["%.5f" % v for v in f.emotions.tolist()]
    assert [row[f"rel_emotion_{k}"] for k in EMOTIONS] == ["%.5f" % v for v in f.rel_emotions.tolist()]
    assert [row[f"exp_{i}"] for i in range(8)] == ["%.6g" % v for v in f.code.tolist()]


# ------------------------------------------------------------------ defect 6: rel_intensity only on the 0-1 scale
def _track(emotions: bool) -> Iterator[Face]:
    bl = NeutralBaseline(warmup_frames=5, warmup_s=0.1)
    code = np.zeros(4, np.float32)
    for i in range(20):
        e = np.full(len(EMOTIONS), 1 / len(EMOTIONS), np.float32) if emotions else None
        f = Face(box=np.array([0, 0, 4, 4], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                 track_id=0, intensity=0.004 + 0.001 * (i % 3), emotions=e, code=code + i * 0.01)
        bl(_packet(i, [f], t=i / 25))
        yield f


def test_without_emotions_rel_intensity_stays_empty_and_with_them_it_is_filled():
    last = list(_track(emotions=False))[-1]
    assert last.baseline_ready and math.isfinite(last.rel_code_dist)
    assert math.isnan(last.rel_intensity) and last.rel_emotions is None
    assert _cells(format_rows(_packet(0, [last]), 4), 4)["rel_intensity"] == ""
    with_head = list(_track(emotions=True))[-1]  # with emotion probabilities: filled, as before
    assert with_head.baseline_ready and math.isfinite(with_head.rel_intensity)


# ------------------------------------------------------------------ defect 7: the documented size of a row
def test_the_documented_bytes_per_face_row_match_a_real_csv(real_run):
    m = re.search(r"about ([\d,]+) bytes per face row", DOC.read_text(), re.IGNORECASE)
    assert m, "docs/csv.md states no size per face row"
    documented = int(m.group(1).replace(",", ""))
    lines = real_run[0].read_text().splitlines()[1:]
    face = [len(line) + 1 for line in lines if line.split(",")[4] == "1"]
    measured = sum(face) / len(face)
    assert abs(measured - documented) / documented < 0.15, (measured, documented)


def test_versions_name_the_platform_and_the_checkouts_commit(tmp_path, monkeypatch):
    """Probe finding: the sidecar said only `facecycle: 0.1.0`, which an editable checkout never changes, so outputs
    of different code looked alike. It now names the commit of a git checkout (`-dirty` with changes to tracked
    files), and the platform; an install that is no checkout has no `facecycle_source`."""
    import subprocess

    import facecycle
    from realtime.sinks import sidecar

    v = sidecar.versions()
    assert v["machine"] and v["platform"] and v["facecycle"] == facecycle.__version__
    root = Path(facecycle.__file__).resolve().parent.parent
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        assert v["facecycle_source"].removesuffix("-dirty") == head.strip()
    fake = tmp_path / "site-packages" / "facecycle"
    fake.mkdir(parents=True)
    monkeypatch.setattr(facecycle, "__file__", str(fake / "__init__.py"))
    sidecar._source_commit.cache_clear()
    try:
        assert "facecycle_source" not in sidecar.versions()
    finally:
        sidecar._source_commit.cache_clear()


def test_input_says_where_time_zero_lies_and_when_the_file_was_recorded(tmp_path):
    """Probe finding: the CSV's `timestamp` counts from the first frame, and nothing said where that lay on the
    file's own clock or when the file was recorded, to line rows up with other sensors. The sidecar's input now has
    `first_pts`, `start_s` and `creation_time` (a Matroska file starting at 4 s, written here with its tag)."""
    import av

    from realtime.sources import open_source

    path = tmp_path / "late.mkv"
    with av.open(str(path), "w") as c:
        c.metadata["creation_time"] = "2026-01-02T03:04:05.000000Z"
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 25)
        for i in range(5):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
            f.pts = 100 + i  # 4 s in
            c.mux(s.encode(f))
        c.mux(s.encode())
    src = open_source(str(path))
    times = [p.timestamp for p in src]
    d = src.describe()
    assert times == pytest.approx([0, 0.04, 0.08, 0.12, 0.16])
    assert d["start_s"] == pytest.approx(4.0) and d["first_pts"] * Fraction(d["time_base"]) == Fraction(4)
    assert d["creation_time"] == "2026-01-02T03:04:05.000000Z"
    none = write_video(tmp_path / "plain.mp4", real_frames(2), rate=25)
    src = open_source(str(none))
    list(src)
    assert src.describe()["start_s"] == 0.0



def test_the_sidecar_gives_the_annotated_videos_size(tiny_export, tmp_path):
    """Probe finding: a small picture's annotated video is enlarged (97x73 -> 388x292) and an odd size padded, and
    the sidecar did not say so: a user could not map CSV pixels to the video's."""
    from realtime import Analyzer

    frames = [cv2.resize(f, (97, 73), interpolation=cv2.INTER_AREA) for f in real_frames(3)]
    clip = write_video(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="yuv444p")
    with Analyzer(model=tiny_export[1]) as an:
        for _ in an.process_video(clip, csv=tmp_path / "odd.csv", video=tmp_path / "odd.mp4"):
            pass
    side = json.loads((tmp_path / "odd.json").read_text())
    with av.open(str(tmp_path / "odd.mp4")) as c:
        size = [c.streams.video[0].width, c.streams.video[0].height]
    assert side["video_size"] == size and size[0] > 97 and size[0] % 2 == 0 and size[1] % 2 == 0
    assert side["input"]["stored_size"] == [97, 73] and side["input"]["pixel_aspect"] == "1"
    for _ in Analyzer(model=tiny_export[1]).process_video(clip, csv=tmp_path / "novideo.csv"):
        pass
    assert json.loads((tmp_path / "novideo.json").read_text())["video_size"] is None
