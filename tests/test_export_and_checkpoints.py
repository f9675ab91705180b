"""Checkpoint import and ONNX export, as a probe of them found them: an unknown ``--config`` of ``export`` was an
internal error; exporting from a model folder dropped its emotion head; a killed export left its staging folder in
``--out`` for good; training-state files (``{"state_dict": ...}``, a Lightning ``.ckpt``, ``{"model": ...,
"optimizer": ...}``) were "unknown module 'state_dict'"; a typo in ``--graphs`` was a model error; NaN weights went
through ``model convert`` and failed the export late; a failed export left the empty ``--out`` it made; a mismatch
was ~1,100 characters with its hint ("it fits --config tiny") last, and ``export`` gave no hint at all."""
from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facecycle.assets import HEAD_FILE  # noqa: E402
from facecycle.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from facecycle.errors import ModelError, UsageError  # noqa: E402
from facecycle.model import MOTION_MODULES, FaceCycle  # noqa: E402
from facecycle_cli import main  # noqa: E402

from .conftest import assert_one_line, one_error_line  # noqa: E402

EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _tiny(seed: int = 0) -> FaceCycle:
    torch.manual_seed(seed)
    return FaceCycle("tiny", modules=list(MOTION_MODULES)).eval()


def _modules(m: FaceCycle) -> dict:
    """The authors' layout of ``m``: ``{module: state_dict}``."""
    return {n: OrderedDict((k, v.clone()) for k, v in getattr(m, n).state_dict().items()) for n in m.module_names}


def _same_weights(a: FaceCycle, b: FaceCycle) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny_tar(tmp_path_factory):
    """A tiny model and its authors'-layout file as the authors' code writes it (no config recorded)."""
    m = _tiny()
    p = tmp_path_factory.mktemp("authors") / "ExpCode_tiny.tar"
    torch.save(_modules(m), p)
    return m, p


# ------------------------------------------------------------------------------------- 1: an unknown config
def test_an_unknown_config_is_a_usage_error_at_its_root(tiny_tar, tmp_path, capsys):
    """`export --checkpoint X --config tinyy` was "internal error: ValueError: unknown config 'tinyy'", exit 1,
    while model info/convert, train and bench said it as a usage error (exit 2). get_config itself raises a usage
    error now (still a ValueError for code that catches one), so every command and the library say it alike."""
    from facecycle.config import get_config

    with pytest.raises(UsageError, match="unknown config 'tinyy'; choose from") as e:
        get_config("tinyy")
    assert isinstance(e.value, ValueError)
    with pytest.raises(UsageError, match="unknown config"):
        load_checkpoint(tiny_tar[1], "tinyy")
    out = tmp_path / "m"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(tiny_tar[1]), "--config", "tinyy", "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, "unknown config 'tinyy'", "tiny")
    assert not out.exists()


# ------------------------------------------------------------------------------ 2: the head of a model folder
def _head(d: int, seed: int = 0):
    from facecycle.probe.linear import Head

    rng = np.random.default_rng(seed)
    return Head(rng.standard_normal((7, d)).astype(np.float32), np.zeros(7, np.float32), np.zeros(d, np.float32),
                np.ones(d, np.float32), {"task": "expression", "classes": json.dumps(EMOTIONS)})


def test_an_export_from_a_model_folder_keeps_that_folders_head(tmp_path, capsys):
    """`export --checkpoint FOLDER` looked for the head in FOLDER's parent: the folder's own head was dropped ("no
    emotion head", exit 0), and a head that happened to lie in the parent (another model's) would have been taken.
    """
    from facecycle.export import export_onnx

    m = _tiny()
    src = tmp_path / "models" / "with_head"
    export_onnx(m, src, graphs=["analyze"], validate=False, weights=True, head=_head(m.config.feature_dim))
    capsys.readouterr()
    out = tmp_path / "again"
    assert main(["export", "--checkpoint", str(src), "--graphs", "analyze", "--out", str(out)]) == 0
    assert "emotion head from" in capsys.readouterr().out
    # the same head: its classes and weights (its bytes may differ: the export writes the head it loaded again)
    from safetensors.numpy import load_file

    a, b = load_file(str(src / HEAD_FILE)), load_file(str(out / HEAD_FILE))
    assert set(a) == set(b) and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    from realtime.heads import ExpressionHead

    assert ExpressionHead.load(out / HEAD_FILE).classes == ExpressionHead.load(src / HEAD_FILE).classes
    # a folder without a head: none, even where the folder above holds one (of another model)
    bare = tmp_path / "models" / "bare"
    export_onnx(m, bare, graphs=["analyze"], validate=False, weights=True)
    (tmp_path / "models" / HEAD_FILE).write_bytes((src / HEAD_FILE).read_bytes())
    out2 = tmp_path / "again2"
    assert main(["export", "--checkpoint", str(bare), "--graphs", "analyze", "--out", str(out2)]) == 0
    assert "no emotion head" in capsys.readouterr().out and not (out2 / HEAD_FILE).exists()


