"""First-run usability of the command line (issue 12): help texts, "did you mean", `live` without a display,
`live --no-window` progress, the end-of-run line. Runs without ../shared (synthetic clips)."""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from engines.select import BACKEND_NAMES
from facecycle_cli import build_parser, main
from realtime.detectors import DETECTOR_CHOICES

from .conftest import ROOT, real_frames, write_video


def _sub(name: str) -> argparse.ArgumentParser:
    for a in build_parser()._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices[name]
    raise KeyError(name)


def _all_parsers(p, path=("facecycle",)):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for n, sp in a.choices.items():
                yield from _all_parsers(sp, path + (n,))


def test_no_option_shows_an_auto_generated_metavar():
    for path, p in _all_parsers(build_parser()):
        for a in p._actions:
            if a.option_strings and a.nargs != 0 and a.choices is None and a.type is not None:
                assert a.metavar is not None, (path, a.option_strings)
        text = p.format_help()
        for bad in ("SCORE_THRESHOLD", "VIDEO_PRESET", "DETECTOR_MODEL", "MAX_FRAMES"):
            assert bad not in text, (path, bad)


def test_process_live_and_app_help_describe_inputs_and_choices():
    proc = _sub("process").format_help()
    assert "INPUT" in proc and "video file, stream URL" in proc
    for name in BACKEND_NAMES:  # the help lists what the error message accepts
        assert name in " ".join(proc.split()), name
    for name in DETECTOR_CHOICES:
        assert name in proc
    live = _sub("live")
    assert live.description and "--no-window" in live.description
    app = " ".join(_sub("app").format_help().split())
    assert all(d in app for d in DETECTOR_CHOICES) and "--detector-model" in app


def test_a_misspelt_option_or_choice_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit) as e:
        main(["process", "x.mp4", "--detectr", "yunet"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean --detector?" in err[0]
    with pytest.raises(SystemExit):
        main(["process", "x.mp4", "--detector", "insightfce"])
    assert "did you mean insightface?" in capsys.readouterr().err


def test_did_you_mean_reads_the_sub_command_given(capsys):
    # `--frames` is an option of `bench pipeline`, not of `process`: the suggestion must be one `process` takes
    with pytest.raises(SystemExit) as e:
        main(["process", "x.mp4", "--frames", "5"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean --max-frames?" in err and "did you mean --frames?" not in err
    with pytest.raises(SystemExit):
        main(["bench", "pipeline", "x.mp4", "--json", "j.json", "--fames", "3"])
    assert "did you mean --frames?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["process", "x.mp4", "--detector=--"], ["process", "x.mp4", "--backend=--"],
                                  ["train", "--stage", "semisup", "--out=--"]])
def test_an_option_given_only_dashes_is_a_usage_error(argv, capsys):
    """Python 3.11's argparse reads ``--opt=--`` as an empty list; it used to reach the code as one (exit 1,
    "internal error"), found by the fuzz tests. Python 3.12+ passes the name "--" on: then the command's own checks
    refuse the line (a usage error, returned rather than raised)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and "internal error" not in err[0], err


@pytest.mark.parametrize("argv,name", [(["process", ""], "INPUT"), (["process", "a.mp4", "--out-dir", ""], "--out-dir"),
                                       (["live", "--input", "", "--no-window"], "--input"),
                                       (["batch", "", "--out-dir", "o"], "INPUT"),
                                       (["probe", "eval", "--data", "", "--split", "test"], "--data")])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(argv, name, tmp_path, monkeypatch, capsys):
    """`facecycle process "$CLIP"` with CLIP unset: Path("") is the current folder, which was read whole as an image
    folder (every picture below it, exit 0); `live --input ""` opened the camera. Now one line, exit 2, nothing
    written."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"facecycle: error: {name}: an empty value ('': an unset shell variable?)"]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.png"]


def test_open_source_refuses_an_empty_path():
    from facecycle.errors import InputError
    from realtime.sources import open_source

    with pytest.raises(InputError, match="empty path"):
        open_source("")


@pytest.mark.parametrize("argv", [["process", "x.mp4", "--backend", "onnxruntim"],
                                  ["bench", "pipeline", "x.mp4", "--json", "j.json", "--backend", "gpu"]])
def test_an_unknown_backend_is_refused_when_parsing_with_the_choices(argv, capsys):
    """It used to be checked only once the inputs had been opened (a missing input hid it; Python 3.13's argparse
    passes ``--backend=--`` on as the name "--")."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown backend" in err[0] and "onnxruntime-cpu" in err[0], err


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", real_frames(50), rate=25)


def test_live_without_a_display_is_one_line_with_a_documented_code(clip, tiny_export):
    """OpenCV's Qt backend aborts the process (exit 134) without a display: we probe first and say so."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-m", "facecycle", "live", "--input", str(clip), "--model",
                        str(tiny_export[1])], capture_output=True, text=True, timeout=120, cwd=str(ROOT), env=env)
    assert r.returncode == 6, r.stderr  # README: backend, detector or display unavailable
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("facecycle: error: cannot show the live window") and "--no-window" in lines[0]


