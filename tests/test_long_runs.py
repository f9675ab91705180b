"""Runs of hours and days (probe h67): the sidecar's room on a full disk grows with the run, a final sidecar that
cannot be written fails the run, the ``running`` sidecar is rewritten while the run goes, a live recording is a
fragmented MP4 that plays when cut, per-id state is forgotten with its id, the baseline's cap is said a few times,
and a camera's timestamps count a suspend and its sidecar says when it started."""
from __future__ import annotations

import errno
import json
import logging
import math
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import List, Optional

import av
import numpy as np
import pytest

from facecycle.errors import OutputError
from realtime import outputs as outputs_mod
from realtime.outputs import RunOutputs
from realtime.sinks import sidecar
from realtime.summary import MAX_TRACKS, ExpressionSummary, _IdSet
from realtime.types import EMOTIONS, Face, FramePacket

from .conftest import StubCapture, one_error_line, real_frames, write_video

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def _face(tid: int, k: int = 3, intensity: float = 0.5, lift: float = 1.0, identity=None) -> Face:
    e = np.full(len(EMOTIONS), 0.3 / (len(EMOTIONS) - 1), np.float32)
    e[k % len(EMOTIONS)] = 0.7
    return Face(box=np.array([0, 0, 10, 10], np.float32), score=0.9, landmarks=np.zeros((5, 2), np.float32),
                track_id=tid, emotions=e, intensity=intensity, rel_intensity=0.4, baseline_ready=True, lift=lift,
                identity=identity)


def _packet(i: int, faces, t: Optional[float] = None, cut: bool = False) -> FramePacket:
    p = FramePacket(index=i, pts=i, time_base=Fraction(1, 25), timestamp=i / 25 if t is None else t,
                    image=np.zeros((8, 8, 3), np.uint8), faces=list(faces))
    p.scene_cut = cut
    return p


def _outputs() -> RunOutputs:
    return RunOutputs(4, fps=25, describe=lambda: {"input": {"name": "test", "live": False}},
                      stats=lambda: {"frames_analysed": 1, "fps": 25.0})


def _churn(out: RunOutputs, tracks: int, per_track: int = 2) -> int:
    """``tracks`` tracks one after the other, each ``per_track`` frames (a dark one in five); returns the frames."""
    i = 0
    for tid in range(tracks):
        for _ in range(per_track):
            out.write(_packet(i, [_face(tid, k=tid, intensity=0.3 + 0.001 * (tid % 500),
                                        lift=2.0 if tid % 5 == 0 else 1.0)]))
            i += 1
    return i


def _no_temp_writes(monkeypatch) -> None:
    """The disk is full for anything new: every atomic write (its temporary file) fails."""
    def full(path, text, newline=None):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(sidecar, "write_atomic", full)


def _fail_final_sidecars(monkeypatch) -> None:
    """Every sidecar but the running checkpoints fails to be written, as on a full disk."""
    real = outputs_mod.write_sidecar

    def fail_final(path, info):
        if info.get("status") != "running":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, info)

    monkeypatch.setattr(outputs_mod, "write_sidecar", fail_final)


# ------------------------------------------------------------------ 1. the final sidecar on a full disk
def test_a_final_sidecar_that_cannot_be_written_fails_the_run(tmp_path, monkeypatch):
    """It was a warning: the run ended with success, its sidecar still ``running`` with 0 frames."""
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    _churn(out, 3)
    _fail_final_sidecars(monkeypatch)
    err = out.close("complete")
    assert isinstance(err, OutputError), err
    msg = str(err)
    assert msg.startswith(f"{tmp_path / 'a.json'}: disk full") and "final sidecar was not written" in msg, msg
    assert "\n" not in msg
    assert (tmp_path / "a.csv").is_file() and out.csv is None  # the CSV is finished all the same


