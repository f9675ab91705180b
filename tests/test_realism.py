"""The realism term of the refit (facecycle.train.realism): a patch discriminator trained beside the generator."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install torch)")

from facecycle.train.realism import PatchDiscriminator, Realism, realism_loss  # noqa: E402
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer  # noqa: E402
from tests.test_semisup import (  # noqa: E402  (registers the tiny-gray-test config)
    _refit_base,
    _refit_options,
    _stills,
    _video,
)


def _smooth(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=32, mode="bilinear")


def _striped(n: int, seed: int) -> torch.Tensor:
    x = _smooth(n, seed)
    x[..., 0::4, :] += 0.6  # a pattern no real image here has
    return x


def test_patch_logits_shape_and_size():
    d = PatchDiscriminator(8)
    assert d(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 16, 16)
    assert d(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 8, 8)


def test_discriminator_learns_stripes_and_pushes_the_fake_towards_real():
    torch.manual_seed(0)
    r = Realism(lr=2e-3, width=8)
    for i in range(60):
        t = r.step(_smooth(16, i), _striped(16, 1000 + i))
    assert t["disc_real"] > t["disc_fake"] + 0.5  # it tells them apart (held-out draws below too)
    with torch.no_grad():
        assert r.d(_smooth(16, 99)).mean() > r.d(_striped(16, 98)).mean()
    # the generator's loss, descended on the fake image itself, flattens the stripes (row contrast 0.6)
    fake = _striped(8, 5).requires_grad_(True)
    clean = _smooth(8, 5)

    def contrast(z: torch.Tensor) -> float:
        e = z.detach() - clean
        return float((e[..., 0::4, :] - e[..., 2::4, :]).mean())

    assert contrast(fake) == pytest.approx(0.6, abs=1e-5)
    opt = torch.optim.SGD([fake], lr=20.0)
    for _ in range(10):
        opt.zero_grad()
        realism_loss(r.d, fake).backward()
        opt.step()
    assert contrast(fake) < 0.35
    assert all(p.requires_grad for p in r.d.parameters())  # the generator's pass left D trainable


def test_realism_loss_leaves_the_discriminator_untouched():
    d = PatchDiscriminator(8)
    fake = torch.randn(2, 3, 32, 32, requires_grad=True)
    realism_loss(d, fake).backward()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.parameters())


def test_refit_with_realism_trains_saves_and_resumes_the_discriminator(tmp_path):
    kw, data = _refit_base(tmp_path)
    o = _refit_options(ckpt_every=2, realism_weight=0.1, realism_lr=1e-3)
    tr = SemiSupTrainer(o, *data, tmp_path / "refit", **kw)
    d0 = [p.clone() for p in tr.realism.d.parameters()]
    terms = tr.fit(progress=False, stop_at=2)
    assert {"realism", "disc", "disc_real", "disc_fake"} <= set(terms)
    assert any(not torch.equal(a, b) for a, b in zip(tr.realism.d.parameters(), d0, strict=True))
    assert (tmp_path / "refit" / "disc.safetensors").is_file()
    saved = {k: v.clone() for k, v in tr.realism.d.state_dict().items()}
    tr2 = SemiSupTrainer(o, *data, tmp_path / "refit", **kw)
    assert tr2.resume() and tr2.step == 2
    assert all(torch.equal(v, saved[k]) for k, v in tr2.realism.d.state_dict().items())
    assert tr2.realism.opt.state  # Adam's moments came back too
    tr2.fit(progress=False)
    assert tr2.step == 4
    header = (tmp_path / "refit" / "log.csv").read_text().splitlines()[0]
    assert "realism" in header and "disc_fake" in header
    # off by default: no discriminator, no file
    o0 = SemiSupOptions(**{**o.__dict__, "realism_weight": 0.0, "steps": 1})
    t0 = SemiSupTrainer(o0, *data, tmp_path / "plain", **kw)
    t0.fit(progress=False)
    assert t0.realism is None and not (tmp_path / "plain" / "disc.safetensors").exists()


def test_neutral_via_flow_trains_the_motion_decoder_not_the_generator(tmp_path):
    """With ``neutral_via="flow"`` the neutral-face critics see G(x, flow) with G frozen: their gradient moves
    the flow (M) and never paints with G. The cycle losses are off here so that only the critic term trains."""
    from facecycle.errors import UsageError

    kw, data = _refit_base(tmp_path)

    def run(via: str, name: str):
        o = _refit_options(steps=2, zero_flow_weight=0.0, neutral_jitter=0.0, neutral_weight=1.0,
                           reexpress_weight=0.0, cycle_weight=0.0, weight_decay=0.0, neutral_via=via)
        tr = SemiSupTrainer(o, *data, tmp_path / name, **kw)
        g0 = [p.clone() for p in tr.model.Swap_Generator.parameters()]
        m0 = [p.clone() for p in tr.model.exptoflow.parameters()]
        terms = tr.fit(progress=False)
        g_moved = any(not torch.equal(a, b) for a, b in zip(tr.model.Swap_Generator.parameters(), g0, strict=True))
        m_moved = any(not torch.equal(a, b) for a, b in zip(tr.model.exptoflow.parameters(), m0, strict=True))
        return g_moved, m_moved, terms

    g_moved, m_moved, terms = run("flow", "via_flow")
    assert m_moved and not g_moved and "neutral_ce" in terms
    g_moved, m_moved, _ = run("generator", "via_gen")
    assert g_moved and m_moved
    with pytest.raises(UsageError, match="neutral_via"):
        SemiSupTrainer(SemiSupOptions(config="tiny-gray-test", neutral_via="paint"), *data, tmp_path / "bad", **kw)


def test_realism_can_take_its_real_images_from_clip_labelled_neutral_video(tmp_path):
    import numpy as np

    from facecycle.errors import InputError, UsageError
    from facecycle.train.semisup import NEUTRAL

    kw, _ = _refit_base(tmp_path, steps=2)
    vid = _video(64, 2)
    vid[0][:16] = 200  # the crops labelled neutral: bright and flat, unlike every other crop
    labels = np.full(64, -1, np.int64)
    labels[:16] = NEUTRAL
    o = _refit_options(steps=2, pairs=3, realism_weight=0.1, realism_real="neutral")
    tr = SemiSupTrainer(o, _stills(100, 32, 0), _stills(20, 32, 1), vid, tmp_path / "r", video_labels=labels, **kw)
    real = tr.neutral_frames(0)
    assert real.shape == (6, 3, 32, 32)
    assert float(real.std(dim=(2, 3)).max()) < 0.05  # flat: only the crops labelled neutral (the rest are noise)
    assert float(tr.pair_batch(0).std(dim=(2, 3)).max()) > 0.3
    assert "disc_real" in tr.fit(progress=False)
    with pytest.raises(UsageError, match="needs video crops and their labels"):
        SemiSupTrainer(o, _stills(100, 32, 0), _stills(20, 32, 1), vid, tmp_path / "r2", **kw)
    with pytest.raises(InputError, match="no video crop is labelled neutral"):
        SemiSupTrainer(o, _stills(100, 32, 0), _stills(20, 32, 1), vid, tmp_path / "r3",
                       video_labels=np.full(64, -1, np.int64), **kw)


def test_run_state_carries_the_discriminator_so_a_copied_refit_resumes_it(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    kw, data = _refit_base(tmp_path)
    o = _refit_options(steps=3, realism_weight=0.1)
    tr = SemiSupTrainer(o, *data, tmp_path / "refit", **kw)
    tr.fit(progress=False, stop_at=2)
    script = Path(__file__).resolve().parents[1] / "scripts" / "run_state.py"
    subprocess.run([sys.executable, str(script), str(tmp_path / "refit"), str(tmp_path / "copy")], check=True,
                   capture_output=True)
    assert (tmp_path / "copy" / "disc.safetensors").is_file()
    tr2 = SemiSupTrainer(o, *data, tmp_path / "copy", **kw)
    assert tr2.resume() and tr2.step == 2
    assert all(torch.equal(v, tr.realism.d.state_dict()[k]) for k, v in tr2.realism.d.state_dict().items())


def test_second_pass_term_distils_the_starting_models_two_passes_into_one(tmp_path):
    """``second_pass_weight``: a refit's neutral face is pulled towards the starting model's two-pass neutral face
    (a frozen copy of M and G), compared at half resolution. Alone (cycle and critics off) it moves G and M,
    never E or the copy, and the gap falls."""
    from facecycle.errors import UsageError

    kw, data = _refit_base(tmp_path)
    o = _refit_options(steps=8, zero_flow_weight=0.0, neutral_jitter=0.0, neutral_weight=0.0, reexpress_weight=0.0,
                       cycle_weight=0.0, weight_decay=0.0, second_pass_weight=1.0, lr_motion=1e-3)
    tr = SemiSupTrainer(o, *data, tmp_path / "second", **kw)
    enc0 = [p.clone() for p in tr.model.codegeneration.parameters()]
    g0 = [p.clone() for p in tr.model.Swap_Generator.parameters()]
    t0 = [p.clone() for m in tr.teacher for p in m.parameters()]
    gaps = [tr.train_step()["second_pass"] for _ in range(8)]
    assert np.mean(gaps[-3:]) < 0.7 * np.mean(gaps[:2]), gaps
    assert all(torch.equal(a, b) for a, b in zip(tr.model.codegeneration.parameters(), enc0, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(tr.model.Swap_Generator.parameters(), g0, strict=True))
    assert all(torch.equal(a, b) for a, b in zip([p for m in tr.teacher for p in m.parameters()], t0, strict=True))
    with pytest.raises(UsageError, match="refit term"):
        SemiSupTrainer(SemiSupOptions(config="tiny-gray-test", second_pass_weight=1.0), *data, tmp_path / "bad", **kw)
    # the starting model is saved with the run: a resume without --init (the GPU script's) keeps it
    tr.save()
    again = SemiSupTrainer(o, *data, tmp_path / "second")
    assert again.resume()
    assert all(torch.equal(a, b) for a, b in zip([p for m in again.teacher for p in m.parameters()], t0,
                                                 strict=True))
    (tmp_path / "second" / "teacher.safetensors").unlink()
    from facecycle.errors import InputError

    with pytest.raises(InputError, match="teacher.safetensors"):
        SemiSupTrainer(o, *data, tmp_path / "second").resume()


def test_train_passes_judges_the_second_pass_face_with_gradients_through_both(tmp_path):
    """``train_passes=2``: the neutral-face terms also read the second pass's face G(n, M(E(n))); with the
    first pass's face alone in the term (cycle off) the loss differs, E never moves, and the second pass's
    detail excess is charged. Refused outside a refit."""
    from facecycle.errors import UsageError

    kw, data = _refit_base(tmp_path)

    def run(passes: int, name: str):
        o = _refit_options(steps=2, zero_flow_weight=0.0, neutral_jitter=0.0, neutral_weight=1.0,
                           reexpress_weight=0.0, cycle_weight=0.0, weight_decay=0.0, detail_excess_weight=1.0,
                           train_passes=passes)
        tr = SemiSupTrainer(o, *data, tmp_path / name, **kw)
        enc0 = [p.clone() for p in tr.model.codegeneration.parameters()]
        terms = tr.train_step()
        assert all(torch.equal(a, b) for a, b in zip(tr.model.codegeneration.parameters(), enc0, strict=True))
        return terms

    one, two = run(1, "one"), run(2, "two")
    assert "detail_excess_later" in two and "detail_excess_later" not in one
    assert two["neutral_ce"] != one["neutral_ce"]  # the mean over both passes' faces
    with pytest.raises(UsageError, match="train_passes"):
        SemiSupTrainer(SemiSupOptions(config="tiny-gray-test", train_passes=2), *data, tmp_path / "bad", **kw)


def test_still_neutral_term_teaches_m_and_g_to_neutralize_the_expressive_stills(tmp_path):
    """``still_neutral_weight``: a refit's expressive stills (not the neutral ones) must give a neutral face that
    the frozen head reads as neutral, and come back from it (``still_cycle_weight``). Alone (cycle and the video
    terms off) it raises the head's neutral probability of those faces, moves G, never E or the head; without the
    cycle part its term is not logged. Refused outside a refit."""
    from facecycle.errors import UsageError

    kw, data = _refit_base(tmp_path, steps=40)  # a head that reads the made-up classes

    def run(name: str, cycle: float):
        o = _refit_options(steps=12, zero_flow_weight=0.0, neutral_jitter=0.0, neutral_weight=0.0,
                           reexpress_weight=0.0, cycle_weight=0.0, weight_decay=0.0, lr_motion=3e-3,
                           still_neutral_weight=1.0, still_cycle_weight=cycle)
        tr = SemiSupTrainer(o, *data, tmp_path / name, **kw)
        enc0 = [p.clone() for p in tr.model.codegeneration.parameters()]
        head0 = [p.clone() for p in tr.head.parameters()]
        g0 = [p.clone() for p in tr.model.Swap_Generator.parameters()]
        rows = [tr.train_step() for _ in range(12)]
        assert all(torch.equal(a, b) for a, b in zip(tr.model.codegeneration.parameters(), enc0, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(tr.head.parameters(), head0, strict=True))
        assert any(not torch.equal(a, b) for a, b in zip(tr.model.Swap_Generator.parameters(), g0, strict=True))
        return rows

    rows = run("still", 1.0)
    p = [r["still_neutral_p"] for r in rows]
    assert np.mean(p[-3:]) > np.mean(p[:2]) + 0.3, p
    assert all("still_cycle" in r and "zero_flow" not in r for r in rows)
    assert all("still_cycle" not in r for r in run("no_cycle", 0.0)[:2])
    with pytest.raises(UsageError, match="still_neutral_weight"):
        SemiSupTrainer(SemiSupOptions(config="tiny-gray-test", still_neutral_weight=1.0), *data, tmp_path / "bad", **kw)
