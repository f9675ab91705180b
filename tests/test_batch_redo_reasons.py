"""`facecycle batch` says why it redoes an input with earlier outputs (probe h75): other settings or another
facecycle version (naming the fingerprint's keys that changed), an input touched since, a CSV edited, an output
missing; a real run says it once before its work (it printed only "3 processed, 0 skipped"); and each sidecar
records the `reading_rule` that the fingerprint holds.

One tiny-model batch of three short synthetic clips (no ../shared needed), then copies of its output folder,
each changed one way.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Dict

import pytest

from facecycle_cli import main as cli_main
from realtime.analyzer import reading_rule
from realtime.batch import runner

from .conftest import batch_argv, copy_outputs, finished_batch

NAMES = ("a", "b", "c")


_argv, _copy = batch_argv, copy_outputs


@pytest.fixture(scope="module")
def done(tiny_export, tmp_path_factory):
    """(inputs folder, a finished batch's output folder, the model folder): three 8-frame clips, no video."""
    return finished_batch(tmp_path_factory.mktemp("redo"), tiny_export[1], NAMES, seed=0)


def _dry_run(capsys, src: Path, out: Path, model_dir: Path) -> Dict[str, str]:
    """``{input name: decision}`` of ``--dry-run`` (``DECISION<TAB>INPUT<TAB>CSV`` lines)."""
    capsys.readouterr()
    assert cli_main(_argv(src, out, model_dir, "--dry-run")) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert all(len(parts) == 3 for parts in lines), lines
    return {Path(inp).stem: what for what, inp, _ in lines}


@pytest.fixture
def other_fingerprint(monkeypatch):
    """The settings fingerprint of a version with one more key (``extra_rule``) in what it hashes."""
    real = runner.settings_fingerprint

    def fingerprint(settings):
        _, detail = real(settings)
        detail = {**detail, "extra_rule": {"steps": 3}}
        return hashlib.sha256(json.dumps(detail, sort_keys=True, default=str).encode()).hexdigest(), detail

    monkeypatch.setattr(runner, "settings_fingerprint", fingerprint)


def test_the_sidecar_records_the_fingerprints_reading_rule(done):
    """F7: the sidecar's settings (so the Parquet ``facecycle_settings``) say which reading rules made the rows:
    the batch fingerprint's ``reading_rule``, one definition (realtime.analyzer.reading_rule)."""
    _, out, _ = done
    summary = json.loads((out / "batch.json").read_text())
    for n in NAMES:
        side = json.loads((out / f"{n}.json").read_text())
        assert side["reading_rule"] == summary["fingerprinted"]["reading_rule"] == reading_rule()


def test_other_settings_are_named_in_the_dry_run_and_said_before_a_real_run(done, tmp_path, capsys,
                                                                          other_fingerprint):
    src, out, model_dir = done
    up = _copy(out, tmp_path, "upgraded")
    decisions = _dry_run(capsys, src, up, model_dir)
    assert decisions == {n: "run (redo: other settings or another facecycle version (changed: extra_rule))"
                         for n in NAMES}, decisions
    capsys.readouterr()
    assert cli_main(_argv(src, up, model_dir)) == 0
    err = capsys.readouterr().err
    assert ("facecycle batch: 3 of 3 inputs have outputs from other settings or another facecycle version "
            "(extra_rule): redone") in err, err
    assert err.index(": redone") < err.index("3 processed, 0 skipped")
    rec = json.loads((up / "batch.json").read_text())
    assert [e["redo"] for e in rec["inputs"]] == ["other settings or another facecycle version (changed: extra_rule)"
                                                  ] * 3
    # without the earlier batch.json the keys are not known: the reason stays, without the list
    again = _copy(out, tmp_path, "no_summary")
    (again / "batch.json").unlink()
    assert set(_dry_run(capsys, src, again, model_dir).values()) == {
        "run (redo: other settings or another facecycle version)"}


def test_a_touched_input_an_edited_csv_and_a_missing_output_each_say_so(done, tmp_path, capsys):
    src, out, model_dir = done
    assert set(_dry_run(capsys, src, out, model_dir).values()) == {"skipped"}
    mix = _copy(out, tmp_path, "mix")
    inputs = tmp_path / "in"
    shutil.copytree(src, inputs)  # (copytree keeps the modification times: the copies' stats are the sidecars')
    for side in mix.glob("*.json"):
        side.write_text(side.read_text().replace(str(src), str(inputs)))
    assert set(_dry_run(capsys, inputs, mix, model_dir).values()) == {"skipped"}
    st = (inputs / "a.mp4").stat()
    os.utime(inputs / "a.mp4", ns=(st.st_atime_ns, st.st_mtime_ns - 5_000_000_000))
    recorded = (mix / "b.csv").stat().st_size
    with open(mix / "b.csv", "a") as f:
        f.write("0,0,0\n")
    (mix / "c.csv").unlink()
    decisions = _dry_run(capsys, inputs, mix, model_dir)
    assert decisions == {"a": "run (redo: the input changed (size or modification time))",
                         "b": f"run (redo: the CSV was changed ({recorded + 6} bytes, recorded {recorded}))",
                         "c": f"run (redo: an output is missing ({mix / 'c.csv'}))"}, decisions
    capsys.readouterr()
    assert cli_main(_argv(inputs, mix, model_dir)) == 0
    err = capsys.readouterr().err
    note = [ln for ln in err.splitlines() if ln.endswith(": redone")]
    assert note == ["facecycle batch: 1 of 3 inputs changed since its outputs were made (size or modification "
                    "time), 1 has an edited CSV, 1 has an output missing: redone"], err
    assert set(_dry_run(capsys, inputs, mix, model_dir).values()) == {"skipped"}
