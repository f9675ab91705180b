"""`facecycle batch`: inputs, fingerprint, resume, in-process and Ray (2 local workers) on real clips.

Acceptance (issue 14): outputs identical to `facecycle process`; a second run skips everything in seconds; a
killed worker's video is retried and completes; a corrupt input is reported while the others finish; the
Parquet row count equals the CSVs'. Ray tests skip where `ray` is not installed, clip tests where ../shared is
absent. Cost: the short LivePortrait clips (16 frames) plus one of 72 and one of 148 frames, no video.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from facecycle.errors import InputError, UsageError
from facecycle_cli import main as cli_main
from realtime.batch import BatchSettings, collect_inputs, settings_fingerprint
from realtime.batch.executors import ray_available
from realtime.batch.job import PARTIAL_DIR, count_csv_rows
from realtime.summary import clip_reading

from .conftest import ROOT, hold_replace, shared_video

SHORT = ("liveportrait_driving_d1.mp4", "liveportrait_driving_d2.mp4")
MID = "pyfeat_single_face.mp4"      # 72 frames
LONG = "liveportrait_driving_d5.mp4"  # 148 frames

#: sidecar fields that legitimately differ between `process` and `batch` (timing, paths, batch's own)
VOLATILE = {"stats", "written_at", "csv", "video", "fingerprint", "batch"}

needs_ray = pytest.mark.skipif(not ray_available(), reason='ray is not installed (pip install "facecycle-rt[cluster]")')


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _sidecar(p: Path) -> dict:
    d = json.loads(p.read_text())
    for k in ("name", "path", "modified"):  # the path the input was given by, where it is, when it was copied
        d["input"].pop(k, None)
    return {k: v for k, v in d.items() if k not in VOLATILE and k != "command"}  # (process's command line)


def _corpus(tmp: Path, corrupt: bool = True) -> Path:
    """tmp/in: a/interview.mp4 and b/interview.mp4 (same name, two folders), the 72-frame clip, a corrupt file."""
    src = tmp / "in"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(shared_video(SHORT[0]), src / "a" / "interview.mp4")
    shutil.copy(shared_video(SHORT[1]), src / "b" / "interview.mp4")
    shutil.copy(shared_video(MID), src / MID)
    if corrupt:  # the first 30 kB of a real file: header and no index (a recording cut short)
        _touch(src / "broken.mp4", shared_video(MID).read_bytes()[:30000])
    return src


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """`facecycle process --no-video` outputs of the clips: {name: (csv bytes, sidecar dict)}."""
    out = tmp_path_factory.mktemp("process_ref")
    ref = {}
    for name in SHORT + (MID, LONG):
        clip = shared_video(name)
        d = out / name
        assert cli_main(["process", str(clip), "--out-dir", str(d), "--no-video", "--no-progress"]) == 0
        ref[name] = ((d / f"{clip.stem}.csv").read_bytes(), _sidecar(d / f"{clip.stem}.json"))
    return ref


# ----------------------------------------------------------------------------------------- inputs
def test_inputs_folders_globs_lists_duplicates_and_mirroring(tmp_path, monkeypatch):
    d = tmp_path / "corpus"
    a = _touch(d / "s1" / "interview.mp4")
    b = _touch(d / "s2" / "interview.MOV")
    _touch(d / "s2" / "notes.txt")
    _touch(d / ".hidden" / "x.mp4")
    _touch(d / "s1" / PARTIAL_DIR / "interview" / "r.1" / "interview.annotated.mp4")
    out = d / "results"  # outputs inside the input folder are not inputs
    _touch(out / "s1" / "interview.annotated.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# inputs\ncorpus/s1/interview.mp4\n{b}\nmissing.mp4\n")
    monkeypatch.chdir(tmp_path)
    items, dups = collect_inputs([str(d), "corpus/s*/*.mp4", f"@{lst}", "nothing*.mp4"], out_dir=out)
    by = {it.rel.as_posix(): it for it in items}
    assert [it.path for it in items[:2]] == [a, b]
    # the root is where the inputs that exist lie (the missing ones, reported, do not move it up to tmp_path)
    assert set(by) == {"s1/interview.mp4", "s2/interview.MOV", "missing.mp4", "nothing*.mp4"}
    assert by["missing.mp4"].error and "no such file" in by["missing.mp4"].error
    assert "list.txt" in by["missing.mp4"].error
    assert by["nothing*.mp4"].error and "no file matches" in by["nothing*.mp4"].error
    assert by["s1/interview.mp4"].error is None
    assert {x["input"]: x["count"] for x in dups} == {str(a): 3, str(b): 2}
    # a folder alone: outputs relative to it; one file alone: straight into out_dir (as `process`)
    items, _ = collect_inputs([str(d)], out_dir=out)
    assert sorted(it.rel.as_posix() for it in items) == ["s1/interview.mp4", "s2/interview.MOV"]
    items, _ = collect_inputs([str(a)])
    assert [it.rel.as_posix() for it in items] == ["interview.mp4"]
    # the same file under a symlink is one input
    os.symlink(a, tmp_path / "link.mp4")
    items, dups = collect_inputs([str(a), str(tmp_path / "link.mp4")])
    assert len(items) == 1 and dups[0]["count"] == 2
    # two inputs that would write the same outputs: refused before any work
    _touch(d / "s1" / "interview.mkv")
    with pytest.raises(UsageError, match="same outputs"):
        collect_inputs([str(d / "s1")])
    with pytest.raises(UsageError, match="not under --root"):
        collect_inputs([str(a)], root=str(tmp_path / "elsewhere"))
    # names that differ only in case are one file on macOS and Windows (the second input's outputs replaced the
    # first's): refused there; on Linux they are two files, and a corpus may hold both
    # (as the output folder's file system compares names: probed there, facecycle.files.names_caseless)
    from facecycle.files import names_caseless
    from realtime.batch import plan

    case = tmp_path / "case"
    _touch(case / "Clip.mp4")
    _touch(case / "clip.mov")
    (tmp_path / "Probe").write_text("")
    assert names_caseless(tmp_path) == (tmp_path / "pROBE").exists()
    assert names_caseless(tmp_path) or len(collect_inputs([str(case)], out_dir=tmp_path / "o")[0]) == 2
    real = plan.names_caseless
    plan.names_caseless = lambda folder: True  # a FAT drive, macOS, Windows
    try:
        with pytest.raises(UsageError, match="same outputs .*without case"):
            collect_inputs([str(case)], out_dir=tmp_path / "o")
    finally:
        plan.names_caseless = real
    assert not [p for p in tmp_path.iterdir() if "CaseProbe" in p.name]  # the probe leaves nothing
    # a served file's URL, given or listed, is an input, its outputs under HOST/PATH (it used to be refused; before
    # that it read as a relative path, "./http:/host/a.mp4: no such file or folder"); a live stream's URL is
    # refused before any work, with what to do
    urls = tmp_path / "urls.txt"
    urls.write_text("https://example.com/corpus/a.mp4?sig=1\nhttp://127.0.0.1:8000/b%20c.mkv\n"
                    "https://example.com/corpus/a.mp4?sig=1\n")
    items, dups = collect_inputs([f"@{urls}", str(a)])
    got = {str(i.path): i.rel.as_posix() for i in items}
    assert got["https://example.com/corpus/a.mp4?sig=1"] == "example.com/corpus/a.mp4"
    assert got["http://127.0.0.1:8000/b%20c.mkv"] == "127.0.0.1_8000/b c.mkv"
    assert got[str(a)] == a.name and dups == [{"input": "https://example.com/corpus/a.mp4?sig=1", "count": 2}]
    with pytest.raises(UsageError, match="same outputs"):  # two URLs of one name
        collect_inputs(["https://example.com/corpus/a.mp4", "https://example.com/corpus/a.mkv"])
    urls.write_text("rtsp://camera.local/stream\ns3://bucket/b.mp4\n")
    with pytest.raises(UsageError, match=r"rtsp://camera.local/stream \(listed in .*urls.txt\) and 1 more URL: "
                                         r"batch reads files, folders and served files"):
        collect_inputs([f"@{urls}"])
    with pytest.raises(UsageError, match="facecycle process URL"):
        collect_inputs([str(a), "rtsp://camera.local/stream"])
    # a file:// URL is its local path, as `facecycle process` reads it (it was refused as a live stream)
    from urllib.parse import quote
    items, dups = collect_inputs([f"file://{quote(str(a))}", str(a)])
    assert [str(i.path) for i in items] == [str(a)] and dups[0]["count"] == 2
    with pytest.raises(InputError, match="another host"):
        collect_inputs(["file://server/share/a.mp4"])


def test_a_symlink_loop_in_an_input_folder_gives_each_video_once(tmp_path, caplog):
    """A link back up (`sub/up -> ..`) in a folder of one video was walked until the path grew too long: the video
    was found 41 times (one input said to be given 41 times); each real folder is now searched once, said in one
    warning."""
    d = tmp_path / "corpus"
    a = _touch(d / "a.mp4")
    _touch(d / "s1" / "b.mkv")
    (d / "sub").mkdir()
    os.symlink("..", d / "sub" / "up")
    os.symlink(d / "s1", d / "s1_again")  # a second link to one folder: its video is one input, as before
    with caplog.at_level("WARNING"):
        items, dups = collect_inputs([str(d)])
    assert [it.path for it in items] == [a, d / "s1" / "b.mkv"] and dups == []
    assert "sub/up leads to" in caplog.text and caplog.text.count("symlink loop") == 1


def test_fingerprint_follows_settings_not_threads():
    base = BatchSettings(analyzer={"detect_every": 5, "threads": 1, "infer_workers": 1}, video=False)
    fp, detail = settings_fingerprint(base)
    assert detail["model"]["manifest_sha256"] and len(fp) == 64
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "threads": 4, "infer_workers": 2},
                                              video=False))[0] == fp
    for other in (BatchSettings(analyzer={"detect_every": 3}, video=False),
                  BatchSettings(analyzer={"detect_every": 5, "neutralize": True}, video=False),
                  BatchSettings(analyzer={"detect_every": 5}, video=False, max_frames=10),
                  BatchSettings(analyzer={"detect_every": 5, "mirror_detect": True}, video=False),
                  BatchSettings(analyzer={"detect_every": 5}, video=True)):
        assert settings_fingerprint(other)[0] != fp
    # the person baseline's cap shapes every rel_* column (MODEL_CARD.md experiment 54): a batch made before it
    # redoes its inputs, so that a dataset never mixes the two rules (a review's finding)
    from realtime import baseline

    assert detail["person_baseline_max_neutral"] == baseline.MAX_NEUTRAL == 0.4
    assert detail["emotion_label"] == [0.1, 1.0]  # the label's hysteresis and the hold (experiment 55)
    cap, baseline.MAX_NEUTRAL = baseline.MAX_NEUTRAL, None
    try:
        assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=False))[0] != fp
    finally:
        baseline.MAX_NEUTRAL = cap
    # the neutralization passes count only with neutral faces; the default is fingerprinted as its value
    neu = {"detect_every": 5, "neutralize": True}
    assert settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_passes": 1}, video=False))[0] != \
        settings_fingerprint(BatchSettings(analyzer=neu, video=False))[0] == \
        settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_passes": 2}, video=False))[0]
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "neutral_passes": 1}, video=False))[0] == fp
    # so does the track's reference (realtime.neutral_reference), on by default
    assert settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_reference": False}, video=False))[0] != \
        settings_fingerprint(BatchSettings(analyzer=neu, video=False))[0] == \
        settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_reference": True}, video=False))[0]
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "neutral_reference": False},
                                              video=False))[0] == fp
    # and the reference's rule, the identity check's threshold among it (MODEL_CARD.md experiment 33)
    rule = settings_fingerprint(BatchSettings(analyzer=neu, video=False))[1]["neutral_reference_rule"]
    assert rule["min_identity"] == 0.9 and rule["drop_after"] == 3 and rule["gap"] == 0.2
    assert settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_reference": {"min_identity": 0.8}},
                                              video=False))[0] != settings_fingerprint(BatchSettings(analyzer=neu,
                                                                                                     video=False))[0]
    # the look-ahead (on by default with neutral faces and the reference) changes the neutral faces: off is
    # fingerprinted as before it existed (no key), on (the default, or asked for) with the key
    ahead = settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_lookahead": True}, video=False))
    assert ahead[0] == settings_fingerprint(BatchSettings(analyzer=neu, video=False))[0]
    assert ahead[1]["neutral_lookahead"] is True
    once = settings_fingerprint(BatchSettings(analyzer={**neu, "neutral_lookahead": False}, video=False))
    assert once[0] != ahead[0] and "neutral_lookahead" not in once[1]
    plain = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5}, video=False))
    base_ahead = settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "baseline_lookahead": True},
                                                    video=False))
    assert base_ahead[0] != plain[0] and base_ahead[1]["baseline_lookahead"] is True
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "baseline_lookahead": False},
                                              video=False))[0] == plain[0]
    assert settings_fingerprint(BatchSettings(analyzer={"detect_every": 5, "neutral_lookahead": True},
                                              video=False))[0] == fp


def test_cli_usage_errors_and_missing_ray(tmp_path, capsys, monkeypatch):
    clip = _touch(tmp_path / "v.mp4")
    o = ["--out-dir", str(tmp_path / "o")]
    assert cli_main(["batch", str(clip), *o, "--no-csv", "--no-video"]) == 2
    assert cli_main(["batch", str(clip), *o, "--workers", "0"]) == 2
    assert cli_main(["batch", str(clip), *o, "--cluster", "yarn"]) == 2
    assert cli_main(["batch", str(clip), *o, "--parquet", "x", "--no-csv"]) == 2
    import realtime.batch.executors as ex

    monkeypatch.setattr(ex, "ray_available", lambda: False)
    capsys.readouterr()
    assert cli_main(["batch", str(clip), *o, "--cluster", "local"]) == 6  # an optional dependency, as pyarrow
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['facecycle: error: ray is not installed; pip install "facecycle-rt[cluster]"']
    assert cli_main(["batch", str(clip), *o, "--workers", "2"]) == 6
    assert "ray is not installed" in capsys.readouterr().err
    # no --cluster and no ray: this process; the (undecodable) input is reported, exit 3
    assert cli_main(["batch", str(clip), *o, "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "processing in this process" in err and "v.mp4" in err
    rec = json.loads((tmp_path / "o" / "batch.json").read_text())
    assert rec["inputs"][0]["status"] == "failed" and rec["executor"]["mode"] == "in-process"
    # a model every video would fail on stops the batch with the model error's code
    bad = tmp_path / "bad_model"
    bad.mkdir()
    assert cli_main(["batch", str(clip), str(_touch(tmp_path / "w.mp4")), *o, "--model", str(bad),
                     "--no-progress"]) == 5
    rec = json.loads((tmp_path / "o" / "batch.json").read_text())
    assert rec["exit_code"] == 5 and rec["error"]
    assert sorted(e["status"] for e in rec["inputs"]) == ["cancelled", "failed"]  # documented statuses only
    assert rec["counts"]["failed"] == 1 and rec["counts"]["cancelled"] == 1  # every input counted


def test_outputs_that_cannot_be_written_are_found_before_the_work_or_said_in_one_line(tmp_path, capsys):
    """A --parquet or --summary path that cannot be written was found after the whole corpus had run, and
    batch.json was lost with it; an input called batch.mp4 had its sidecar replaced by the summary on every run
    (and was redone every time); an output folder that cannot be written was an "internal error" with a traceback
    and exit 3; a file name that is not UTF-8 stopped --parquet after all the work, without batch.json."""
    from .conftest import real_frames, write_video

    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    clip = write_video(src / "a" / "x.mp4", real_frames(6), rate=25)
    blocker = _touch(tmp_path / "not_a_folder")
    o = ["--cluster", "none", "--no-video", "--no-progress"]
    out = tmp_path / "o1"
    for extra in (["--parquet", str(blocker / "all.parquet")], ["--summary", str(blocker / "b.json")]):
        capsys.readouterr()
        assert cli_main(["batch", str(src), "--out-dir", str(out), *o, *extra]) == 4
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "cannot write" in err[0], err
        assert not out.exists()  # nothing was read or written
    (tmp_path / "c").mkdir()
    shutil.copy(clip, tmp_path / "c" / "batch.mp4")
    assert cli_main(["batch", str(tmp_path / "c"), "--out-dir", str(tmp_path / "o2"), *o]) == 2
    assert "replace the batch's summary" in capsys.readouterr().err
    out = tmp_path / "o3"
    out.mkdir()
    _touch(out / "a")  # a file where the input's output folder goes
    capsys.readouterr()
    assert cli_main(["batch", str(src), "--out-dir", str(out), *o]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err and "cannot write a/x.mp4's outputs" in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 4 and rec["inputs"][0]["status"] == "failed"
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(clip, os.fsdecode(os.fsencode(str(odd)) + b"/caf\xe9.mp4"))
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    assert cli_main(["batch", str(odd), "--out-dir", str(tmp_path / "o4"), *o, "--parquet",
                     str(tmp_path / "odd.parquet")]) == 0
    assert pq.read_table(tmp_path / "odd.parquet").column("video").to_pylist()[0] == "caf\\xe9.mp4"


# ------------------------------------------------------------------------------- in-process, real clips
@pytest.mark.slow
@pytest.mark.shared
def test_in_process_batch_matches_process_resumes_and_redoes_partial(tmp_path, reference, capsys):
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    args = ["batch", str(src), "--out-dir", str(out), "--cluster", "none", "--no-video", "--no-progress"]
    # Parquet needs pyarrow (the [cluster] extra); without it the batch runs CSV only (a plain install)
    import importlib.util

    pq = ["--parquet", str(out / "all.parquet")] if importlib.util.find_spec("pyarrow") else []
    assert cli_main(args + pq) == 3  # broken.mp4 failed, the rest done
    err = capsys.readouterr().err
    assert "broken.mp4" in err and "1 failed" in err
    if pq:
        assert (out / "all.parquet").exists()
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e for e in rec["inputs"]}
    assert st["broken.mp4"]["status"] == "failed" and st["broken.mp4"]["error_type"] == "InputError"
    assert not (out / "broken.json").exists() and not (out / "broken.csv").exists()
    for rel, name in (("a/interview", SHORT[0]), ("b/interview", SHORT[1]), (Path(MID).stem, MID)):
        assert st[rel + ".mp4"]["status"] == "done"
        assert (out / f"{rel}.csv").read_bytes() == reference[name][0], rel
        assert _sidecar(out / f"{rel}.json") == reference[name][1], rel
        side = json.loads((out / f"{rel}.json").read_text())
        assert side["status"] == "complete" and len(side["fingerprint"]) == 64
        # batch.json reads each input as process does: the sidecar summary's emotion (the same as process's)
        reading = st[rel + ".mp4"]["reading"]
        assert reading == clip_reading(reference[name][1]["summary"])  # process's own sidecar
        assert reading["face_rows"] > 0 and reading["p"] == max(reading["mean_emotions"].values())
    assert sum(e.get("model_loaded", False) for e in rec["inputs"]) == 1  # one model load for the batch
    assert not list(out.rglob(PARTIAL_DIR))
    # second run (the good inputs): everything skipped, in seconds
    t = time.perf_counter()
    good = [str(src / "a"), str(src / "b"), str(src / MID), "--root", str(src)]
    assert cli_main(["batch", *good, *args[2:]]) == 0
    assert time.perf_counter() - t < 5
    rec = json.loads((out / "batch.json").read_text())
    assert rec["counts"]["skipped"] == 3 and rec["counts"]["done"] == 0
    assert all(e["reading"]["emotion"] for e in rec["inputs"])  # skipped inputs keep their reading
    # a partial output (killed run: sidecar not `complete`) and a changed CSV are redone, nothing else
    side = out / "a" / "interview.json"
    d = json.loads(side.read_text())
    d["status"] = "running"
    side.write_text(json.dumps(d))
    with open(out / "b" / "interview.csv", "ab") as f:
        f.write(b"garbage\n")
    assert cli_main(["batch", *good, *args[2:]]) == 0
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e for e in rec["inputs"]}
    assert st["a/interview.mp4"]["status"] == "done" and st["a/interview.mp4"]["redo"] == "partial"
    assert st["b/interview.mp4"]["status"] == "done" and st[MID]["status"] == "skipped"
    assert (out / "b" / "interview.csv").read_bytes() == reference[SHORT[1]][0]
    # other settings: redone; --max-frames is part of the fingerprint
    assert cli_main(["batch", str(src / "a"), *args[2:], "--max-frames", "5"]) == 0
    assert count_csv_rows(out / "interview.csv") == 5  # single folder input: outputs straight under out


# ----------------------------------------------------------------------------------------------- Ray
def _mid_video(proc: subprocess.Popen, work: Path, stem: str, rows: int, timeout: float = 120):
    """The attempt folder of ``stem`` once its CSV has ``rows`` rows (the video is mid-way), or None."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for d in (work.iterdir() if work.is_dir() else []):
            csv = d / f"{stem}.csv"
            if csv.is_file() and count_csv_rows(csv) >= rows:
                return d
        time.sleep(0.05)
    return None