def test_live_no_window_reports_progress_and_where_outputs_go(clip, tiny_export, tmp_path, capfd, monkeypatch):
    import facecycle_cli.process_cmd as pc

    monkeypatch.setattr(pc, "_LIVE_REPORT_S", 0.3)
    monkeypatch.setattr(pc, "_LIVE_REPORT_MAX_S", 0.3)
    rc = main(["live", "--input", str(clip), "--no-window", "--model", str(tiny_export[1])])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert "writing nothing (add --csv FILE / --record VIDEO)" in err
    progress = [ln for ln in err.splitlines() if " fps, " in ln and "dropped" in ln]
    assert len(progress) >= 3, err  # 2 s of real-time playback, a line every 0.3 s, plus the summary
    csv_path = tmp_path / "live.csv"
    rc = main(["live", "--input", str(clip), "--no-window", "--model", str(tiny_export[1]), "--csv", str(csv_path)])
    err = capfd.readouterr().err
    assert rc == 0 and f"writing {csv_path}, {csv_path.with_suffix('.json')}" in err


def test_live_progress_lines_into_a_log_thin_out_to_one_a_minute():
    """A line every 2 s into a service's log was 43,000 lines a day: into a file the gaps double up to 60 s; a
    person at a terminal still gets one every 2 s."""
    from facecycle_cli.process_cmd import _LIVE_REPORT_S, next_report_gap

    gaps, g = [], _LIVE_REPORT_S
    for _ in range(8):
        g = next_report_gap(g, terminal=False)
        gaps.append(g)
    assert gaps == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0]
    assert 86400 / gaps[-1] <= 1440  # a day at the cap
    assert next_report_gap(32.0, terminal=True) == next_report_gap(2.0, terminal=True) == _LIVE_REPORT_S


def test_process_end_line_names_the_sidecar(clip, tiny_export, tmp_path, capfd):
    rc = main(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(tmp_path), "--no-progress",
               "--max-frames", "3"])
    err = capfd.readouterr().err
    assert rc == 0, err
    last = err.strip().splitlines()[-1]
    for suffix in (".csv", ".json", ".annotated.mp4"):
        assert str(tmp_path / f"clip{suffix}") in last
    # a run cut short says why its rows end early (its sidecar says complete)
    assert "3 frames (stopped at --max-frames 3 of 50)" in last



