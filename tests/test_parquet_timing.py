"""Each input's clock in the batch's Parquet dataset, and the audio's start in the sidecar.

A probe (h73) found that the dataset's ``timestamp`` is relative to each video's first frame and that only the
sidecars said where that frame lies on the file's clock (``start_s``), when the file was recorded and how it is timed;
and that no sidecar said where the audio starts (off_av.ts: audio at 10.178 s, video at 10.5 s). The dataset's
schema metadata now holds ``facecycle_timing`` (per input, by its ``video`` name) and the sidecar's ``input`` block
``audio_start_s`` (the container's stated start of the default audio track; nothing decoded).
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Optional

import pytest

from .conftest import offset_clip

av = pytest.importorskip("av")
pq = pytest.importorskip("pyarrow.parquet", reason="the Parquet dataset needs pyarrow ([cluster] extra)")

START = 10.5  # the offset clip's first video PTS, seconds
LEAD = 0.3  # its audio starts this much earlier
N = 12
RATE = 16000  # the audio's sample rate
TIMING = b"facecycle_timing"
FIELDS = {"start_s", "first_pts", "time_base", "creation_time", "fps", "clock", "audio_start_s"}


def _make_clip(path: Path, fmt: str, tb: Fraction, start: float, audio_start: Optional[float]) -> Path:
    """``N`` frames at 30 fps whose first PTS is ``start`` s in ``tb``; a mono AAC track from ``audio_start`` s to a
    little past the last frame (None: no audio)."""
    return offset_clip(path, fmt, tb, 30, start, N, audio_start, RATE)


def _audio_start(path: Path) -> Optional[float]:
    """The first audio stream's start_time in seconds, as the container states it."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return None if a.start_time is None else float(a.start_time * a.time_base)


def test_the_dataset_and_sidecar_keep_each_inputs_clock(tmp_path, model):
    from facecycle_cli import main

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    off = _make_clip(src / "sub" / "off_av.ts", "mpegts", Fraction(1, 90000), START, START - LEAD)
    _make_clip(src / "plain.mkv", "matroska", Fraction(1, 1000), 0.0, None)
    stated = _audio_start(off)
    # the AAC encoder's priming moves the stated start up to one packet (1024 samples) earlier
    assert START - LEAD - 1024 / RATE - 0.002 <= stated <= START - LEAD + 0.002
    out, ds = tmp_path / "out", tmp_path / "ds"
    argv = ["batch", str(src), "--out-dir", str(out), "--cluster", "none", "--no-video", "--no-progress",
            "--model", str(model), "--backend", "onnxruntime", "--parquet", str(ds)]
    assert main(argv) == 0

    side = json.loads((out / "sub" / "off_av.json").read_text())["input"]
    assert side["start_s"] == START and side["audio_start_s"] == pytest.approx(stated, abs=1e-6)
    assert side["audio_start_s"] - side["start_s"] < -LEAD + 0.002  # the audio's lead on the frames
    assert json.loads((out / "plain.json").read_text())["input"]["audio_start_s"] is None  # no audio

    parts = sorted(ds.glob("part-*.parquet"))
    assert parts
    names = set(pq.read_table(ds).column("video").to_pylist())
    assert names == {"sub/off_av.ts", "plain.mkv"}
    timing = {}
    for part in parts:  # each part file holds the timing of the inputs whose rows it holds, as the rows name them
        own = json.loads(pq.read_metadata(part).metadata[TIMING])
        assert set(pq.read_table(part).column("video").to_pylist()) <= set(own), part
        timing.update(own)
    assert set(timing) == names
    t = timing["sub/off_av.ts"]
    assert set(t) == FIELDS
    assert t["start_s"] == START and t["first_pts"] == int(START * 90000) and t["time_base"] == "1/90000"
    assert t["clock"] == "stream" and t["fps"] == pytest.approx(30)
    assert t["audio_start_s"] == side["audio_start_s"] and t["creation_time"] == side["creation_time"]
    p = timing["plain.mkv"]
    assert p["start_s"] == 0 and p["first_pts"] == 0 and p["time_base"] == "1/1000"
    assert p["audio_start_s"] is None and p["clock"] == "stream"

    # a rerun with nothing new keeps the dataset (the metadata comes from the same sidecars)
    before = [(f.name, f.read_bytes()) for f in parts]
    assert main(argv) == 0
    assert [(f.name, f.read_bytes()) for f in sorted(ds.glob("part-*.parquet"))] == before
    assert json.loads((out / "batch.json").read_text())["parquet"].get("unchanged") is True


def test_a_dataset_without_timing_is_written_again(tmp_path):
    """A dataset an older version wrote (same CSVs, no timing key) is not kept as "unchanged": it lacks the key."""
    from realtime.batch.parquet import TIMING_KEY, write_parquet

    csv = tmp_path / "clip.csv"
    csv.write_text("frame,timestamp\n0,0.0\n1,0.04\n")
    (tmp_path / "clip.json").write_text(json.dumps({"input": {"start_s": 2.0, "first_pts": 2000, "time_base": "1/1000",
                                                              "fps": 25.0, "clock": "stream"}}))
    dest = tmp_path / "all.parquet"
    assert not write_parquet([("clip.mp4", csv)], dest).get("unchanged")
    timing = json.loads(pq.read_metadata(dest).metadata[TIMING_KEY])
    assert timing == {"clip.mp4": {"start_s": 2.0, "first_pts": 2000, "time_base": "1/1000", "creation_time": None,
                                   "fps": 25.0, "clock": "stream", "audio_start_s": None}}
    assert write_parquet([("clip.mp4", csv)], dest).get("unchanged") is True
    # the same file as an older version wrote it: its metadata without the timing key
    table = pq.read_table(dest)
    meta = {k: v for k, v in table.schema.metadata.items() if k != TIMING_KEY}
    pq.write_table(table.replace_schema_metadata(meta), dest)
    assert TIMING_KEY not in pq.read_metadata(dest).metadata
    assert not write_parquet([("clip.mp4", csv)], dest).get("unchanged")
    assert TIMING_KEY in pq.read_metadata(dest).metadata


def test_each_part_file_holds_its_own_inputs_timing_only(tmp_path):
    """Every input's timing in every part's footer grew each part by ~200 bytes an input (20 MB for a corpus of
    100,000 videos): each part holds its own inputs' (pyarrow 17 on; before, every input's, in its schema)."""
    from realtime.batch.parquet import TIMING_KEY, write_parquet

    pairs = []
    for i in range(5):
        csv = tmp_path / f"c{i}.csv"
        csv.write_text("frame,timestamp\n0,0.0\n1,0.04\n2,0.08\n")
        (tmp_path / f"c{i}.json").write_text(json.dumps({"input": {"start_s": float(i), "time_base": "1/1000"}}))
        pairs.append((f"v{i}.mp4", csv))
    dest = tmp_path / "ds"
    r = write_parquet(pairs, dest, rows_per_file=6)  # two inputs (6 rows) a part
    parts = sorted(dest.glob("part-*.parquet"))
    assert r["files"] == len(parts) == 3
    seen = {}
    for part in parts:
        own = json.loads(pq.read_metadata(part).metadata[TIMING_KEY])
        videos = set(pq.read_table(part).column("video").to_pylist())
        if callable(getattr(pq.ParquetWriter, "add_key_value_metadata", None)):
            assert set(own) == videos, (part, own)
        else:
            assert set(own) == {v for v, _ in pairs}
        seen.update(own)
    assert {v: t["start_s"] for v, t in seen.items()} == {f"v{i}.mp4": float(i) for i in range(5)}
