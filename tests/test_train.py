"""Tiny training runs on real clips: the loss falls, and --resume continues bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from facecycle.data.pairs import PairSource
from facecycle.train.trainer import Trainer, TrainOptions
from tests.conftest import shared_video
from tests.realdata import center_face_crops


@pytest.fixture(scope="module")
def real_pairs():
    """Crops of two real clips (one track each), 32 px RGB uint8."""
    a = center_face_crops(shared_video("videoretalking_face_1.mp4"), 10, 32)
    b = center_face_crops(shared_video("liveportrait_driving_d0.mp4"), 10, 32)
    imgs = np.concatenate([a, b])
    tracks = np.repeat([0, 1], [len(a), len(b)])
    return imgs, tracks


def _opts(**kw):
    base = dict(config="tiny", steps=30, pairs=4, lr=1e-3, seed=1, ckpt_every=0, sample_every=0, threads=1)
    base.update(kw)
    return TrainOptions(**base)


def test_tiny_training_lowers_loss(real_pairs, tmp_path):
    imgs, tracks = real_pairs
    tr = Trainer(_opts(sample_every=30), PairSource(imgs, tracks, seed=1), tmp_path / "run")
    losses = tr.fit(progress=False)
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
    assert (tmp_path / "run" / "last.safetensors").is_file()
    assert (tmp_path / "run" / "samples" / "step_000030.png").is_file()
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,loss,pixel") and len(rows) == 31


def test_resume_is_bit_exact(real_pairs, tmp_path):
    imgs, tracks = real_pairs
    full = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "full")
    full.fit(progress=False)

    part = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "part")
    part.fit(until=5, progress=False)
    del part
    again = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "part")
    assert again.resume() and again.step == 5
    again.fit(progress=False)
    assert again.step == 10
    a, b = full.model.state_dict(), again.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the log continues without duplicated steps
    steps = [int(r.split(",")[0]) for r in (tmp_path / "part" / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 11))


def test_pair_batches_depend_only_on_step(real_pairs):
    imgs, tracks = real_pairs
    s1, s2 = PairSource(imgs, tracks, seed=5), PairSource(imgs, tracks, seed=5)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = s1.batch(7, 6, mean, std)
    assert x.shape == (12, 3, 32, 32) and x.dtype == torch.float32
    s2.batch(3, 6, mean, std)
    assert torch.equal(x, s2.batch(7, 6, mean, std))
    assert not torch.equal(x, s1.batch(8, 6, mean, std))


def test_identity_stage_trains_only_identity_modules(real_pairs, tmp_path):
    imgs, tracks = real_pairs
    mot = Trainer(_opts(steps=2), PairSource(imgs, tracks), tmp_path / "mot")
    mot.fit(progress=False)
    idt = Trainer(_opts(stage="identity", steps=3, init=str(tmp_path / "mot" / "last.safetensors")),
                  PairSource(imgs, tracks), tmp_path / "id")
    before = {k: v.clone() for k, v in idt.model.state_dict().items()}
    losses = idt.fit(progress=False)
    assert len(losses) == 3 and all(np.isfinite(losses))
    after = idt.model.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        if k.split(".")[0] in ("codegeneration", "exptoflow", "Swap_Generator"):
            assert not changed, k
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("Swap_Norm."))


def test_what_cannot_be_resumed_is_said_and_a_divergence_is_one_line(real_pairs, tmp_path, capsys):
    """A damaged state file was an internal error (exit 1); `--resume` on a run whose state file is gone started
    over at step 0 and overwrote the trained weights; a loss that became NaN read as a bug of the tool."""
    from facecycle.errors import ModelError, PipelineError, UsageError
    from facecycle_cli.train_cmd import _diverged, _nothing_to_resume

    imgs, tracks = real_pairs
    part = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "part")
    part.fit(until=3, progress=False)
    st = tmp_path / "part" / "state.safetensors"
    st.write_bytes(st.read_bytes()[:100])
    again = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "part")
    with pytest.raises(ModelError, match="unreadable training state"):
        again.resume()
    st.unlink()
    with pytest.raises(UsageError, match="but not state.safetensors.*--init"):
        _nothing_to_resume(tmp_path / "part")
    with pytest.raises(UsageError, match="but not state.safetensors and head.safetensors"):
        _nothing_to_resume(tmp_path / "part", ("state.safetensors", "head.safetensors"))
    _nothing_to_resume(tmp_path / "new")  # nothing there: a fresh start, said
    assert "starting at step 0" in capsys.readouterr().out
    with pytest.raises(PipelineError, match="training diverged .*lower the learning rate"):
        with _diverged(tmp_path / "part"):
            raise FloatingPointError("loss became nan at step 4")


def test_a_diverged_run_keeps_its_last_sound_checkpoint(real_pairs, tmp_path):
    """fit() saved in `finally`, so a loss that became NaN wrote the NaN weights over the last checkpoint, which
    the error then told the user to resume."""
    imgs, tracks = real_pairs
    tr = Trainer(_opts(steps=10), PairSource(imgs, tracks, seed=1), tmp_path / "run")
    tr.fit(until=3, progress=False)
    files = {n: (tmp_path / "run" / n).read_bytes() for n in ("last.safetensors", "state.safetensors")}
    tr.train_step = lambda: {"loss": torch.tensor(float("nan"))}
    with pytest.raises(FloatingPointError, match="step 4"):
        tr.fit(progress=False)
    assert {n: (tmp_path / "run" / n).read_bytes() for n in files} == files


def test_a_state_with_bfloat16_moments_is_said_to_continue_inexactly(tmp_path, caplog):
    """scripts/run_state.py stores Adam's moments as bfloat16 to commit a run; its docstring said the log notes
    that the continuation is not bit-exact, and nothing did."""
    import logging
    import subprocess
    import sys

    from safetensors.torch import load_file

    from facecycle.train.state import load_state, save_state
    from tests.conftest import ROOT

    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.Adam([p])
    p.sum().backward()
    opt.step()
    run = tmp_path / "run"
    run.mkdir()
    save_state(run / "state.safetensors", opt, {"step": 1})
    for name in ("last.safetensors", "head.safetensors", "log.csv"):
        (run / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="facecycle.train.state"):
        load_state(run / "state.safetensors", torch.optim.Adam([p]))
    assert not caplog.records  # a run's own state: exact
    subprocess.run([sys.executable, str(ROOT / "scripts" / "run_state.py"), str(run), str(tmp_path / "dest")],
                   check=True, capture_output=True)
    assert load_file(str(tmp_path / "dest" / "state.safetensors"))["opt.0.exp_avg"].dtype == torch.bfloat16
    with caplog.at_level(logging.WARNING, logger="facecycle.train.state"):
        load_state(tmp_path / "dest" / "state.safetensors", torch.optim.Adam([p]))
    assert "bfloat16" in caplog.text and "not bit-exactly" in caplog.text


def _small_run(tmp_path):
    """A tiny motion run saved at step 2 on made-up crops (no ../shared): (a Trainer factory, the run's files)."""
    rng = np.random.default_rng(0)
    src = PairSource(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), np.repeat([0, 1], 4), seed=1)

    def trainer():
        return Trainer(_opts(steps=4, pairs=2), src, tmp_path / "run")

    trainer().fit(until=2, progress=False)

    def files():
        run = tmp_path / "run"
        return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}

    return trainer, files