def _ray_batch(args, **kw):
    return subprocess.run([sys.executable, "-m", "facecycle", "batch", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, **kw)


@needs_ray
@pytest.mark.slow
@pytest.mark.shared
def test_ray_two_workers_identical_outputs_corrupt_input_parquet_and_skip(tmp_path, reference):
    src = _corpus(tmp_path)
    out = tmp_path / "out"
    pq = tmp_path / "dataset"
    common = ["--out-dir", str(out), "--cluster", "local", "--workers", "2", "--no-video", "--no-progress"]
    r = _ray_batch([str(src), *common, "--parquet", str(pq)])
    assert r.returncode == 3, r.stderr
    assert "broken.mp4" in r.stderr
    rec = json.loads((out / "batch.json").read_text())
    assert rec["executor"]["mode"] == "ray" and rec["executor"]["workers"] == 2
    st = {e["rel"]: e for e in rec["inputs"]}
    assert st["broken.mp4"]["status"] == "failed" and st["broken.mp4"]["retries"] == 0
    rows = 0
    for rel, name in (("a/interview", SHORT[0]), ("b/interview", SHORT[1]), (Path(MID).stem, MID)):
        assert st[rel + ".mp4"]["status"] == "done"
        assert (out / f"{rel}.csv").read_bytes() == reference[name][0], rel
        assert _sidecar(out / f"{rel}.json") == reference[name][1], rel
        rows += count_csv_rows(out / f"{rel}.csv")
    # each worker process loads the model once
    pids = {e["pid"] for e in rec["inputs"] if e.get("pid")}
    assert sum(bool(e.get("model_loaded")) for e in rec["inputs"]) <= len(pids)
    # Parquet: one row per CSV row, a `video` column, the CSV's columns and values
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(pq)
    assert len(df) == rows == rec["parquet"]["rows"]
    ref = pd.read_csv(out / "a" / "interview.csv")
    assert list(df.columns) == ["video"] + list(ref.columns)
    sub = df[df["video"] == "a/interview.mp4"].drop(columns="video").reset_index(drop=True)
    pd.testing.assert_frame_equal(sub, ref, check_dtype=False)
    for mod, q in (("duckdb", lambda m: m.sql(f"select count(*) from read_parquet('{pq}/*.parquet')").fetchone()[0]),
                   ("polars", lambda m: m.read_parquet(f"{pq}/*.parquet").height)):
        try:
            m = __import__(mod)
        except ImportError:
            continue
        assert q(m) == rows
    # second run over the good inputs: all skipped, Ray not even started
    t = time.perf_counter()
    r = _ray_batch([str(src / "a"), str(src / "b"), str(src / MID), "--root", str(src), *common])
    assert r.returncode == 0, r.stderr
    assert time.perf_counter() - t < 20  # python start + imports; no video is touched
    rec = json.loads((out / "batch.json").read_text())
    assert rec["counts"]["skipped"] == 3 and rec["counts"]["done"] == 0
    assert all(e["reading"]["emotion"] for e in rec["inputs"])  # skipped inputs keep their reading
    assert rec["executor"]["mode"].startswith("none")


@needs_ray
@pytest.mark.slow
@pytest.mark.shared
def test_ray_killed_worker_is_retried_and_completes(tmp_path, reference):
    src = tmp_path / "in"
    src.mkdir()
    for n in (LONG, MID, SHORT[0]):
        shutil.copy(shared_video(n), src / n)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "facecycle", "batch", str(src), "--out-dir", str(out),
                             "--cluster", "local", "--workers", "2", "--retries", "2", "--no-video",
                             "--no-progress"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stem = Path(LONG).stem
    attempt = _mid_video(proc, out / PARTIAL_DIR / stem, stem, rows=10)
    killed = int(attempt.name.rsplit(".", 1)[1]) if attempt else None  # <run>.<pid>: the worker process
    try:
        if killed is not None:
            os.kill(killed, signal.SIGKILL)
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "the long clip was never seen mid-video"
    assert proc.returncode == 0, err
    rec = json.loads((out / "batch.json").read_text())
    st = {e["rel"]: e for e in rec["inputs"]}
    assert all(e["status"] == "done" for e in rec["inputs"]), rec["inputs"]
    assert st[LONG]["retries"] >= 1 and st[LONG]["pid"] != killed
    assert rec["counts"]["retries"] >= 1
    assert json.loads((out / f"{stem}.json").read_text())["batch"]["retries"] >= 1
    for name in (LONG, MID, SHORT[0]):
        assert (out / f"{Path(name).stem}.csv").read_bytes() == reference[name][0], name
    assert not list(out.rglob(PARTIAL_DIR))


def test_base_install_imports_no_ray():
    code = ("import sys, facecycle_cli as c; p = c.build_parser(); p.parse_args(['batch', 'x', '--out-dir', 'o']); "
            "import realtime.batch; bad = [m for m in ('ray', 'pyarrow') if m in sys.modules]; "
            "sys.exit(bool(bad) and print(bad) or 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def _signal_mid_batch(tmp_path: Path, sig: int, cluster: List[str], timeout: float) -> Tuple[int, str, Path, str]:
    """Start ``facecycle batch`` on the long clip with ``cluster`` options, send ``sig`` once it is mid-video;
    returns (exit code, stderr, the output folder, the clip's stem)."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(shared_video(LONG), src / LONG)
    out = tmp_path / "out"
    stem = Path(LONG).stem
    proc = subprocess.Popen([sys.executable, "-m", "facecycle", "batch", str(src), "--out-dir", str(out), *cluster,
                             "--no-video", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _mid_video(proc, out / PARTIAL_DIR / stem, stem, rows=5) is not None
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, out, stem


@pytest.mark.slow
@pytest.mark.shared
def test_interrupted_batch_leaves_no_complete_sidecar(tmp_path):
    rc, err, out, stem = _signal_mid_batch(tmp_path, signal.SIGINT, ["--cluster", "none"], timeout=60)
    assert rc == 130, err
    assert not (out / f"{stem}.json").exists() and not (out / f"{stem}.csv").exists()
    assert not list(out.rglob(PARTIAL_DIR))
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 130 and rec["inputs"][0]["status"] == "interrupted"


@needs_ray
@pytest.mark.slow
@pytest.mark.shared
def test_sigterm_stops_a_ray_batch_with_143(tmp_path):
    """Job schedulers (SLURM, Kubernetes) stop a job with SIGTERM. Under Ray the batch exited 1 ("internal error"),
    with 130 in batch.json and Ray's stack dump: ray.init put in its own SIGTERM handler, and Ray's wait turns the
    handler's SystemExit(143) into SystemExit(1)."""
    rc, err, out, stem = _signal_mid_batch(tmp_path, signal.SIGTERM, ["--cluster", "local", "--workers", "1"],
                                           timeout=120)
    assert rc == 143, err
    assert "SIGTERM received" not in err, err
    rec = json.loads((out / "batch.json").read_text())
    assert rec["exit_code"] == 143 and rec["inputs"][0]["status"] == "interrupted"
    assert not (out / f"{stem}.csv").exists()


def test_parquet_without_pyarrow_is_one_clear_error(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("pyarrow"):
        pytest.skip("pyarrow is installed: the [cluster] extra's Parquet path is tested with real clips")
    clip = _touch(tmp_path / "v.mp4")
    code = cli_main(["batch", str(clip), "--out-dir", str(tmp_path / "o"), "--cluster", "none", "--no-video",
                     "--no-progress", "--parquet", str(tmp_path / "o" / "x.parquet")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 6 and len(err) == 1 and "pyarrow is not installed" in err[0], (code, err)
    assert not (tmp_path / "o" / "batch.json").exists()  # refused before any input was processed


def test_a_folder_of_images_given_to_batch_points_to_process(tmp_path, caplog, capsys):
    """`batch` reads videos; a folder of images used to end in "no videos in this folder" alone. The warning now
    counts the images and names the command that reads them."""
    import cv2
    import numpy as np

    d = tmp_path / "shots"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"s{i}.jpg"), np.full((16, 16, 3), 50 * i, np.uint8))
    with caplog.at_level("WARNING"):
        assert cli_main(["batch", str(d), "--out-dir", str(tmp_path / "out"), "--cluster", "none"]) == 2
    assert "holds 3 images" in caplog.text and f"facecycle process {d}" in caplog.text
    assert "no inputs" in capsys.readouterr().err
    phone = tmp_path / "phone"  # a phone's photos: HEIC, which nothing here reads
    phone.mkdir()
    for i in range(2):
        (phone / f"IMG_{i}.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cli_main(["batch", str(phone), "--out-dir", str(tmp_path / "out"), "--cluster", "none"]) == 2
    assert "2 pictures of a kind not read here" in caplog.text and "convert them to JPEG" in caplog.text


def test_a_picture_in_a_batch_gets_the_annotated_picture_process_writes(tiny_export, tmp_path):
    """`batch` promises the outputs of `process`: a single picture gives X.annotated.<its kind> there too (it
    was an .mp4 in batch after process began writing pictures)."""
    import cv2
    import numpy as np

    _, model_dir = tiny_export
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "shot.png"), np.full((30, 40, 3), 90, np.uint8))
    cv2.imwrite(str(src / "scan.pgm"), np.full((30, 40), 90, np.uint8))
    for cmd, out in (("batch", tmp_path / "b"), ("process", tmp_path / "p")):
        extra = ["--cluster", "none"] if cmd == "batch" else ["--no-progress"]
        assert cli_main([cmd, str(src / "shot.png"), str(src / "scan.pgm"), "--model", str(model_dir),
                         "--out-dir", str(out), *extra]) == 0
    for out in (tmp_path / "b", tmp_path / "p"):
        assert cv2.imread(str(out / "shot.annotated.png")).shape == (240, 320, 3)  # enlarged 8x to be annotated
        assert cv2.imread(str(out / "scan.annotated.png")).shape == (240, 320, 3)
        assert not list(out.rglob("*.mp4"))


def test_process_writes_one_parquet_dataset_of_videos_and_image_folders(tiny_export, tmp_path, capsys):
    """`process --parquet`: the CSV rows of every input in one dataset (it was batch only), a video column naming
    each input; an image folder's `file` column is kept (string), null on the video's rows."""
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (the [cluster] extra)")
    import csv as csvmod

    import cv2
    import numpy as np
    import pyarrow.parquet as pq

    from .conftest import write_video

    _, model_dir = tiny_export
    rng = np.random.default_rng(0)
    clip = write_video(tmp_path / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)])
    shots = tmp_path / "shots"
    shots.mkdir()
    for n in ("a.png", "b.png"):
        cv2.imwrite(str(shots / n), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    base = ["process", str(clip), str(shots), "--model", str(model_dir), "--no-progress", "--out-dir", str(out)]
    assert cli_main([*base, "--no-video", "--parquet", str(out / "all.parquet")]) == 0
    t = pq.read_table(out / "all.parquet")
    rows = {name: list(csvmod.DictReader(open(out / f"{name}.csv"))) for name in ("clip", "shots")}
    assert t.num_rows == len(rows["clip"]) + len(rows["shots"]) == 5 + 2
    assert t.schema.field("file").type == "string" and t.schema.field("frame").type == "int64"
    d = t.to_pydict()
    assert [f for v, f in zip(d["video"], d["file"], strict=True) if v == str(shots)] == ["a.png", "b.png"]
    assert all(f is None for v, f in zip(d["video"], d["file"], strict=True) if v == str(clip))
    capsys.readouterr()
    assert cli_main([*base, "--overwrite", "--no-csv", "--parquet", str(out / "x.parquet")]) == 2
    assert "--parquet needs the CSVs" in capsys.readouterr().err


def test_a_batch_of_served_files_reads_them_whole_and_resumes(tiny_export, tmp_path, capsys):
    """Served files (http://, https://, ftp://) are batch inputs: read whole, outputs under HOST/PATH, and a
    second run finds them complete (the URL is the input's fingerprint). A batch used to refuse every URL. A file
    that changes on the server is processed again (its ETag, Last-Modified or Content-Length differ)."""
    import numpy as np

    from .conftest import serve_folder, write_video

    _, model_dir = tiny_export
    served = tmp_path / "served" / "corpus"
    served.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_video(served / "a.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(6)],
                container_options={"movflags": "+faststart"})

    with serve_folder(tmp_path / "served") as base:
        url = f"{base}/corpus/a.mp4"
        out = tmp_path / "out"
        argv = ["batch", url, "--out-dir", str(out), "--cluster", "none", "--model", str(model_dir), "--no-video"]
        assert cli_main(argv) == 0, capsys.readouterr().err
        csv_path = out / base.split("://", 1)[1].replace(":", "_") / "corpus" / "a.csv"
        assert count_csv_rows(csv_path) == 6
        side = json.loads(csv_path.with_suffix(".json").read_text())
        assert side["status"] == "complete" and side["batch"]["input"] == url
        capsys.readouterr()
        assert cli_main(argv) == 0
        assert "0 processed, 1 skipped" in capsys.readouterr().err
        assert side["batch"]["input_stat"]["Content-Length"] == str((served / "a.mp4").stat().st_size)
        # the file changes on the server under the same URL: it was skipped as done (the URL alone was its
        # fingerprint); the server's validators say it changed
        write_video(served / "a.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(9)],
                    container_options={"movflags": "+faststart"})
        assert cli_main(argv) == 0
        assert "1 processed, 0 skipped" in capsys.readouterr().err
        assert count_csv_rows(csv_path) == 9
        rec = json.loads((out / "batch.json").read_text())
        assert rec["inputs"][0]["redo"].startswith("the served file changed (")
        assert cli_main(argv) == 0
        assert "0 processed, 1 skipped" in capsys.readouterr().err
    # the server gone: nothing is known beyond the URL, and the finished input stays finished
    assert cli_main(argv) == 0
    assert "0 processed, 1 skipped" in capsys.readouterr().err


def test_a_served_files_validators_and_what_counts_as_a_change():
    """The HEAD before a batch: a host that does not speak HTTP was a traceback through the thread pool (an
    http.client error that urllib does not wrap); with an ETag on both sides a new Last-Modified alone (another node
    of a load balancer) is not a change. A Last-Modified that is the response's own Date (a script dating the file
    at each request) is not recorded: every run redid the input."""
    import socket
    import threading

    from realtime.batch.plan import served_file_changed, url_validators

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def not_http():
        conn, _ = srv.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")  # not an HTTP status line
        conn.close()

    threading.Thread(target=not_http, daemon=True).start()
    try:
        assert url_validators(f"http://127.0.0.1:{srv.getsockname()[1]}/a.mp4", timeout=5) is None
    finally:
        srv.close()
    assert url_validators("ftp://example.invalid/a.mp4") == {}  # no HEAD for FTP: the URL stands for the file

    # a server that dates the file at each request (a script serving it) and sends no ETag: every batch redid it
    import http.server

    class Redating(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)  # sends Date: now
            self.send_header("Last-Modified", self.date_time_string())
            self.send_header("Content-Length", "1234")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redating)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        got = url_validators(f"http://127.0.0.1:{web.server_address[1]}/a.mp4", timeout=5)
        assert got == {"Content-Length": "1234"}  # Last-Modified is the response's own time: not the file's
    finally:
        web.shutdown()
        web.server_close()
    a = {"url": "u", "ETag": '"1"', "Last-Modified": "Mon, 01 Dec 2026 10:00:00 GMT", "Content-Length": "10"}
    assert served_file_changed(a, dict(a)) is None
    assert served_file_changed(a, {**a, "ETag": '"2"'}) == "ETag"
    assert served_file_changed(a, {**a, "Last-Modified": "Tue, 02 Dec 2026 10:00:00 GMT"}) is None
    no_etag = {k: v for k, v in a.items() if k != "ETag"}
    assert served_file_changed(no_etag, {**no_etag, "Last-Modified": "x"}) == "Last-Modified"
    assert served_file_changed(a, {**a, "Content-Length": "11"}) == "Content-Length"
    assert served_file_changed(a, None) is None and served_file_changed(None, a) is None  # not known on one side