def test_the_process_sidecar_ties_its_rows_to_the_exact_file_and_command(clip, tiny_export, tmp_path, capfd,
                                                                          monkeypatch):
    """Probe finding: a process sidecar named its input as typed (maybe relative), with no size, time or command
    line (batch.json has them): a result could not be tied to the exact file it was made from."""
    import json
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(clip, tmp_path / "c.mp4")
    argv = ["process", "c.mp4", "--model", str(tiny_export[1]), "--out-dir", "o", "--no-progress", "--max-frames",
            "3", "--no-video"]
    assert main(argv) == 0, capfd.readouterr().err
    side = json.loads((tmp_path / "o" / "c.json").read_text())
    st = (tmp_path / "c.mp4").stat()
    assert side["input"]["name"] == "c.mp4" and side["input"]["path"] == str(tmp_path / "c.mp4")
    assert side["input"]["size_bytes"] == st.st_size and side["input"]["modified"].endswith("Z")
    assert side["command"] == ["facecycle", *argv]

def test_a_model_without_an_emotion_head_is_said_once_when_a_run_starts(clip, tiny_export, tmp_path, capfd,
                                                                        caplog):
    """A model folder without expression_head.safetensors (an export before `export --head`) gave empty emotion
    columns and no word about it. The warning comes once, when a run starts: a bad input's error stays one line."""
    import shutil

    other = shutil.copy(clip, tmp_path / "other.mp4")
    rc = main(["process", str(clip), str(other), "--model", str(tiny_export[1]), "--out-dir", str(tmp_path / "a"),
               "--no-progress", "--max-frames", "3", "--no-video"])
    said = [r for r in caplog.records if "has no emotion head" in r.getMessage()]
    assert rc == 0 and len(said) == 1 and said[0].levelname == "WARNING", capfd.readouterr().err
    caplog.clear()
    rc = main(["process", str(tmp_path / "missing.mp4"), "--model", str(tiny_export[1]), "--out-dir", str(tmp_path)])
    assert rc == 3 and not any("no emotion head" in r.getMessage() for r in caplog.records)


def test_quick_start_output_folder_is_ignored_by_git():
    assert "/results/" in (ROOT / ".gitignore").read_text().split()