def test_the_cli_exits_4_with_one_line_when_the_final_sidecar_fails(model, tmp_path, monkeypatch, capfd, caplog):
    from facecycle_cli import main

    clip = write_video(tmp_path / "clip.mp4", real_frames(10))
    _fail_final_sidecars(monkeypatch)
    capfd.readouterr()
    rc = main(["process", str(clip), "--model", str(model), "--no-progress", "--out-dir", str(tmp_path / "out"),
               "--no-video"])
    err = capfd.readouterr()[1]
    assert rc == 4, err
    line = one_error_line(err)
    assert "clip.json: disk full" in line and "final sidecar was not written" in line, line
    assert err.count("final sidecar was not written") == 1, err
    # (a WARNING "closing the CSV failed: ..." said it a second time; under pytest the log goes to caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "closing the" in r.getMessage()]


def test_a_close_error_the_caller_raises_is_not_also_a_warning(tmp_path, monkeypatch, caplog):
    """`close(raises=True)`: the run raises the error returned, so the close logs it at DEBUG only; without it (an
    error that goes no further: the run ends on another exception) it stays a WARNING."""
    for raises in (True, False):
        out = _outputs()
        out.open_csv(tmp_path / f"{raises}.csv")
        _churn(out, 2)
        real = outputs_mod.write_sidecar

        def fail_final(path, info, real=real):
            if info.get("status") != "running":
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, info)

        monkeypatch.setattr(outputs_mod, "write_sidecar", fail_final)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="realtime.outputs"):
            err = out.close("complete", raises=raises)
        monkeypatch.setattr(outputs_mod, "write_sidecar", real)
        assert isinstance(err, OutputError)
        said = [r for r in caplog.records if "closing the CSV failed" in r.getMessage()]
        assert [r.levelno for r in said] == [logging.DEBUG if raises else logging.WARNING], said


@pytest.mark.parametrize("tracks", [120, MAX_TRACKS + 100])
def test_the_sidecars_room_grows_with_its_tracks(tmp_path, monkeypatch, tracks):
    """The final sidecar grows about 0.5 KB a listed track (550 KB at the summary's 1,000): a fixed 32 KiB held about
    50 tracks, and on a full disk a run with more ended 'complete' with its sidecar 'running', 0 frames. The
    ``running`` sidecar is rewritten as tracks accumulate, padded with room for the final one, which is then written
    in its place when nothing new fits on the disk."""
    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 1e9)  # growth alone
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    frames = _churn(out, tracks)
    side = tmp_path / "a.json"
    reserved = side.stat().st_size
    assert json.loads(side.read_text())["status"] == "running"
    _no_temp_writes(monkeypatch)
    assert out.close("complete") is None
    d = json.loads(side.read_text())
    assert d["status"] == "complete" and d["frames"] == frames and d["summary"]["tracks_total"] == tracks
    assert len(d["summary"]["tracks"]) == min(tracks, MAX_TRACKS) and d["stats"]["frames_analysed"] == 1
    assert side.stat().st_size == reserved  # written over the reserved blocks: the file did not grow
    compact = len(json.dumps(d, separators=(",", ":")))
    assert compact > sidecar.RESERVE_BYTES  # (the fixed reserve would not have held it)
    if tracks > MAX_TRACKS:  # the upper bound: the summary's cap, a few hundred KB compact
        assert 300_000 < compact < 900_000, compact