# --------------------------------------------------------------------------- 3: a killed export's staging folder
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(tmp_path):
    """A killed export's `.export-XXXX/` (partial graphs, 100+ MB for a paper-size model) stayed in --out for good.
    Stages are named with their exporter's host and pid now, and the next export removes those of this host whose
    process is gone; a live exporter's, another host's and an older version's (no pid named) are left alone, unless
    that older one is untouched for a day (no export takes that long: it stayed for good)."""
    from facecycle import export

    out = tmp_path / "m"
    host, dead = export._host_tag(), _dead_pid()
    gone = out / f".export-{host}-{dead}-abcd1234"
    live = out / f".export-{host}-{os.getppid()}-efgh5678"
    other = out / f".export-elsewhere-{dead}-ijkl9012"
    older = out / ".export-mnop3456"
    stale = out / ".export-qrst7890"  # an older version's, untouched for two days
    for d in (gone, live, other, older, stale):
        d.mkdir(parents=True)
        (d / "analyze.onnx").write_bytes(b"partial")
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    export.export_onnx(_tiny(), out, graphs=["analyze"], validate=False)
    assert not gone.exists() and not stale.exists()
    assert live.exists() and other.exists() and older.exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".export-")) == sorted(
        d.name for d in (live, other, older))  # its own stage gone too
    assert (out / "manifest.json").is_file()


def test_the_stage_names_its_host_and_pid_and_a_failed_export_leaves_no_folder_it_made(tmp_path, monkeypatch):
    """The stage was `.export-XXXX` (nothing to tell a dead exporter's from a live one's); an export that failed
    left the (empty) --out it had made."""
    from facecycle import export

    seen = []

    def failing(model, stage, manifest, atol=1e-4):
        seen.append(Path(stage).name)
        raise export.ExportError("analyze: ONNX Runtime differs from PyTorch by nan")

    monkeypatch.setattr(export, "validate_export", failing)
    new = tmp_path / "new"
    with pytest.raises(export.ExportError):
        export.export_onnx(_tiny(), new / "deep", graphs=["analyze"])
    assert re.fullmatch(rf"\.export-{re.escape(export._host_tag())}-{os.getpid()}-[a-z0-9_]{{8}}", seen[0]), seen
    assert not new.exists()
    kept = tmp_path / "kept"  # a folder that was there before stays, empty or not
    kept.mkdir()
    with pytest.raises(export.ExportError):
        export.export_onnx(_tiny(), kept, graphs=["analyze"])
    assert kept.is_dir() and list(kept.iterdir()) == []


def test_the_pid_test_lives_in_facecycle_files_and_the_engine_cache_still_answers_through_its_names(monkeypatch):
    """facecycle/ may not import engines/: the pid test moved to facecycle.files.pid_alive; engines.cache's
    _pid_alive / _pid_alive_windows stay (tests use them), a stand-in for the latter honoured."""
    import engines.cache as cache
    from facecycle.files import pid_alive

    assert pid_alive(os.getpid()) is True and pid_alive(_dead_pid()) is False
    monkeypatch.setattr(cache, "_pid_alive_windows", lambda pid: pid == 7)
    monkeypatch.setattr(sys, "platform", "win32")
    assert (cache._pid_alive(7), cache._pid_alive(8)) == (True, False)
    assert pid_alive(7, windows=lambda pid: False) is False