def test_model_info_describes_the_shipped_model_without_torch(tmp_path, tiny_export):
    """`facecycle model info` described the paper's config (34.9 M parameters, needing torch) when asked for no
    model: not the 2.9 M-parameter model that `process` runs. Without an option it now reads the shipped model's
    files (on the base install too: no torch); --model DIR any exported folder; a damaged file is one line, exit 5."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def run(argv):
        code = f"import sys; sys.modules['torch'] = None; from facecycle_cli import main; sys.exit(main({argv!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              cwd=tmp_path, env=env)

    r = run(["model", "info", "--json"])
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    from facecycle.assets import default_model_dir

    man = json.loads((default_model_dir() / "manifest.json").read_text())
    assert info["config"] == man["config"]["name"] and set(info["graphs"]) == set(man["graphs"])
    assert info["head"]["classes"] == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert info["total"] == sum(info["parameters"].values()) and 1e6 < info["total"] < 2e7  # not the paper's 34.9 M
    assert info["bytes"] == sum(f.stat().st_size for f in default_model_dir().iterdir() if f.is_file())
    r = run(["model", "info", "--model", str(tiny_export[1])])
    assert r.returncode == 0 and f"config {tiny_export[0].config.name} " in r.stdout, r.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text((Path(tiny_export[1]) / "manifest.json").read_text())
    (bad / "model.safetensors").write_bytes(b"garbage")
    r = run(["model", "info", "--model", str(bad)])
    assert r.returncode == 5 and len(r.stderr.strip().splitlines()) == 1 and "cannot read" in r.stderr, r.stderr


@pytest.mark.parametrize("module, argv, extra", [
    ("torch", ["model", "info", "--config", "paper"], "torch"),
    ("torch", ["train", "--stage", "motion", "--data", "x", "--config", "tiny", "--out", "y"], "torch"),
    ("PyQt6", ["app"], "ui"),
])
def test_a_missing_optional_dependency_names_the_extra(tmp_path, module, argv, extra):
    """On the base install (no torch) `train`, `model` and `export` ended in "internal error:
    ModuleNotFoundError: No module named 'torch'"; they now say which extra to install, exit 6. A fresh
    interpreter where importing the module fails, as without its wheel."""
    code = (f"import sys; sys.modules[{module!r}] = None; from facecycle_cli import main; "
            f"sys.exit(main({argv!r}))")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=env)
    assert r.returncode == 6, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"needs {module}" in last and f'pip install "facecycle-rt[{extra}]"' in last, last


@pytest.mark.parametrize("name", ["load_checkpoint", "FaceCycle"])
def test_the_models_python_api_without_torch_names_the_extra(name, tmp_path):
    """The README's example failed on the base install with a bare "No module named 'torch'"."""
    code = (f"import sys; sys.modules['torch'] = None\n"
            f"try:\n    from facecycle import {name}\nexcept ImportError as e:\n    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                       env=env)
    assert f"facecycle.{name} needs PyTorch: pip install \"facecycle-rt[torch]\"" in r.stdout, r.stdout + r.stderr


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_unknown_option_after_a_sub_command_is_reported_under_its_name(capsys):
    """argparse left what a sub-command's parser did not take to the top-level parser: the error said `facecycle:`
    (bad values say `facecycle process:`), and its "did you mean" came from the top-level options too (`--verbose`,
    then refused after the sub-command, itself got "did you mean --version?")."""
    line = _usage_error(["process", "x.mp4", "--bogus"], capsys)
    assert line.startswith("facecycle process: error: unrecognized arguments: --bogus"), line
    line = _usage_error(["process", "x.mp4", "--versio"], capsys)  # --version is the top-level parser's only
    assert line.startswith("facecycle process: error: unrecognized arguments: --versio") and "--version?" not in line
    line = _usage_error(["bench", "pipeline", "x.mp4", "--json", "j.json", "--fames", "3"], capsys)
    assert line.startswith("facecycle bench pipeline: error: ") and "did you mean --frames?" in line, line
    # before the sub-command's name only the top-level options are taken: the suggestion is one of them
    line = _usage_error(["--precison", "process", "x.mp4"], capsys)
    assert line.startswith("facecycle: error: unrecognized arguments: --precison") and "--precision?" not in line
    line = _usage_error(["--debgu", "process", "x.mp4"], capsys)
    assert line.startswith("facecycle: error: ") and "did you mean --debug?" in line, line


@pytest.mark.parametrize("argv", [["--debug", "-v", "process", "x.mp4"], ["process", "x.mp4", "--debug", "-v"],
                                  ["-v", "process", "--debug", "x.mp4"]])
def test_the_global_options_are_taken_before_and_after_the_sub_command(argv):
    args = build_parser().parse_args(argv)
    assert args.debug is True and args.verbose == 1 and args.command == "process"
    assert not [k for k in vars(args) if k.startswith("_")], vars(args)


def test_global_options_after_the_sub_command_keep_and_add_to_those_before():
    parse = build_parser().parse_args
    assert parse(["--debug", "process", "x.mp4"]).debug is True  # a sub-command without --debug keeps it
    assert parse(["-v", "process", "x.mp4"]).verbose == 1
    assert parse(["process", "x.mp4"]).debug is False and parse(["process", "x.mp4"]).verbose == 0
    assert parse(["-v", "process", "x.mp4", "-v"]).verbose == 2  # -vv, wherever each -v stands
    args = parse(["probe", "-v", "eval", "--data", "d", "--split", "test", "-v", "--debug"])  # a sub-sub-command
    assert args.verbose == 2 and args.debug is True and args.probe_command == "eval"


def test_debug_after_the_sub_command_shows_the_traceback(monkeypatch, capsys):
    import realtime.sources

    def boom(path: str) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(realtime.sources, "local_path", boom)
    assert main(["process", "x.mp4"]) == 1
    assert "internal error: RuntimeError: boom (rerun with --debug" in capsys.readouterr().err
    for argv in (["--debug", "process", "x.mp4"], ["process", "x.mp4", "--debug"]):
        with pytest.raises(RuntimeError, match="boom"):
            main(argv)


def test_workers_without_ray_is_one_clear_sentence(tmp_path, monkeypatch, capsys):
    """It read "--workers 2 needs ray is not installed; pip install ...": two sentences run together."""
    import realtime.batch.executors as ex

    monkeypatch.setattr(ex, "ray_available", lambda: False)
    (tmp_path / "v.mp4").write_bytes(b"\0" * 64)
    assert main(["batch", str(tmp_path), "--workers", "2", "--out-dir", str(tmp_path / "o")]) == 6
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['facecycle: error: --workers 2 needs Ray, but ray is not installed; '
                   'pip install "facecycle-rt[cluster]"'], err


def _sidecar(tmp_path: Path, frames: int, tracks: List[Tuple[int, str]], with_face: Optional[int] = None) -> Path:
    """A sidecar whose summary pools ``tracks`` (rows, emotion) over ``frames`` frames (``with_face`` of them with a
    face: all by default)."""
    means = {"angry": 0.3, "happy": 0.2, "neutral": 0.5}
    rows = sum(n for n, _ in tracks)
    summary = {"frames": frames, "frames_with_face": frames if with_face is None else with_face,
               "faces": {"rows": rows, "emotion": "neutral", "mean_emotions": means, "runner_up": "angry",
                         "top_emotions": {}},
               "tracks": [{"face_id": i, "rows": n, "emotion": e} for i, (n, e) in enumerate(tracks)]}
    path = tmp_path / f"s{frames}.json"
    path.write_text(json.dumps({"input": {"reading": "video"}, "summary": summary}))
    return path


def test_the_end_line_reads_each_face_of_a_picture_or_a_short_clip(tmp_path):
    """A face had to have 10 rows to be named: a picture of two people (1 row each) or a 5-frame clip read as one
    pooled mean. Fewer frames than 10 ask for a row in every frame; a long video's short tracks stay out."""
    from facecycle_cli.process_cmd import _reading

    assert _reading(_sidecar(tmp_path, 1, [(1, "neutral"), (1, "angry")])).endswith(
        "; by face: #0 neutral, #1 angry")
    assert _reading(_sidecar(tmp_path, 5, [(5, "neutral"), (5, "happy")])).endswith("; by face: #0 neutral, #1 happy")
    assert "by face" not in _reading(_sidecar(tmp_path, 5, [(5, "neutral"), (2, "happy")]))  # in 2 of 5 frames
    # a long video: a track of 9 rows, or of under 10 % of the frames with a face, is no face of its own
    assert "by face" not in _reading(_sidecar(tmp_path, 300, [(300, "neutral"), (9, "happy")]))
    assert "by face" not in _reading(_sidecar(tmp_path, 3000, [(3000, "neutral"), (200, "happy")]))
    assert _reading(_sidecar(tmp_path, 300, [(300, "neutral"), (40, "happy")])).endswith(
        "; by face: #0 neutral, #1 happy")


def test_the_end_line_reads_each_face_of_a_gallery_of_12(tmp_path):
    """A face had to have 10 % of all the face rows to be named: with 11 or more faces on screen alike none had, and
    the by-face part was dropped (a 3x4 gallery of 12 faces: nothing after the reading, though its sidecar named
    #0 sad, #6 surprise). The share is of the frames with a face now; a brief (false) track still stays out."""
    from facecycle_cli.process_cmd import _reading

    faces = [(300, "happy" if i in (2, 7) else "neutral") for i in range(12)]
    line = _reading(_sidecar(tmp_path, 300, faces))
    # (6 named: those that read otherwise than the pool first, #7 among them, in the sidecar's order)
    assert line.endswith("; by face: #0 neutral, #1 neutral, #2 happy, #3 neutral, #4 neutral, #7 happy, ..."), line
    # on a fifth of a long input's frames (faces on 200 of its 1000): each on every one of those
    line = _reading(_sidecar(tmp_path, 1000, [(200, "neutral")] * 6 + [(200, "happy")] * 6, with_face=200))
    assert "; by face: #0 neutral, #6 happy, #7 happy, #8 happy, #9 happy, #10 happy, ..." in line, line
    # a track on 2 % of the frames (6 of 300) is no face of its own, beside 2 faces or 12
    assert _reading(_sidecar(tmp_path, 300, [(300, "neutral"), (300, "happy"), (6, "angry")])).endswith(
        "; by face: #0 neutral, #1 happy")
    assert "by face" not in _reading(_sidecar(tmp_path, 300, [(300, "neutral"), (300, "neutral"), (6, "angry")]))
    assert "by face" not in _reading(_sidecar(tmp_path, 300, [(300, "neutral")] * 12 + [(6, "angry")]))
    # exactly 6 faces named: no "..."
    assert _reading(_sidecar(tmp_path, 300, [(300, "neutral")] * 5 + [(300, "happy")])).endswith(
        "; by face: #0 neutral, #1 neutral, #2 neutral, #3 neutral, #4 neutral, #5 happy")


def test_a_picture_of_two_faces_ends_with_each_ones_reading(tmp_path, capfd):
    rc = main(["process", str(ROOT / "docs" / "overlays_twofaces.jpg"), "--out-dir", str(tmp_path), "--no-video"])
    err = capfd.readouterr().err
    assert rc == 0, err
    last = err.strip().splitlines()[-1]
    assert "over 2 face rows" in last and "; by face: #0 " in last and ", #1 " in last, last


def _bar_runs():
    """name -> (module, a call that runs that module's progress bar, with ``progress`` on, for no work)."""
    from types import SimpleNamespace

    def probe(tmp_path):
        import cv2
        import numpy as np

        from facecycle.probe import run

        paths = []
        for k in range(2):
            paths.append(tmp_path / f"{k}.png")
            cv2.imwrite(str(paths[-1]), np.full((8, 8, 3), 40 * k, np.uint8))

        class _Extractor:
            image_size = 8

            def __call__(self, imgs):
                return np.zeros((len(imgs), 2), np.float32)

        return run, lambda: run.extract(_Extractor(), paths, progress=True)

    def trainer(tmp_path):
        pytest.importorskip("torch")
        from facecycle.train import trainer as mod

        me = SimpleNamespace(o=SimpleNamespace(steps=0, stage="motion"), step=0, save=lambda: None)
        return mod, lambda: mod.Trainer.fit(me, until=0, progress=True)

    def semisup(tmp_path):
        pytest.importorskip("torch")
        from facecycle.train import semisup as mod

        me = SimpleNamespace(o=SimpleNamespace(steps=0, batch=1, video_batch=0, train_encoder=True), vid=None,
                             vlab_idx=None, step=0, save=lambda: None)
        return mod, lambda: mod.SemiSupTrainer.fit(me, progress=True)

    return {"probe": probe, "trainer": trainer, "semisup": semisup}


@pytest.mark.parametrize("name", ["probe", "trainer", "semisup"])
def test_the_probe_and_training_bars_are_drawn_only_on_a_terminal(name, tmp_path, monkeypatch, capsys):
    """`probe fit`, `train` (both trainers) drew their tqdm bar into stderr whatever it was: `2> train.log` filled
    with carriage-return redraws. As `process`: only where stderr is a terminal (log.csv keeps the steps)."""
    mod, go = _bar_runs()[name](tmp_path)
    go()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(mod, "stderr_is_terminal", lambda: True)
    go()
    assert "\r" in capsys.readouterr().err  # on a terminal the bar is drawn


def _cli(argv: List[str], tmp_path: Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "facecycle", *argv], stderr=subprocess.PIPE, text=True, timeout=120,
                          cwd=tmp_path, env=env, **kw)