def test_the_reserve_keeps_room_for_the_growth_until_the_next_checkpoint(tmp_path, monkeypatch):
    """The rule behind the growth (sidecar.reserve_for, RunOutputs._checkpoint's SIDECAR_TRACKS_STEP trigger),
    driven through RunOutputs.write up to the summary's cap with the real per-track size of the summary (lifted
    rows included): at each checkpoint the final sidecar as it would be written then (compact, with statistics
    and an error message) fits in the file the checkpoint before reserved; and after the last one, on a full disk,
    the final sidecar is written over it."""
    from facecycle.files import json_text
    from realtime.sinks import versions

    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 1e9)  # growth alone
    out: Optional[RunOutputs] = None

    def describe():
        # the rest of a real sidecar (model, backend, detector, versions): about 5 KB; and beyond the summary, a
        # track may add a dark_faces entry (about 90 bytes, the first 100) and, for pictures, a name in
        # read_whole_first (the first 1,000): 350 bytes a track, more than either
        listed = len(out.csv.summary.tracks) if out is not None and out.csv is not None else 0
        return {"input": {"name": "test", "live": False}, "rest": "m" * 6 * 1024, "per_track": ["t" * 340] * listed}

    out = RunOutputs(4, fps=25, describe=describe, stats=lambda: {"frames_analysed": 1, "fps": 25.0})
    side = tmp_path / "a.json"
    real, checks = outputs_mod.write_sidecar, []

    def checkpoint(path, info):
        if info.get("status") == "running" and Path(path).is_file():  # (not the sidecar of the run's start)
            final = dict(info, status="failed", error="e" * 2048, versions=versions(), written_at="x" * 20)
            need = len((json_text(final, indent=None) + "\n").encode())
            checks.append((len(info["summary"]["tracks"]), need, Path(path).stat().st_size))
        real(path, info)

    monkeypatch.setattr(outputs_mod, "write_sidecar", checkpoint)
    out.open_csv(tmp_path / "a.csv")
    i = 0
    for tid in range(MAX_TRACKS + 50):
        for j in range(3):
            f = _face(tid, k=tid, intensity=0.2 + 0.7 * ((tid * 7 + j) % 100) / 100, lift=2.0)
            out.write(_packet(i, [f]))
            i += 1
    counts = [c[0] for c in checks]
    # (the step grows by a quarter: the last checkpoint comes before the cap, 921 tracks, and its reserve holds
    # the final sidecar of 1,000: the close on a full disk below)
    assert counts[0] == outputs_mod.SIDECAR_TRACKS_STEP and counts[-1] < MAX_TRACKS <= counts[-1] * 5 // 4, counts
    assert counts == sorted(set(counts)) and len(checks) < 40, counts  # (a few dozen, not one per track)
    for tracks, need, have in checks:
        assert need <= have, (tracks, need, have)
    _no_temp_writes(monkeypatch)  # the disk full at the end: the final sidecar goes over the reserved blocks
    reserved = side.stat().st_size
    assert out.close("failed", OutputError("e" * 2048)) is None
    d = json.loads(side.read_text(encoding="utf-8"))
    assert d["status"] == "failed" and len(d["summary"]["tracks"]) == MAX_TRACKS and side.stat().st_size == reserved


# ------------------------------------------------------------------ 2. checkpoints while the run goes
def test_the_running_sidecar_is_rewritten_while_the_run_goes(tmp_path, monkeypatch):
    """A killed days-long run kept its start-of-run sidecar: 0 frames, no statistics. Now it is rewritten every
    SIDECAR_EVERY_S seconds, atomically, still 'running', with the frames, rows, summary and statistics so far;
    the final sidecar is as it was."""
    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 0.0)
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    side = tmp_path / "a.json"
    for i in range(5):
        out.write(_packet(i, [_face(1)]))
        d = json.loads(side.read_text())
        assert d["status"] == "running" and d["frames"] == i + 1 and d["rows"] == i + 1
        assert d["summary"]["faces"]["rows"] == i + 1 and d["stats"] == {"frames_analysed": 1, "fps": 25.0}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert out.close("complete") is None
    with_checkpoints = json.loads(side.read_text())

    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 1e9)  # the same run without them
    out = _outputs()
    (tmp_path / "b").mkdir()
    out.open_csv(tmp_path / "b" / "a.csv")
    for i in range(5):
        out.write(_packet(i, [_face(1)]))
    assert json.loads((tmp_path / "b" / "a.json").read_text())["frames"] == 0  # (no checkpoint: as it was)
    assert out.close("complete") is None
    without = json.loads((tmp_path / "b" / "a.json").read_text())
    for d in (with_checkpoints, without):
        d.pop("written_at")
        d["csv"] = Path(d["csv"]).name
    assert with_checkpoints == without


