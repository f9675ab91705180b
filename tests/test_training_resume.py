"""Stopping and resuming training: a signal during a step, a kill between the saved files, a resume elsewhere."""
from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install torch)")

from facecycle.data.pairs import PairSource  # noqa: E402
from facecycle.errors import ModelError  # noqa: E402
from facecycle.train import state as state_mod  # noqa: E402
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer  # noqa: E402
from facecycle.train.state import changed_options, read_meta  # noqa: E402
from facecycle.train.trainer import Trainer, TrainOptions  # noqa: E402
from facecycle_cli.train_cmd import StopAtStepEnd  # noqa: E402

STEPS = 8


def _source() -> PairSource:
    rng = np.random.default_rng(3)
    base = rng.integers(40, 200, (4, 32, 32, 3))
    imgs = np.concatenate([np.clip(b + rng.integers(-20, 20, (4, 32, 32, 3)), 0, 255) for b in base]).astype(np.uint8)
    return PairSource(imgs, np.repeat(np.arange(4), 4), seed=1)


def _opts(**kw) -> TrainOptions:
    base = dict(config="tiny", steps=STEPS, pairs=2, lr=1e-3, seed=1, ckpt_every=3, sample_every=0, threads=1)
    return TrainOptions(**{**base, **kw})


def _trainer(out: Path, resuming: bool = False, **kw) -> Trainer:
    return Trainer(_opts(**kw), _source(), out, resuming=resuming)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's final weights."""
    tr = _trainer(tmp_path_factory.mktemp("ref") / "run")
    tr.fit(progress=False)
    return tr.model.state_dict()


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _inject(monkeypatch, tr, at: int, act) -> None:
    """Run ``act()`` right after the first optimizer update of step ``at`` (1-based: its weights changed, the
    trainer's count not yet)."""
    orig = tr.opt.step
    done = []

    def step(*a, **k):
        r = orig(*a, **k)
        if tr.step == at - 1 and not done:
            done.append(1)
            act()
        return r
    monkeypatch.setattr(tr.opt, "step", step)


def _finish(out: Path, at: int):
    again = _trainer(out, resuming=True)
    assert again.resume() and again.step == at
    again.fit(progress=False)
    assert again.step == STEPS
    return again.model.state_dict()