def test_parquet_never_replaces_a_folder_that_is_not_its_own_dataset(tiny_export, tmp_path, capsys):
    """`--parquet` replaces its path whole. Pointed at the output folder it deleted the CSVs just written, and at
    a folder of documents it deleted them, with exit 0. Such paths are refused before any input is read; its own
    dataset is replaced; a run with no CSV removes an earlier dataset there, which would pass for this run's."""
    pytest.importorskip("pyarrow", reason="pyarrow is not installed (the [cluster] extra)")
    import numpy as np
    import pyarrow.parquet as pq

    from .conftest import write_video

    _, model_dir = tiny_export
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    clip = write_video(tmp_path / "in" / "clip.mp4", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(4)])
    out = tmp_path / "out"
    docs = _touch(tmp_path / "docs" / "notes.txt", b"important")
    for cmd in ("process", "batch"):
        extra = ["--cluster", "none"] if cmd == "batch" else []
        base = [cmd, str(clip), "--model", str(model_dir), "--no-video", "--no-progress", *extra]
        for target in (out, docs.parent, docs):
            capsys.readouterr()
            assert cli_main([*base, "--out-dir", str(out), "--overwrite" if cmd == "process" else "--force",
                             "--parquet", str(target)]) == 4, (cmd, target)
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "--parquet replaces its path whole" in err[0], err
        assert docs.read_bytes() == b"important"
    # its own dataset (a folder of part files) is replaced
    ds = tmp_path / "ds"
    assert cli_main(["batch", str(clip), "--model", str(model_dir), "--no-video", "--no-progress", "--cluster",
                     "none", "--out-dir", str(out), "--force", "--parquet", str(ds)]) == 0
    assert sorted(p.name for p in ds.iterdir()) == ["part-00000.parquet"]
    assert pq.read_table(ds).num_rows == 4
    assert cli_main(["batch", str(clip), "--model", str(model_dir), "--no-video", "--no-progress", "--cluster",
                     "none", "--out-dir", str(out), "--force", "--parquet", str(ds)]) == 0
    assert pq.read_table(ds).num_rows == 4
    # no CSV to put there (the only input fails): the earlier dataset does not stay as if it were this run's
    bad = _touch(tmp_path / "bad" / "clip.mp4", b"not a video at all")
    assert cli_main(["batch", str(bad), "--model", str(model_dir), "--no-video", "--no-progress", "--cluster",
                     "none", "--out-dir", str(tmp_path / "out2"), "--parquet", str(ds)]) == 3
    assert not ds.exists()