def test_a_checkpoint_that_fails_is_said_once_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 0.0)
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    monkeypatch.setattr(outputs_mod, "write_sidecar", lambda path, info: (_ for _ in ()).throw(ENOSPC))
    with caplog.at_level(logging.WARNING, logger="realtime.outputs"):
        for i in range(4):
            out.write(_packet(i, [_face(1)]))
    said = [r.getMessage() for r in caplog.records if "checkpoint" in r.getMessage()]
    assert len(said) == 1 and "disk full" in said[0], said
    assert out.csv is not None and out.csv.frames == 4


def test_a_checkpoint_at_the_summarys_cap_is_cheap(tmp_path, monkeypatch):
    """A checkpoint at the summary's 1,000 tracks (the largest sidecar) costs tens of milliseconds, once a minute."""
    monkeypatch.setattr(outputs_mod, "SIDECAR_EVERY_S", 1e9)
    out = _outputs()
    out.open_csv(tmp_path / "a.csv")
    _churn(out, MAX_TRACKS, per_track=1)
    t = time.perf_counter()
    for _ in range(3):
        out.write_sidecar("running", with_stats=True)
    per = (time.perf_counter() - t) / 3
    out.close("complete")
    assert per < 1.0, per  # (measured about 0.05 s; a loaded CI machine is slower)


# ------------------------------------------------------------------ 3. a live recording: fragmented MP4
def _write_frames(sink, n: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    tb = Fraction(1, 25)
    for i in range(n):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8) if i % 50 == 0 else \
            np.full((size, size, 3), (i * 5) % 255, np.uint8)
        sink.write(FramePacket(index=i, pts=i, time_base=tb, timestamp=i / 25, image=img))


def _decodable(path: Path) -> int:
    """Frames decoded from the file's start until the first damaged packet (a cut file's last)."""
    n = 0
    with av.open(str(path)) as c:
        try:
            for pk in c.demux(video=0):
                try:
                    n += len(pk.decode())
                except av.error.InvalidDataError:
                    break
        except av.error.FFmpegError:
            pass
    return n


def test_a_live_recording_is_fragmented_and_plays_when_cut(tmp_path):
    """A killed ``live --record x.mp4`` left a file that played nowhere ("Invalid data"), and the MP4 muxer kept 72
    bytes a frame in memory until the file closed. A live source's recording is now a fragmented MP4: cut mid-file (a
    SIGKILL), it still opens and decodes its first frames. A file's recording (``process``) is as it was."""
    from realtime.sinks import VideoSink

    live = RunOutputs(4, fps=25, time_base=Fraction(1, 25), describe=lambda: {"input": {"live": True}},
                      video_preset="ultrafast")
    live.open_video(tmp_path / "rec.mp4")
    assert isinstance(live.video, VideoSink) and live.video.fragmented
    _write_frames(live.video, 300)
    assert live.close("complete") is None
    data = (tmp_path / "rec.mp4").read_bytes()
    assert b"moof" in data
    assert _decodable(tmp_path / "rec.mp4") == 300
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    got = _decodable(cut)
    assert 50 <= got < 300, got

    offline = RunOutputs(4, fps=25, time_base=Fraction(1, 25), describe=lambda: {"input": {"live": False}},
                         video_preset="ultrafast")
    offline.open_video(tmp_path / "file.mp4")
    assert not offline.video.fragmented
    _write_frames(offline.video, 60)
    assert offline.close("complete") is None
    whole = (tmp_path / "file.mp4").read_bytes()
    assert b"moof" not in whole
    (tmp_path / "file_cut.mp4").write_bytes(whole[: int(len(whole) * 0.6)])
    with pytest.raises(av.error.FFmpegError):  # (its index comes last: cut, it plays nowhere)
        _decodable(tmp_path / "file_cut.mp4")
    # Matroska keeps its own layout (it plays when cut)
    mkv = VideoSink(tmp_path / "rec.mkv", fps=25, time_base=Fraction(1, 25), preset="ultrafast", fragmented=True)
    assert not mkv.fragmented
    mkv.close()