def test_sigterm_inside_a_step_stops_after_it_and_the_resume_is_exact(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    tr = _trainer(out)
    _inject(monkeypatch, tr, 5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as e:
        with StopAtStepEnd() as sig:
            tr.fit(progress=False, stop=sig.requested)
        sig.stopped(tr.step, out)
    assert e.value.code == 143
    assert read_meta(out / "state.safetensors")["step"] == 5  # the whole step 5, saved
    monkeypatch.undo()
    _same(reference, _finish(out, 5))


def test_a_forced_quit_inside_a_step_keeps_the_last_whole_save(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    tr = _trainer(out)

    def quit_now():
        raise KeyboardInterrupt
    _inject(monkeypatch, tr, 5, quit_now)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(progress=False)
    assert read_meta(out / "state.safetensors")["step"] == 3  # the periodic save, not the half step 5
    _same(reference, _finish(out, 3))


def test_semisup_forced_quit_inside_a_step_keeps_the_last_whole_save(tmp_path, monkeypatch):
    def make(name):
        rng = np.random.default_rng(0)
        stills = (rng.integers(0, 255, (40, 32, 32, 3)).astype(np.uint8), rng.integers(0, 7, 40))
        val = (stills[0][:8], stills[1][:8])
        video = (rng.integers(0, 255, (16, 64, 64, 3)).astype(np.uint8), np.repeat(np.arange(2), 8))
        o = SemiSupOptions(config="tiny", steps=6, batch=8, cycle_every=2, pairs=2, lr=3e-3, warmup_steps=1,
                           val_every=0, ckpt_every=2, threads=1)
        return SemiSupTrainer(o, stills, val, video, tmp_path / name)

    ref = make("ref")
    ref.fit(progress=False)
    tr = make("run")

    def quit_now():
        raise KeyboardInterrupt
    _inject(monkeypatch, tr, 3, quit_now)  # inside step 3
    with pytest.raises(KeyboardInterrupt):
        tr.fit(progress=False)
    assert read_meta(tmp_path / "run" / "state.safetensors")["step"] == 2
    again = make("run")
    assert again.resume() and again.step == 2
    again.fit(progress=False)
    _same(ref.model.state_dict(), again.model.state_dict())
    assert torch.equal(ref.head.fc.weight, again.head.fc.weight)


def test_files_of_different_steps_are_refused(tmp_path):
    out = tmp_path / "run"
    _trainer(out).fit(until=3, progress=False)
    shutil.copy(out / "state.safetensors", tmp_path / "state3")
    tr = _trainer(out, resuming=True)
    assert tr.resume()
    tr.fit(until=6, progress=False)
    shutil.copy(tmp_path / "state3", out / "state.safetensors")  # last at step 6, state at step 3
    with pytest.raises(ModelError, match=r"last\.safetensors at step 6.*state\.safetensors at step 3"):
        _trainer(out, resuming=True).resume()


def test_a_kill_between_the_saved_files_leaves_a_whole_set(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    _trainer(out).fit(until=3, progress=False)
    tr = _trainer(out, resuming=True)
    assert tr.resume()
    orig = Path.replace
    moved = []

    def replace(self, target):  # killed after the first file of the set has replaced the run's
        committing = self.parent.name == state_mod.PENDING and Path(target).parent == out
        if committing and moved:
            raise KeyboardInterrupt
        r = orig(self, target)
        if committing:
            moved.append(self.name)
        return r
    monkeypatch.setattr(Path, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        tr.fit(until=5, progress=False)  # the save at step 5 is cut between its files
    monkeypatch.undo()
    assert len(moved) == 1
    _same(reference, _finish(out, 5))  # the complete set is finished on resume

    # a save cut short before its set was complete: dropped, the previous save stands
    out2 = tmp_path / "run2"
    _trainer(out2).fit(until=3, progress=False)
    pending = out2 / state_mod.PENDING
    pending.mkdir()
    shutil.copy(out2 / "last.safetensors", pending / "last.safetensors")
    _same(reference, _finish(out2, 3))
    assert not pending.exists()


def test_an_identity_run_resumes_without_its_init_file(tmp_path, caplog):
    mot = _trainer(tmp_path / "mot", steps=2)
    mot.fit(progress=False)
    init = tmp_path / "motion.safetensors"
    shutil.copy(tmp_path / "mot" / "last.safetensors", init)
    full = _trainer(tmp_path / "full", stage="identity", steps=4, init=str(init))
    full.fit(progress=False)
    part = _trainer(tmp_path / "part", stage="identity", steps=4, init=str(init))
    part.fit(until=2, progress=False)
    init.unlink()  # a new machine: the run holds every weight, its start file is elsewhere
    for given in (None, str(tmp_path / "elsewhere.safetensors")):
        shutil.copytree(tmp_path / "part", tmp_path / "p2", dirs_exist_ok=True)
        again = _trainer(tmp_path / "p2", resuming=True, stage="identity", steps=4, init=given)
        with caplog.at_level("WARNING"):
            assert again.resume() and again.step == 2
        assert "option init" not in caplog.text
        assert again.o.init == str(init)  # the run's own start is kept in its options
        again.fit(progress=False)
        _same(full.model.state_dict(), again.model.state_dict())
        shutil.rmtree(tmp_path / "p2")
    assert changed_options({"init": "a", "init_identity": "b"}, {"init": "c", "init_identity": None}) == []


def test_a_resume_with_other_options_is_kept_in_the_runs_record(tmp_path, caplog):
    """Probe finding (training resume): a resume with another learning rate or step count warned, and the next
    save's ``options`` said only the new values, so nothing in the run told that its first steps had others. The
    state now keeps ``option_changes``: from which step each change held, kept across later resumes."""
    out = tmp_path / "run"
    first = _trainer(out, steps=3)
    first.fit(progress=False)
    assert read_meta(out / "state.safetensors")["option_changes"] == []
    second = _trainer(out, resuming=True, steps=6, lr=5e-4)
    assert second.resume() and second.step == 3
    second.fit(progress=False)
    third = _trainer(out, resuming=True, steps=8, lr=5e-4, threads=2)  # (threads: no change to the training)
    assert third.resume() and third.step == 6
    third.fit(progress=False)
    meta = read_meta(out / "state.safetensors")
    assert meta["options"]["lr"] == 5e-4 and meta["step"] == 8
    assert meta["option_changes"] == [{"step": 3, "changed": {"lr": [1e-3, 5e-4], "steps": [3, 6]}},
                                      {"step": 6, "changed": {"steps": [6, 8]}}], meta["option_changes"]