def test_inputs_a_missing_entry_moves_no_output_and_outputs_are_never_inputs(tmp_path):
    """A typo in a list (a path elsewhere) used to move every output to a deeper mirror, so a resumed batch
    redid finished work beside the old outputs; with --root it stopped the batch. An output folder that is the
    input folder, or lies under a pattern, had its annotated videos read as inputs on the next run. A list saved
    with a byte-order mark lost its first entry."""
    d = tmp_path / "in"
    a, b = _touch(d / "a" / "x.mp4"), _touch(d / "b" / "x.mp4")
    listed = _touch(tmp_path / "list.txt", f"\ufeff{a}\r\n{b}\r\n/elsewhere/typo/y.mp4\r\n".encode())
    items, _ = collect_inputs([f"@{listed}"], out_dir=tmp_path / "out")
    assert [(str(i.rel), i.error is not None) for i in items] == [
        ("a/x.mp4", False), ("b/x.mp4", False), ("y.mp4", True)]
    items, _ = collect_inputs([f"@{listed}"], out_dir=tmp_path / "out", root=d)
    assert [str(i.rel) for i in items if i.error is None] == ["a/x.mp4", "b/x.mp4"]
    # a missing file of the same name as one that exists writes nothing, so it is no clash (it stopped the batch)
    items, _ = collect_inputs([str(a), str(tmp_path / "gone" / "x.mp4")], out_dir=tmp_path / "out")
    assert [(str(i.rel), i.error is not None) for i in items] == [("x.mp4", False), ("x.mp4", True)]
    # outputs written into the input folder, and an output folder under a pattern's reach
    _touch(d / "a" / "x.annotated.mp4")
    _touch(d / "a" / "results" / "x.annotated.mp4")
    _touch(d / "own.annotated.mp4")  # a user's file of that name outside the output folder stays an input
    items, _ = collect_inputs([str(d / "a")], out_dir=d / "a")
    assert [str(i.rel) for i in items] == ["x.mp4"]
    for spec in (str(d / "a" / "**" / "*.mp4"), str(d / "a" / "*")):
        items, _ = collect_inputs([spec], out_dir=d / "a" / "results")
        # results/x.annotated.mp4 is this output folder's; a/x.annotated.mp4 is not (the folder is not the output)
        assert [i.path.name for i in items] == ["x.annotated.mp4", "x.mp4"], spec
        assert all("results" not in i.path.parts for i in items), spec
    items, _ = collect_inputs([str(d)], out_dir=tmp_path / "out")
    assert "own.annotated.mp4" in [i.path.name for i in items]