# ------------------------------------------------------------------ 4. per-id state forgotten with its id
def test_per_id_state_stays_bounded_over_churned_ids():
    """20,000 ids that never come back kept about 0.45 KB each for good (baseline._began, summary._seen, reid's
    tracker-id map); each is now forgotten with the rest of its id's state."""
    from realtime.baseline import NeutralBaseline
    from realtime.reid import FORGET_FRAMES, IdentityReID

    rng = np.random.default_rng(0)
    bl = NeutralBaseline(warmup_frames=2, warmup_s=0.05)
    summ = ExpressionSummary(max_tracks=50)
    reid = IdentityReID()
    i, t = 0, 0.0
    n_ids = 3000
    for tid in range(n_ids):
        ident = rng.normal(size=8).astype(np.float32)
        cut = tid % 40 == 0  # an edited video's cuts; between them, people come and go in one shot
        for j in range(4):
            p = _packet(i, [_face(tid, intensity=0.3, identity=ident)], t=t, cut=cut and j == 0)
            reid(p)
            bl(p)
            summ.add(p)
            i, t = i + 1, t + 0.5
    assert len(bl._h) <= 25 and len(bl._began) <= 25, (len(bl._h), len(bl._began))
    assert summ.tracks_total == n_ids and summ._seen.runs <= 2 and len(summ.tracks) <= 50
    horizon = int(max(60.0 / 0.5, FORGET_FRAMES) / 4) + 50
    assert len(reid._map) <= horizon and len(reid._seen) <= horizon, (len(reid._map), horizon)
    assert len(reid._codes) <= 25


def test_reid_keeps_the_id_of_a_track_kept_across_a_jump_in_time():
    """A tracker id is forgotten only once the tracker has ended it: a track present on the frames either side of a
    long jump in time (a restarted stream) keeps its id, as before."""
    from realtime.reid import FORGET_FRAMES, IdentityReID

    rng = np.random.default_rng(1)
    me = rng.normal(size=8).astype(np.float32)
    r = IdentityReID()
    for i in range(FORGET_FRAMES + 5):  # another person for a while, then a fresh id for tracker id 7
        r(_packet(i, [_face(5, identity=rng.normal(size=8).astype(np.float32))], t=i / 25))
    p = _packet(200, [_face(7, identity=me)], t=8.0)
    r(p)
    mine = p.faces[0].track_id
    for k in range(2 * FORGET_FRAMES):  # a jump of 10,000 s, then the same track goes on
        p = _packet(201 + k, [_face(7, identity=me)], t=10_000.0 + k / 25)
        r(p)
        assert p.faces[0].track_id == mine


def test_the_id_set_is_a_set():
    rng = np.random.default_rng(2)
    ids, ref = _IdSet(), set()
    for x in list(range(500)) + list(rng.integers(-50, 2000, 3000)):
        assert ids.add(int(x)) == (int(x) not in ref)
        ref.add(int(x))
        assert len(ids) == len(ref)
    ordered = _IdSet()
    for x in range(100_000):
        ordered.add(x)
    assert ordered.runs == 1 and len(ordered) == 100_000


def test_a_seeded_baseline_keeps_its_keys_after_ids_are_forgotten():
    """The look-ahead keys each track's record by (id, histories begun): a seeded run still counts an id that came
    back after being forgotten, as the recording run did."""
    from realtime.baseline import NeutralBaseline

    def feed(bl):
        out = []
        for i in range(120):
            t = i / 5  # the id is gone from 8 s to 20 s (forget_s 10), then back
            if 8 <= t < 20:
                bl(_packet(i, [], t=t))
                continue
            f = _face(4, intensity=0.2 + 0.6 * ((i * 13) % 10) / 10)
            bl(_packet(i, [f], t=t))
            out.append(f.rel_intensity)
        return out

    first = NeutralBaseline(warmup_frames=5, warmup_s=1.0)
    first.record = True
    feed(first)
    assert set(first.histories()) == {(4, 0), (4, 1)}
    second = NeutralBaseline(warmup_frames=5, warmup_s=1.0)
    second.seed(first.histories())
    got = feed(second)
    assert second.describe()["lookahead_tracks_seeded"] == 2
    assert all(math.isfinite(v) for v in got)  # no warm-up in either history: both were seeded


