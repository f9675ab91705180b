"""`facecycle batch` says which software made the outputs it skips (probe h78): the fingerprint holds the requested
`--backend` (`auto`), not the backend that ran, nor the code's version and the libraries': outputs of another
commit, another backend or another ONNX Runtime were skipped as "already complete (same model and settings)" and
mixed into one dataset unsaid (F5). Each finished input's `made_with` is in batch.json, those made with other
software are counted in `mixed_provenance` and one line says so; the skip rule itself is unchanged. Inputs that
never started when a signal stopped the batch are `cancelled`, not `interrupted` (F7), and each input's sidecar
records the batch's command (F6).

One tiny-model batch of three short synthetic clips (no ../shared needed), then copies of its output folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict

import pytest

from facecycle_cli import main as cli_main
from realtime.batch.job import backend_name

from .conftest import batch_argv, copy_outputs, finished_batch

NAMES = ("a", "b", "c")


_argv, _copy = batch_argv, copy_outputs


@pytest.fixture(scope="module")
def done(tiny_export, tmp_path_factory):
    """(inputs folder, a finished batch's output folder, the model folder): three 8-frame clips, no video."""
    return finished_batch(tmp_path_factory.mktemp("provenance"), tiny_export[1], NAMES, seed=1)


def _read(p: Path) -> Dict[str, Any]:
    return json.loads(p.read_text())


def _edit(side: Path, **changes: Dict[str, Any]) -> None:
    """Change fields of a sidecar's blocks (``versions={...}``, ``backend={...}``): its fingerprint, status and CSV
    size stay, so the skip rule still takes it as complete."""
    d = _read(side)
    for block, fields in changes.items():
        d[block].update(fields)
    side.write_text(json.dumps(d, indent=2))


def _major_minor(v: str) -> str:
    return ".".join(re.match(r"(\d+)\.(\d+)", v).groups())  # type: ignore[union-attr]


def test_each_sidecar_records_the_batch_command(done):
    """F6: the sidecars said `command: null`; only batch.json held the command."""
    _, out, _ = done
    command = _read(out / "batch.json")["command"]
    assert command and command[:2] == ["facecycle", "batch"], command
    for n in NAMES:
        assert _read(out / f"{n}.json")["command"] == command


def test_the_backend_that_ran_is_recorded_per_input(done, tmp_path, capsys):
    """batch.json names the backend `auto` resolved to for each input (and the versions), and a batch made alike
    reports no mixed provenance, also when it resumes (this machine's backend is the one that ran)."""
    src, out, model_dir = done
    rec = _read(out / "batch.json")
    side = _read(out / "a.json")
    ran = backend_name(side["backend"])
    assert ran and ran != "auto" and rec["fingerprinted"]["backend"] == "auto"
    for e in rec["inputs"]:
        assert e["status"] == "done"
        assert e["made_with"]["backend"] == ran
        assert e["made_with"]["facecycle"] == side["versions"]["facecycle"]
        assert e["made_with"]["onnxruntime"] == side["versions"]["onnxruntime"]
        assert "other_software" not in e
    assert rec["made_with"]["backend"] == ran and rec["made_with"]["from"] == "the inputs processed now"
    assert rec["mixed_provenance"] is None
    again = _copy(out, tmp_path, "again")
    capsys.readouterr()
    assert cli_main(_argv(src, again, model_dir)) == 0
    err = capsys.readouterr().err
    assert "3 of 3 inputs already complete (same model and settings); skipped" in err, err
    assert "other software" not in err, err
    rec = _read(again / "batch.json")
    assert [e["status"] for e in rec["inputs"]] == ["skipped"] * 3
    assert all(e["made_with"]["backend"] == ran for e in rec["inputs"])
    assert rec["made_with"]["from"] == "this machine (no input ran)" and rec["made_with"]["backend"] == ran
    assert rec["mixed_provenance"] is None


def test_skipped_inputs_made_with_other_software_are_reported(done, tmp_path, capsys):
    """F5: one input's sidecar says another facecycle (version and commit), the torch backend at fp16 and another
    ONNX Runtime: it is still skipped (same model and settings), but one line and batch.json say so; a patch release
    of ONNX Runtime alone (another input) is not reported. --force remakes them."""
    src, out, model_dir = done
    mix = _copy(out, tmp_path, "mix")
    side = _read(mix / "a.json")
    ran, version, ort = backend_name(side["backend"]), side["versions"]["facecycle"], side["versions"]["onnxruntime"]
    commit = side["versions"].get("facecycle_source")
    _edit(mix / "a.json", versions={"facecycle": "0.0.1", "onnxruntime": "0.9.0",
                                    **({"facecycle_source": "0" * 40} if commit else {})},
          backend={"backend": "torch", "device": "cpu", "precision": "fp16", "torch_version": "2.1.0"})
    _edit(mix / "b.json", versions={"onnxruntime": _major_minor(ort) + ".999"})
    capsys.readouterr()
    assert cli_main(_argv(src, mix, model_dir, "--dry-run")) == 0
    dry = capsys.readouterr()
    assert [ln.split("\t")[0] for ln in dry.out.splitlines() if ln.strip()] == ["skipped"] * 3, dry.out
    assert "1 of 3 skipped inputs was made with other software" in dry.err, dry.err
    capsys.readouterr()
    assert cli_main(_argv(src, mix, model_dir)) == 0
    err = capsys.readouterr().err
    assert "3 of 3 inputs already complete (same model and settings); skipped" in err, err  # the skip rule stays
    source = (f"facecycle source {'0' * 12} -> {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}, "
              if commit else "")
    line = (f"facecycle batch: 1 of 3 skipped inputs was made with other software: backend torch-cpu -> {ran}, "
            f"precision fp16 -> fp32, facecycle 0.0.1 -> {version}, {source}onnxruntime 0.9 -> {_major_minor(ort)}; "
            "use --force to remake it (it redoes every input; batch.json's other_software says which)")
    assert line in err.splitlines(), err
    assert err.index("other software") < err.index("0 processed, 3 skipped")
    rec = _read(mix / "batch.json")
    by = {Path(e["input"]).stem: e for e in rec["inputs"]}
    assert [e["status"] for e in rec["inputs"]] == ["skipped"] * 3
    fields = ["backend", "precision", "facecycle", *(["facecycle_source"] if commit else []), "onnxruntime"]
    assert by["a"]["other_software"] == fields
    assert by["a"]["made_with"]["backend"] == "torch-cpu" and by["a"]["made_with"]["torch"] == "2.1.0"
    assert "other_software" not in by["b"] and "other_software" not in by["c"]
    mixed = rec["mixed_provenance"]
    assert (mixed["skipped"], mixed["of_skipped"], mixed["processed"]) == (1, 3, 0), mixed
    assert list(mixed["differ"]) == fields
    assert mixed["differ"]["backend"] == {"this_run": ran, "others": {"torch-cpu": 1}}
    assert mixed["differ"]["facecycle"] == {"this_run": version, "others": {"0.0.1": 1}}
    capsys.readouterr()
    assert cli_main(_argv(src, mix, model_dir, "--force")) == 0
    assert "other software" not in capsys.readouterr().err
    assert _read(mix / "batch.json")["mixed_provenance"] is None


def test_this_runs_software_is_that_of_the_inputs_it_processes(done, tmp_path, capsys):
    """Where inputs run, this run's software is theirs; a skipped one made on another backend is reported."""
    src, out, model_dir = done
    mix = _copy(out, tmp_path, "mix")
    _edit(mix / "a.json", backend={"backend": "onnxruntime", "device": "cuda:0 (CUDAExecutionProvider)",
                                   "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    (mix / "c.csv").unlink()
    capsys.readouterr()
    assert cli_main(_argv(src, mix, model_dir)) == 0
    err = capsys.readouterr().err
    ran = backend_name(_read(mix / "c.json")["backend"])
    assert (f"facecycle batch: 1 of 2 skipped inputs was made with other software: backend onnxruntime-cuda -> "
            f"{ran}; use --force") in err, err
    rec = _read(mix / "batch.json")
    assert [e["status"] for e in rec["inputs"]] == ["skipped", "skipped", "done"]
    assert rec["made_with"]["from"] == "the inputs processed now" and rec["made_with"]["backend"] == ran
    assert rec["inputs"][2]["made_with"]["backend"] == ran
    assert rec["inputs"][0]["other_software"] == ["backend"]
    mixed = rec["mixed_provenance"]
    assert (mixed["skipped"], mixed["of_skipped"], mixed["processed"], mixed["of_processed"]) == (1, 2, 0, 1)