def test_a_cut_file_in_a_batch_is_reported_as_process_reports_it(tiny_export, tmp_path, capsys):
    """`process` says "~N frames missing (truncated or damaged file)"; `batch` said nothing (status done, exit 0;
    only the input's sidecar knew). The line, batch.json's entry and its counts now say it."""
    import numpy as np

    from .conftest import write_video

    _, model_dir = tiny_export
    rng = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    full = write_video(tmp_path / "src" / "full.mkv", [rng.integers(0, 256, (48, 64, 3), np.uint8) for _ in range(40)])
    cut = _touch(tmp_path / "in" / "cut.mkv", full.read_bytes()[: full.stat().st_size * 6 // 10])
    capsys.readouterr()
    assert cli_main(["batch", str(cut), "--model", str(model_dir), "--no-video", "--no-progress", "--cluster", "none",
                     "--out-dir", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "frames missing (truncated or damaged file)" in err and "1 of them cut or damaged" in err, err
    rec = json.loads((tmp_path / "out" / "batch.json").read_text())
    entry = rec["inputs"][0]
    assert entry["status"] == "done" and 0 < entry["frames"] < 40 and entry["frames_missing"] == 40 - entry["frames"]
    assert rec["counts"]["damaged"] == 1


# ----------------------------------------------------------------------------------------- batches sharing --out-dir
def _batch(tmp_path, *inputs, extra=()) -> int:
    return cli_main(["batch", *map(str, inputs), "--out-dir", str(tmp_path / "out"), "--cluster", "none",
                     "--no-video", "--no-progress", "--max-frames", "8", *extra])


def test_an_input_another_live_batch_works_on_is_left_to_it(tmp_path, capsys):
    """A job submitted twice (or overlapping shards) on one --out-dir: the second deleted the first's work folder
    and the first failed with "run ended as unknown", blaming the video. The input's lock says it is taken."""
    clip = tmp_path / "in" / "a.mp4"
    clip.parent.mkdir(parents=True)
    shutil.copy(shared_video(SHORT[0]), clip)
    work_root = tmp_path / "out" / PARTIAL_DIR / "a"
    live = work_root / "20260101T000000-abcdef.4242"  # the other batch's attempt in progress
    _touch(live / "a.csv", b"frame\n")
    holder = ("import fcntl, json, os, sys, time\n"
              "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
              "fcntl.flock(fd, fcntl.LOCK_EX)\n"
              "os.write(fd, json.dumps({'input': sys.argv[2], 'host': 'nodeX', 'pid': os.getpid()}).encode())\n"
              "print('locked', flush=True)\n"
              "time.sleep(120)\n")
    other = subprocess.Popen([sys.executable, "-c", holder, str(work_root / "lock"), str(clip)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert _batch(tmp_path, clip) == 3  # not done by this run
        err = capsys.readouterr().err
        assert "being processed by another batch (host nodeX" in err and "left to it" in err
        assert (live / "a.csv").is_file()  # the live attempt's work is untouched
        summary = json.loads((tmp_path / "out" / "batch.json").read_text())
        assert summary["inputs"][0]["status"] == "busy" and summary["counts"]["busy"] == 1
        assert not (tmp_path / "out" / "a.json").exists()
    finally:
        other.kill()
        other.wait()
    # its holder gone (the OS released the lock with the process), the input is this batch's: the dead
    # attempt's folder is cleared and the input done
    assert _batch(tmp_path, clip) == 0
    assert json.loads((tmp_path / "out" / "a.json").read_text())["status"] == "complete"
    assert not live.exists() and not (work_root / "lock").exists()


def test_an_input_another_batch_completed_after_this_one_planned_it_is_not_redone(tmp_path, capsys, monkeypatch):
    """Two batches walking one corpus in other orders (a job and its reversed list): each planned every input as to
    do, and one redid, after the other had finished it, 7 of 8 inputs, setting the other's complete outputs aside
    (a probe's finding). A task that holds the input's lock looks again: outputs completed meanwhile with the same
    settings are kept, the input counted as skipped."""
    from realtime.batch import runner

    clip = tmp_path / "in" / "a.mp4"
    clip.parent.mkdir(parents=True)
    shutil.copy(shared_video(SHORT[0]), clip)
    assert _batch(tmp_path, clip) == 0  # "the other batch", done first
    side = tmp_path / "out" / "a.json"
    before = (side.stat().st_mtime_ns, side.read_text())
    monkeypatch.setattr(runner, "is_complete", lambda *a, **k: (False, None))  # planned before it was done
    capsys.readouterr()
    assert _batch(tmp_path, clip) == 0
    assert (side.stat().st_mtime_ns, side.read_text()) == before  # untouched, not redone
    assert not (tmp_path / "out" / PARTIAL_DIR / "a" / "superseded").exists()
    summary = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert summary["inputs"][0]["status"] == "skipped" and summary["counts"]["skipped"] == 1
    assert summary["counts"].get("failed", 0) == 0


def test_a_rerun_with_nothing_new_keeps_the_parquet_dataset(tmp_path, capsys):
    """A probe's finding (the CLI in workflow engines): a batch rerun that skipped every input left the outputs alone
    but rewrote the Parquet dataset, so that Make or Snakemake rules downstream of it ran again. A dataset made from
    the same CSVs is kept; one input redone writes it again."""
    pytest.importorskip("pyarrow.parquet", reason="the Parquet dataset needs pyarrow ([cluster] extra)")
    clips = []
    for i, name in enumerate(SHORT[:2]):
        c = tmp_path / "in" / f"c{i}.mp4"
        c.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_video(name), c)
        clips.append(c)
    pq = tmp_path / "all.parquet"
    assert _batch(tmp_path, *clips, extra=["--parquet", str(pq)]) == 0
    first = (pq.stat().st_mtime_ns, pq.read_bytes())
    assert _batch(tmp_path, *clips, extra=["--parquet", str(pq)]) == 0  # everything skipped
    assert (pq.stat().st_mtime_ns, pq.read_bytes()) == first
    summary = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert summary["parquet"].get("unchanged") is True and summary["parquet"]["rows"] == summary["parquet"][
        "rows_expected"]
    assert _batch(tmp_path, clips[0], clips[1], extra=["--parquet", str(pq), "--force"]) == 0  # redone: new CSVs
    assert pq.stat().st_mtime_ns != first[0]
    assert json.loads((tmp_path / "out" / "batch.json").read_text())["parquet"].get("unchanged") is None


def test_batches_over_other_folders_never_overwrite_each_others_outputs(tmp_path, capsys):
    """Two shards (in/a, in/b) into one --out-dir: each one's default root is its own folder, so in/b/clip.mp4
    silently replaced in/a/clip.mp4's results (and a re-run of either redid it, for ever). Refused unless
    --force; one --root keeps both."""
    for d, name in (("a", SHORT[0]), ("b", SHORT[1])):
        (tmp_path / "in" / d).mkdir(parents=True)
        shutil.copy(shared_video(name), tmp_path / "in" / d / "clip.mp4")
    a, b = tmp_path / "in" / "a" / "clip.mp4", tmp_path / "in" / "b" / "clip.mp4"
    assert _batch(tmp_path, a) == 0
    side = tmp_path / "out" / "clip.json"
    before = side.read_bytes()
    capsys.readouterr()
    assert _batch(tmp_path, b) == 3
    err = capsys.readouterr().err
    assert f"hold the results of {a}" in err and "same --root" in err
    assert side.read_bytes() == before
    assert _batch(tmp_path, b, extra=["--dry-run"]) == 3  # a dry run ends as the run would
    capsys.readouterr()
    # a dry run says where each input's outputs go (they follow the inputs' common folder: now b/)
    assert _batch(tmp_path, b, extra=["--dry-run", "--root", str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"run\t{b}\t{tmp_path / 'out' / 'b' / 'clip.csv'}"]
    assert _batch(tmp_path, b, extra=["--root", str(tmp_path / "in")]) == 0  # mirrored below in/: b/clip.*
    assert json.loads((tmp_path / "out" / "b" / "clip.json").read_text())["batch"]["input"] == str(b)
    assert _batch(tmp_path, b, extra=["--force"]) == 0
    assert json.loads(side.read_text())["batch"]["input"] == str(b)


def test_two_writers_of_one_summary_never_remove_each_others_file(tmp_path):
    """Both wrote through "batch.json.tmp": one's rename took the other's file away, and a batch that had run
    its whole corpus failed to write its summary (exit 4)."""
    import threading

    from realtime.batch.runner import _write_json

    path, errors = tmp_path / "batch.json", []

    def write(k: int) -> None:
        for i in range(300):
            try:
                _write_json(path, {"writer": k, "i": i})
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert json.loads(path.read_text())["i"] == 299
    assert [p.name for p in tmp_path.iterdir()] == ["batch.json"]


def test_a_summary_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    """With a temporary name of its own per write, each failed summary write (a full disk) left a hidden
    ``.batch.json.<pid>-<hex>.tmp`` behind."""
    from facecycle.errors import OutputError
    from realtime.batch.runner import _write_json

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match="No space left"):
        _write_json(tmp_path / "batch.json", {"x": 1})
    assert list(tmp_path.iterdir()) == []


@needs_ray
def test_the_ray_progress_board_holds_the_inputs_in_flight_only(monkeypatch):
    """The progress board (a Ray actor) kept one entry per input of the corpus, and every progress poll copied all
    of them: an input whose attempt ends is now forgotten. Checked on the board itself and on the executor's
    ``wait``, with Ray's calls stood in for (no Ray started)."""
    import types

    from realtime.batch.executors import RayExecutor, _ProgressBoard

    board = _ProgressBoard()
    board.report("a.mp4", 10)
    board.report("b.mp4", 5)
    board.forget("a.mp4")
    board.forget("never.mp4")
    assert board.get() == {"b.mp4": 5}

    class _Remote:
        def __init__(self, f):
            self.remote = f

    live = _ProgressBoard()
    live.report("a.mp4", 7)
    fake_board = types.SimpleNamespace(forget=_Remote(live.forget))
    fake_ray = types.SimpleNamespace(wait=lambda refs, num_returns, timeout: (list(refs), []),
                                     get=lambda ref: {"rel": ref, "status": "done"},
                                     exceptions=types.SimpleNamespace(RayError=RuntimeError))
    ex = RayExecutor(BatchSettings(), cluster="local")
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    ex._board = fake_board
    ex._refs, ex._tasks = {1: "a.mp4"}, {1: {"input": "a.mp4", "rel": "a.mp4"}}
    assert ex.wait([1], timeout=0) == [(1, {"rel": "a.mp4", "status": "done"})]
    assert live.get() == {}


def test_a_redo_that_fails_sets_the_earlier_outputs_aside(tmp_path, capsys):
    """Probe finding: an input redone after it changed, which then failed (it no longer decodes), lost its sidecar
    (the commit marker goes first) but kept its earlier CSV and video in place: a CSV without a sidecar, read by
    anyone globbing the CSVs as a result of the file as it is now. The earlier outputs are now moved, with their
    sidecar, into the input's work folder (`superseded/`, named in the error), and a later good run clears them."""
    from .conftest import real_frames, write_video

    src = tmp_path / "in"
    src.mkdir()
    clip = write_video(src / "a.mp4", real_frames(4), rate=25)
    good = clip.read_bytes()
    write_video(src / "b.mp4", real_frames(3), rate=25)
    out = tmp_path / "out"
    o = ["--out-dir", str(out), "--cluster", "none", "--no-progress"]
    assert cli_main(["batch", str(src), *o]) == 0, capsys.readouterr().err
    before = (out / "a.csv").read_bytes()
    clip.write_text("no longer a video\n")
    capsys.readouterr()
    assert cli_main(["batch", str(src), *o]) == 3
    err = capsys.readouterr().err
    aside = out / ".facecycle-partial" / "a" / "superseded"
    assert "its earlier outputs were moved to" in err and str(aside) in err, err
    assert not any((out / n).exists() for n in ("a.csv", "a.json", "a.annotated.mp4")), sorted(os.listdir(out))
    assert sorted(p.name for p in aside.iterdir()) == ["a.annotated.mp4", "a.csv", "a.json"]
    assert (aside / "a.csv").read_bytes() == before and (out / "b.csv").is_file() and (out / "b.json").is_file()
    clip.write_bytes(good)  # the input mended: done again, the earlier outputs cleared
    assert cli_main(["batch", str(src), *o]) == 0
    assert (out / "a.csv").read_bytes() == before and not aside.exists()


def test_damage_read_through_is_reported_by_batch_as_by_process(tmp_path, capsys):
    """A review's finding: damage read through (frames with errors concealed, packets the demuxer flagged that
    decoded) moved from `decode_errors` to the source's `damaged`, which batch did not report: such an input was a
    silent `done`. Two MPEG-TS segments joined end to end (the join's packet is flagged): the per-input line says
    so, batch.json has `damaged` and `counts.damaged` counts the input."""
    import json

    from .conftest import real_frames, write_video

    src = tmp_path / "in"
    src.mkdir()
    parts = [write_video(tmp_path / f"seg{k}.ts", real_frames(6), fmt="mpegts") for k in (0, 1)]
    (src / "joined.ts").write_bytes(parts[0].read_bytes() + parts[1].read_bytes())
    out = tmp_path / "out"
    assert cli_main(["batch", str(src), "--out-dir", str(out), "--cluster", "none", "--no-video",
                     "--no-progress"]) == 0
    err = capsys.readouterr().err
    summary = json.loads((out / "batch.json").read_text())
    entry = next(e for e in summary["inputs"] if e["rel"] == "joined.ts")
    assert entry["damaged"] >= 1 and entry["decode_errors"] == 0, entry
    assert summary["counts"]["damaged"] == 1 and "damage read through in" in err, err


def test_an_output_held_open_on_windows_fails_its_input_not_the_batch(tmp_path, capsys, monkeypatch):
    """Portability review: on Windows a result CSV open in a spreadsheet cannot be replaced (PermissionError), and
    that stopped the whole batch as an output folder that cannot be written. The replace is retried, and an output
    still held fails its own input (exit 3) while the batch goes on. (Windows is stood in for: the flag and the
    held file are made here.)"""
    from realtime.batch import job

    from .conftest import real_frames, write_video

    src = tmp_path / "in"
    src.mkdir()
    for n in ("a", "b"):
        write_video(src / f"{n}.mp4", real_frames(3), rate=25)
    real_replace = os.replace
    tries = hold_replace(monkeypatch, job, lambda a, b: b if b.endswith(os.sep + "a.csv") else None)
    out = tmp_path / "out"
    assert cli_main(["batch", str(src), "--out-dir", str(out), "--cluster", "none", "--no-video",
                     "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "a.csv: cannot be replaced, open in another program?" in err, err
    assert len(tries) == 5 and (out / "b.csv").is_file() and (out / "b.json").is_file()
    assert not (out / "a.json").exists()
    monkeypatch.setattr(job, "_WINDOWS", False)  # elsewhere: a folder that cannot be written stops the batch
    with pytest.raises(PermissionError):
        job._replace(src / "a.mp4", out / "a.csv")
    # a redo whose video is held after its CSV was placed: the new CSV is not set aside as an earlier output
    # (a review's finding); it stays in place, without a sidecar, so the next run redoes the input
    monkeypatch.setattr(job, "_WINDOWS", True)
    monkeypatch.setattr(job.os, "replace", real_replace)
    out2 = tmp_path / "out2"
    o2 = ["--out-dir", str(out2), "--cluster", "none", "--no-progress"]
    assert cli_main(["batch", str(src / "a.mp4"), *o2]) == 0
    capsys.readouterr()

    def video_held(a, b, *args, **kw):
        if str(b).endswith(os.sep + "a.annotated.mp4"):
            raise PermissionError(13, "held", str(b))
        return real_replace(a, b, *args, **kw)

    monkeypatch.setattr(job.os, "replace", video_held)
    assert cli_main(["batch", str(src / "a.mp4"), *o2, "--force"]) == 3
    aside = out2 / ".facecycle-partial" / "a" / "superseded"
    assert (out2 / "a.csv").is_file() and not (aside / "a.csv").exists(), sorted(os.listdir(out2))


def test_work_folders_never_reach_outside_their_input_and_links_are_not_followed(tmp_path, capsys):
    """An input named `...mp4` (stem `..`) made its work folder `.facecycle-partial/..`, the output folder itself,
    and the stale-attempt cleanup deleted every folder there: another input's outputs and anything else (a URL
    `http://../...mp4` reached the folder above --out-dir). A link planted as an input's work folder made the
    cleanup delete its target's folders. Now the work folder is named apart, only folders named as attempts are
    cleaned, and a link there stops the batch (exit 4) with nothing deleted."""
    from realtime.batch.plan import url_output_path

    from .conftest import real_frames, write_video

    src = tmp_path / "in"
    src.mkdir()
    clip = write_video(src / "...mp4", real_frames(4), rate=25)
    out = tmp_path / "out"
    (out / "other" / "keep").mkdir(parents=True)
    o = ["--out-dir", str(out), "--cluster", "none", "--no-video", "--no-progress"]
    assert cli_main(["batch", str(clip), *o]) == 0, capsys.readouterr().err
    assert (out / "other" / "keep").is_dir() and (out / "...csv").is_file() and (out / "...json").is_file()
    assert url_output_path("http://../...mp4").parts[0] == "host"
    # a backslash separates folders on Windows, and `:` names a drive: `..%5C..%5Cx.mp4` reached two folders above
    # --out-dir there, `C%3A%5Cx.mp4` the drive's root; a device name (`con`) and `?*<>|"` are no file names there.
    # Made safe on Windows; elsewhere the names stay (a colon is common in object stores' keys)
    from realtime.batch import plan

    assert url_output_path("https://h/2024-01-01T10:00:00.mp4").as_posix() == "h/2024-01-01T10:00:00.mp4" or \
        plan._WINDOWS
    windows, plan._WINDOWS = plan._WINDOWS, True
    try:
        assert url_output_path("https://h/..%5C..%5Cevil.mp4").as_posix() == "h/evil.mp4"
        assert url_output_path("https://h/C%3A%5Cx.mp4").as_posix() == "h/C_/x.mp4"
        assert url_output_path("https://h/a/con.mp4").as_posix() == "h/a/_con.mp4"
        assert url_output_path('https://h/a/b%3F%2A%3C%3E%7C%22c.mp4').as_posix() == "h/a/b______c.mp4"
    finally:
        plan._WINDOWS = windows
    # one work folder (and lock) per stem: `...mp4` and a file named `%2e%2e.mp4` shared one
    from realtime.batch.job import output_paths

    works = [output_paths(out, n)["work"] for n in ("...mp4", "%2e%2e.mp4", "%252e.mp4", "%2e.mp4", "..mp4")]
    assert len(set(works)) == len(works) and all(w.parent == out / ".facecycle-partial" for w in works), works
    # a link where an input's work folder goes
    victim = tmp_path / "victim"
    (victim / "keep1").mkdir(parents=True)
    write_video(src / "b.mp4", real_frames(4), rate=25)
    (out / ".facecycle-partial").mkdir(exist_ok=True)
    (out / ".facecycle-partial" / "b").symlink_to(victim, target_is_directory=True)
    capsys.readouterr()
    assert cli_main(["batch", str(src / "b.mp4"), *o]) == 4
    assert "a symbolic link or not a folder" in capsys.readouterr().err
    assert (victim / "keep1").is_dir() and not (victim / "lock").exists()
    # a folder there that is not an attempt's is left alone
    (out / ".facecycle-partial" / "b").unlink()
    (out / ".facecycle-partial" / "b" / "notes").mkdir(parents=True)
    assert cli_main(["batch", str(src / "b.mp4"), *o]) == 0
    assert (out / ".facecycle-partial" / "b" / "notes").is_dir() and (out / "b.csv").is_file()