def test_a_reader_that_closed_the_pipe_early_is_not_an_error(tmp_path):
    """`facecycle model info --json | head -n1` exited 1 in some runs (the write after head had gone raised
    BrokenPipeError), which fails a `set -o pipefail` job at random. A pipe whose reader is gone before the first
    write (the case a slow consumer hits by chance) makes it certain: exit 0, nothing on stderr."""
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # the reader has left: every write raises EPIPE
    try:
        r = _cli(["model", "info", "--json"], tmp_path, stdout=w_fd)
    finally:
        os.close(w_fd)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("argv", [["model", "info", "--json"], ["model", "info"]])
def test_a_stdout_that_cannot_be_written_is_an_output_error(argv, tmp_path):
    """`facecycle model info --json > /dev/full` said "internal error: OSError: [Errno 28]" and exited 1: it is an
    output error, one line, exit 4."""
    with open("/dev/full", "w") as full:
        r = _cli(argv, tmp_path, stdout=full)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 4 and lines == ["facecycle: error: standard output: disk full"], r.stderr


class _FailingRaw(io.RawIOBase):
    """A file whose writes fail with ``err`` (a full disk, a device error)."""

    def __init__(self, err: int) -> None:
        super().__init__()
        self.err = err

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        raise OSError(self.err, os.strerror(self.err))