# ----------------------------------------------------------------------------- 4: training-state wrappers
@pytest.mark.parametrize("kind", ["state_dict", "lightning", "model_optimizer", "flat", "dataparallel_flat"])
def test_training_state_files_are_unwrapped(tmp_path, kind, caplog):
    """`{"state_dict": ...}`, a Lightning .ckpt (`model.` prefixes, optimizer_states), `{"model": ...,
    "optimizer": ...}` gave "unknown module 'state_dict'" / "'optimizer'", exit 5."""
    m = _tiny(3)
    mods = _modules(m)
    flat = {f"{n}.{k}": v for n, sd in mods.items() for k, v in sd.items()}
    obj = {
        "state_dict": {"state_dict": mods, "epoch": 3},
        "lightning": {"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.1.0",
                      "state_dict": {f"model.{k}": v for k, v in flat.items()}, "optimizer_states": [{"state": {}}],
                      "lr_schedulers": [], "hyper_parameters": {"lr": 1e-4}},
        "model_optimizer": {"model": mods, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 9},
        "flat": flat,
        "dataparallel_flat": {"model": {f"module.{k}": v for k, v in flat.items()}, "optimizer": {}},
    }[kind]
    p = tmp_path / "run.ckpt"
    torch.save(obj, p)
    with caplog.at_level(logging.INFO, logger="facecycle.checkpoint"):
        back = load_checkpoint(p, "tiny")
    assert _same_weights(back, m)
    if kind != "flat":
        assert any("training-state" in r.getMessage() for r in caplog.records), caplog.text
    if kind in ("lightning", "model_optimizer"):
        assert any("optimizer" in r.getMessage() and "ignoring" in r.getMessage() for r in caplog.records)


def test_a_training_state_wrapper_of_another_model_is_said_in_one_line(tmp_path, capsys):
    p = tmp_path / "other.ckpt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "optimizer": {"state": {}}, "epoch": 1}, p)
    with pytest.raises(CheckpointError, match="a training-state wrapper, not the authors' layout"):
        load_checkpoint(p)
    q = tmp_path / "only_opt.ckpt"
    torch.save({"optimizer": {"state": {}}, "epoch": 1}, q)
    capsys.readouterr()
    assert main(["model", "info", "--checkpoint", str(q)]) == 5
    err = capsys.readouterr().err
    assert_one_line(err, "a training-state wrapper, not the authors' layout")
    assert "unknown module" not in err


def test_a_wrapped_lightning_checkpoint_converts_on_the_command_line(tmp_path, capsys):
    m = _tiny(4)
    flat = {f"model.{n}.{k}": v for n, sd in _modules(m).items() for k, v in sd.items()}
    p = tmp_path / "epoch=3.ckpt"
    torch.save({"state_dict": flat, "optimizer_states": [], "lr_schedulers": [], "epoch": 3, "global_step": 7}, p)
    assert main(["model", "convert", str(p), str(tmp_path / "x.safetensors"), "--config", "tiny"]) == 0
    assert _same_weights(load_checkpoint(tmp_path / "x.safetensors"), m)


# ------------------------------------------------------------------------------ 5: exit codes and words
def test_a_graph_name_typo_is_a_usage_error(tmp_path, capsys):
    """`export --graphs analyse` exited 5 (a model error)."""
    out = tmp_path / "m"
    assert main(["export", "--random-config", "tiny", "--graphs", "analyse", "--out", str(out)]) == 2
    assert_one_line(capsys.readouterr().err, "'analyse'", "analyze")
    assert not out.exists()


@pytest.mark.parametrize("fmt,value", [("ours", float("nan")), ("authors", float("inf"))])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, capsys, fmt, value):
    """`model convert` took NaN weights without a word, and `export` then failed with "differs from PyTorch by
    nan" (leaving the --out it made)."""
    m = _tiny()
    key = "exptoflow.toflow4.3.weight"
    if fmt == "ours":
        p = save_checkpoint(m, tmp_path / "nan.safetensors")
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(p), "pt") as f:
            meta = dict(f.metadata())
        sd = load_file(str(p))
        sd[key][0].fill_(value)
        save_file(sd, str(p), metadata=meta)
    else:
        mods = _modules(m)
        mods["exptoflow"]["toflow4.3.weight"][0].fill_(value)
        p = tmp_path / "nan.tar"
        torch.save(mods, p)
    with pytest.raises(CheckpointError, match=re.escape(key)):
        load_checkpoint(p, "tiny" if fmt == "authors" else None)
    cfg = ["--config", "tiny"] if fmt == "authors" else []
    capsys.readouterr()
    assert main(["model", "convert", str(p), str(tmp_path / "x.safetensors"), *cfg]) == 5
    assert_one_line(capsys.readouterr().err, key, "non-finite")
    assert not (tmp_path / "x.safetensors").exists()
    out = tmp_path / "exp"
    assert main(["export", "--checkpoint", str(p), *cfg, "--out", str(out)]) == 5
    assert_one_line(capsys.readouterr().err, key, "non-finite")
    assert not out.exists()


def test_a_failed_export_leaves_no_empty_out_folder(tmp_path, capsys):
    out = tmp_path / "new" / "m"
    assert main(["export", "--random-config", "tiny", "--seed", "5", "--graphs", "analyze", "--atol", "0",
                 "--out", str(out)]) == 5  # no graph matches torch to 0
    one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "new").exists()


