"""First-run usability of the command line (issue 12): help texts, "did you mean", `live` without a display,
`live --no-window` progress, the end-of-run line. Runs without ../shared (synthetic clips)."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

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