@pytest.mark.parametrize("err, code, said", [(errno.ENOSPC, 4, "disk full"),
                                            (errno.EIO, 4, os.strerror(errno.EIO)),
                                            (errno.EPIPE, 0, None)])
def test_stdout_is_written_before_the_exit_and_its_failure_said(err, code, said, monkeypatch, capsys):
    """What stdout still buffered when a command returned (a file on a full disk: a short output is written only
    at the interpreter's exit) failed there, as "Exception ignored ... OSError" and exit 120 after exit 0. It is
    flushed before main returns: a full disk or a device error is one line, exit 4; a reader gone, exit 0."""
    out = io.TextIOWrapper(io.BufferedWriter(_FailingRaw(err)), encoding="utf-8")
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert main(["model", "info", "--json"]) == code
    finally:
        monkeypatch.undo()
        out.buffer.raw.write = lambda b: len(b)  # the rest goes nowhere when the test's stream is collected
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines == ([f"facecycle: error: standard output: {said}"] if said else []), err_lines


def test_a_broken_pipe_that_is_not_stdout_is_still_an_internal_error(monkeypatch, capsys):
    """Only stdout's reader leaving is quiet: a broken pipe to anything else (a child process) is a failure."""
    import facecycle_cli.model_cmd as model_cmd

    def boom(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(model_cmd, "_info", boom)
    assert main(["model", "info"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["facecycle: internal error: BrokenPipeError: [Errno 32] Broken pipe (rerun with --debug for "
                   "details)"], err


def test_quiet_says_errors_only(clip, tiny_export, tmp_path, capfd):
    """`-q/--quiet` (before or after the command): a run that goes well says nothing on stderr, and stdout stays
    empty; an error is still its one line, with its exit code. There was no way to silence the end lines short of
    2>/dev/null, which hid the errors too."""
    from facecycle.terminal import set_quiet

    try:
        for argv in (["-q", "process", str(clip)], ["process", str(clip), "--quiet"]):
            capfd.readouterr()
            rc = main(argv + ["--model", str(tiny_export[1]), "--out-dir", str(tmp_path), "--max-frames", "3",
                              "--no-video", "--overwrite"])
            out, err = capfd.readouterr()
            assert rc == 0 and out == "" and err == "", err
        rc = main(["process", str(tmp_path / "missing.mp4"), "-q", "--model", str(tiny_export[1])])
        err = capfd.readouterr().err
        assert rc == 3 and err.strip().splitlines() == [f"facecycle: error: {tmp_path / 'missing.mp4'}: no such "
                                                         "file or folder"], err
    finally:
        set_quiet(False)  # (in-process: a failure above must not leave the next tests quiet)
    rc = main(["process", str(clip), "--model", str(tiny_export[1]), "--out-dir", str(tmp_path), "--max-frames", "3",
               "--no-video", "--overwrite"])
    assert rc == 0 and "3 frames" in capfd.readouterr().err  # not quiet again