def _rewrite_state(path, meta=None, md=None, tensors=None):
    """Save ``path`` again with ``meta`` (a JSON value) or the whole metadata ``md``, and other ``tensors``."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        old_md, old_t = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    if meta is not None:
        md = {**old_md, "meta": meta if isinstance(meta, str) else json.dumps(meta)}
    save_file(tensors if tensors is not None else old_t, str(path), metadata=md if md is not None else old_md)
    return old_md, old_t


_GOOD = {"step": 2, "wall_s": 1.0, "options": {}}


@pytest.mark.parametrize("change, why", [
    (dict(meta=[1]), "its meta is a JSON list"),
    (dict(meta="{oops"), "its meta is not JSON"),
    (dict(md={"param_groups": "[]"}), "no meta in its metadata"),
    (dict(md={"meta": '{"step": 2}'}), "no param_groups in its metadata"),
    (dict(meta={**_GOOD, "step": "abc"}), 'step "abc" is not a step number'),
    (dict(meta={**_GOOD, "step": float("nan")}), "step NaN is not a step number"),
    (dict(meta={"wall_s": 1.0}), "no step in its meta"),
    (dict(meta={**_GOOD, "step": -5}), "step -5 is not a step number"),
    (dict(meta={**_GOOD, "step": 10 ** 20}), "step 100000000000000000000 is not a step number"),
    (dict(meta={**_GOOD, "wall_s": "x"}), 'wall_s "x" is not a number of seconds'),
    (dict(meta={**_GOOD, "options": [1]}), "its options are not a JSON object"),
    (dict(md={"meta": '{"step": 2}', "param_groups": "[]"}), "does not fit this run's"),
    ("bad name", "a tensor named 'weird'"),
    ("bad moment", "does not fit this run's parameters"),
])
def test_a_damaged_training_state_is_one_line_and_the_run_is_left_as_it_was(tmp_path, change, why):
    """The state's metadata as a list, not JSON or without its keys, a text, NaN or missing step, a text wall time
    were internal errors; a step of -5 trained from there, overwrote last.safetensors and dropped log.csv's rows;
    1e20 was taken. The whole meta is checked before anything is written: a ModelError naming the file."""
    import torch

    from facecycle.errors import ModelError
    from facecycle.train.state import read_meta

    trainer, files = _small_run(tmp_path)
    st = tmp_path / "run" / "state.safetensors"
    if change == "bad name":
        _, t = _rewrite_state(st)
        _rewrite_state(st, tensors={**t, "weird": torch.zeros(2)})
    elif change == "bad moment":
        _, t = _rewrite_state(st)
        _rewrite_state(st, tensors={k: (torch.zeros(3) if k.endswith("exp_avg") else v) for k, v in t.items()})
    else:
        _rewrite_state(st, **change)
    before = files()
    with pytest.raises(ModelError, match=f"state.safetensors: damaged training state \\(.*{why}") as e:
        trainer().resume()
    assert "\n" not in str(e.value) and files() == before
    if not any(w in why for w in ("param_groups", "fit", "tensor")):  # what read_meta reads: the meta alone
        with pytest.raises(ModelError, match="state.safetensors: damaged training state"):
            read_meta(st)


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_text(p.read_text() + "x1,2,3\n"), "step 'x1' is not a step number"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\xff\xfe\n"), "not UTF-8"),
    (lambda p: (p.unlink(), p.mkdir()), "cannot read"),
])
def test_a_damaged_log_stops_a_resume_before_anything_is_written(tmp_path, damage, why):
    """RunLog.trim met a text step (ValueError) or non-UTF-8 bytes with an internal error, and a log.csv that is a
    directory failed the first step after the checkpoint had been rewritten. The log is checked first now."""
    from facecycle.errors import InputError

    trainer, files = _small_run(tmp_path)
    damage(tmp_path / "run" / "log.csv")
    before = files()
    with pytest.raises(InputError, match=f"log.csv: damaged training log \\(.*{why}"):
        trainer().resume()
    assert files() == before


def test_a_critic_that_cannot_be_loaded_is_one_line_naming_each_file_once(tmp_path):
    """A refit's error said the critic's folder twice: "X.safetensors: not a critic (X.json: damaged …)"; the
    path each loader's error starts with is cut now (the .json's to its name)."""
    import json

    from facecycle.errors import ModelError
    from facecycle.train.critic import load_critic
    from facecycle.train.semisup import _critic_why

    crit = tmp_path / "models" / "c.safetensors"
    crit.parent.mkdir()
    crit.write_bytes(b"not a critic")
    crit.with_suffix(".json").write_text("[]")
    with pytest.raises(ModelError) as e:
        load_critic(crit)
    why = _critic_why(crit, e.value)
    assert why == "c.json: damaged critic settings (a JSON list, not an object)"
    crit.with_suffix(".json").write_text(json.dumps({"widths": [4, 8], "mean": [0.5] * 3, "std": [0.5] * 3}))
    with pytest.raises(ModelError) as e:
        load_critic(crit)
    why = _critic_why(crit, e.value)
    assert why.startswith("not the critic its .json describes (") and str(tmp_path) not in why and "\n" not in why
    assert _critic_why(crit, OSError("disk gone")) == "disk gone"