# ------------------------------------------------------------------ 5. the baseline's cap said a few times
def test_the_cap_is_said_at_warning_for_the_first_faces_then_at_info_with_a_count(caplog):
    from realtime.baseline import CAP_TRACKS_SAID, NeutralBaseline

    bl = NeutralBaseline(warmup_frames=3, warmup_s=0.1)
    n = 20
    with caplog.at_level(logging.INFO, logger="realtime.baseline"):
        for tid in range(n):
            for j in range(6):
                bl(_packet(tid * 6 + j, [_face(tid, intensity=0.7)], t=tid * 100 + j / 25))
    recs = [r for r in caplog.records if r.name == "realtime.baseline" and "baseline's cap" in r.getMessage()]
    warned = [r for r in recs if r.levelno == logging.WARNING]
    info = [r for r in recs if r.levelno == logging.INFO]
    assert len(warned) == CAP_TRACKS_SAID and len(info) == n - CAP_TRACKS_SAID
    assert "further such faces are said at INFO level" in warned[-1].getMessage()
    assert info[-1].getMessage().startswith(f"face #{n - 1} ") and f"({n} faces at the cap so far)" in \
        info[-1].getMessage()
    assert bl.describe()["tracks_at_cap"] == n and bl.capped_tracks() == list(range(n))


# ------------------------------------------------------------------ 6. a camera's clock and start
class _Capture(StubCapture):
    def read(self):
        self.i += 1
        return True, np.full((8, 8, 3), self.i, np.uint8)


def test_a_cameras_timestamps_count_a_suspend_and_its_start_is_recorded(monkeypatch):
    """perf_counter (CLOCK_MONOTONIC) stops while the machine sleeps: a 2-h suspend left no gap in the timeline. The
    arrival clock is CLOCK_BOOTTIME where the OS has it, and describe() gives the first frame's time of day."""
    import realtime.sources.camera as camera

    if not hasattr(camera.time, "CLOCK_BOOTTIME"):
        pytest.skip("no CLOCK_BOOTTIME here: perf_counter, as before")
    monkeypatch.setattr(camera.cv2, "VideoCapture", _Capture)
    boot = iter([1000.0, 1000.0, 1000.04, 1000.08 + 7200, 1000.12 + 7200])  # (the first: the probe)
    real = camera.time.clock_gettime
    monkeypatch.setattr(camera.time, "clock_gettime",
                        lambda clk: next(boot) if clk == camera.time.CLOCK_BOOTTIME else real(clk))
    src = camera.CameraSource(0, max_frames=4)
    assert src.describe()["started_at"] is None
    before = datetime.now(timezone.utc)
    with src:
        ts: List[float] = [p.timestamp for p in src]
    assert ts == pytest.approx([0.0, 0.04, 7200.08, 7200.12])
    d = src.describe()
    assert d["arrival_clock"] == "boottime"
    started = datetime.fromisoformat(d["started_at"].replace("Z", "+00:00"))
    assert d["started_at"].endswith("Z") and abs((started - before).total_seconds()) < 5


def test_a_camera_without_boottime_uses_perf_counter(monkeypatch):
    import realtime.sources.camera as camera

    monkeypatch.setattr(camera.cv2, "VideoCapture", _Capture)
    monkeypatch.delattr(camera.time, "CLOCK_BOOTTIME", raising=False)
    src = camera.CameraSource(0, max_frames=3)
    with src:
        ts = [p.timestamp for p in src]
    assert ts[0] == 0.0 and ts == sorted(ts) and src.describe()["arrival_clock"] == "perf_counter"