def test_a_folder_an_export_was_interrupted_in_says_so(tmp_path, capsys):
    """A folder left without manifest.json by an interrupted export said "no manifest.json (not an exported model
    directory)", or "a directory without model.safetensors"."""
    from facecycle.export import export_onnx

    d = tmp_path / "m"
    export_onnx(_tiny(), d, graphs=["analyze"], validate=False, weights=True)
    (d / "manifest.json").unlink()  # where an export killed between removing the old manifest and writing its own
    capsys.readouterr()
    assert main(["model", "info", "--model", str(d)]) == 5
    assert_one_line(capsys.readouterr().err, str(d), "an interrupted export? re-run facecycle export")
    (d / "model.safetensors").unlink()
    (d / ".export-vm-1-abcdefgh").mkdir()
    assert main(["export", "--checkpoint", str(d), "--out", str(tmp_path / "o")]) == 5
    assert_one_line(capsys.readouterr().err, "an interrupted export? re-run facecycle export")
    from engines import open_backend  # what `process --model` reads (facecycle.manifest.read_manifest): the same
    with pytest.raises(ModelError, match="an interrupted export"):
        open_backend(d, "onnxruntime")
    empty = tmp_path / "empty"  # a folder of nothing an export writes: no such guess
    empty.mkdir()
    assert main(["model", "info", "--model", str(empty)]) == 5
    assert "interrupted" not in capsys.readouterr().err


# ------------------------------------------------------------------------------ 6: the mismatch's hint first
def test_a_mismatch_says_the_config_it_fits_first_and_lists_few_keys(tiny_tar, tmp_path, capsys):
    """The error was ~1,100 characters on one line, "it fits --config tiny" at its very end, and `export` (which
    did not search the configs) gave no hint at all: the search runs where the checkpoint is loaded now."""
    _, p = tiny_tar
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(p)  # read as paper
    msg = str(e.value)
    assert "it fits --config tiny" in msg and msg.index("it fits --config tiny") < msg.index("missing"), msg
    assert re.search(r"and \d+ more", msg) and len(msg) < 600, msg
    out = tmp_path / "m"
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(p), "--out", str(out)]) == 5
    err = capsys.readouterr().err
    assert_one_line(err, "does not fit config 'paper'", "it fits --config tiny")
    assert err.index("it fits --config tiny") < err.index("missing") and not out.exists()
    assert main(["model", "info", "--checkpoint", str(p)]) == 5
    assert_one_line(capsys.readouterr().err, "it fits --config tiny")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc/self/fd to name the file flushed")
def test_save_checkpoint_flushes_the_file_before_it_takes_the_name(tmp_path, monkeypatch):
    """Probe finding (training resume): ``save_checkpoint`` (the public API, ``facecycle model convert``, the export's
    weights) renamed its temporary into place without flushing it, so a power cut could leave the name on an empty
    file (the trainer's saves already flushed theirs). Now the bytes reach the disk before the rename, and the
    folder's entry after it."""
    import facecycle.files as files

    events = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return real_fsync(fd)

    def replace(self, target):
        events.append(("replace", self.name))
        return real_replace(self, target)

    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    p = save_checkpoint(_tiny(), tmp_path / "w.safetensors")
    assert events[:3] == [("fsync", "w.safetensors.tmp"), ("replace", "w.safetensors.tmp"),
                          ("fsync", tmp_path.name)], events
    assert load_checkpoint(p) is not None


def test_a_file_system_that_cannot_flush_does_not_fail_the_save(tmp_path, monkeypatch):
    """Review finding: the flush opened the temporary read-only, which Windows' ``FlushFileBuffers`` refuses, so every
    ``save_checkpoint`` (``export``, ``model convert``) failed there. A flush the system refuses is left to the
    system now (on Windows the file is opened for writing), and the save goes on."""
    import errno

    import facecycle.files as files

    def refuse(fd):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(files.os, "fsync", refuse)
    p = save_checkpoint(_tiny(), tmp_path / "w.safetensors")
    assert p.is_file() and not (tmp_path / "w.safetensors.tmp").exists()
    assert load_checkpoint(p) is not None
    # a flush that failed to write (EIO) is an error: the last good file stays, nothing half written replaces it
    good = p.read_bytes()

    def fail(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", fail)
    from facecycle.errors import OutputError

    with pytest.raises(OutputError, match="cannot write"):
        save_checkpoint(_tiny(1), p)
    assert p.read_bytes() == good and not (tmp_path / "w.safetensors.tmp").exists()
