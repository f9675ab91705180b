"""The second, independent expression critic (facecycle.train.critic) and its use in the refit of M and G."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch", reason="training needs torch (pip install torch)")

from facecycle.train.critic import CriticOptions, StillCritic, load_critic, train_critic  # noqa: E402
from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer  # noqa: E402
from tests.test_semisup import (  # noqa: E402  (registers the tiny-gray-test config)
    _refit_base,
    _refit_options,
    _stills,
    _trainer,
    _video,
)


def _tiny_critic(tmp_path, steps=150):
    o = CriticOptions(steps=steps, batch=32, widths=(8, 8, 16, 16), image_size=32, warmup=10, blur_p=0.3)
    r = train_critic(_stills(600, 32, 0), _stills(200, 32, 1), tmp_path / "critic", o)
    return r, tmp_path / "critic" / "critic.safetensors"


def test_critic_learns_saves_and_loads_frozen(tmp_path):
    r, path = _tiny_critic(tmp_path)
    assert r["val_acc"] > 0.5  # 7 classes: chance is 0.14
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["val_acc"] == round(r["val_acc"], 4) and meta["steps"] == 150 and meta["images_per_s"] > 0
    assert (tmp_path / "critic" / "log.csv").read_text().startswith("step,lr,loss,images_per_s")
    net = load_critic(path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(net(x), load_critic(path)(x))


def test_critic_reads_grey_at_48_px_whatever_the_input_size():
    net = StillCritic((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), widths=(4, 4, 8, 8)).eval()
    rgb = torch.rand(2, 3, 64, 64) * 2 - 1
    g = net.grey(rgb)
    assert g.shape == (2, 1, 48, 48)
    luma = (rgb * 0.5 + 0.5) * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    grey_rgb = (luma.sum(1, keepdim=True).repeat(1, 3, 1, 1) - 0.5) / 0.5
    assert torch.allclose(net(rgb), net(grey_rgb), atol=1e-4)  # colour beyond luma is invisible to it
    assert net(torch.rand(2, 3, 40, 40)).shape == (2, 7)


def test_refit_asks_the_critic_too_and_leaves_it_frozen(tmp_path):
    from facecycle.errors import InputError, UsageError

    _, path = _tiny_critic(tmp_path, steps=20)
    base = _trainer(tmp_path, "base", steps=4)
    base.fit(progress=False)
    o = SemiSupOptions(config="tiny-gray-test", steps=4, batch=16, cycle_every=1, pairs=2, lr_motion=1e-3,
                       warmup_steps=1, val_every=0, ckpt_every=0, threads=1, train_encoder=False,
                       zero_flow_weight=2.0, neutral_jitter=1.0, critic_weight=0.5)
    kw = dict(init=str(tmp_path / "base" / "last.safetensors"), init_head=str(tmp_path / "base" / "head.safetensors"))
    tr = SemiSupTrainer(o, _stills(300, 32, 0), _stills(50, 32, 1), _video(64, 2), tmp_path / "refit",
                        critic=str(path), **kw)
    c0 = {k: v.clone() for k, v in tr.critic.state_dict().items()}
    g0 = [p.clone() for p in tr.model.Swap_Generator.parameters()]
    terms = tr.fit(progress=False)
    assert 0.0 < terms["critic_p"] < 1.0 and "neutral_ce" in terms
    assert all(torch.equal(v, c0[k]) for k, v in tr.critic.state_dict().items())  # weights and BN statistics
    assert any(not torch.equal(a, b) for a, b in zip(tr.model.Swap_Generator.parameters(), g0, strict=True))
    # the critic alone (neutral_weight 0) still drives the term
    o0 = SemiSupOptions(**{**o.__dict__, "neutral_weight": 0.0, "steps": 1})
    t0 = SemiSupTrainer(o0, _stills(300, 32, 0), _stills(50, 32, 1), _video(64, 2), tmp_path / "refit0",
                        critic=str(path), **kw).fit(progress=False)
    assert "critic_p" in t0 and "neutral_ce" not in t0
    with pytest.raises(UsageError, match="needs a critic"):
        SemiSupTrainer(o, _stills(30, 32, 0), _stills(10, 32, 1), _video(64, 2), tmp_path / "x", **kw)
    (tmp_path / "bad.safetensors").write_bytes(b"not a critic")
    with pytest.raises(InputError, match="not a critic"):  # no critic.json beside it
        SemiSupTrainer(o, _stills(30, 32, 0), _stills(10, 32, 1), _video(64, 2), tmp_path / "y",
                       critic=str(tmp_path / "bad.safetensors"), **kw)
    (tmp_path / "bad.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(InputError, match="not a critic"):  # its json, but a damaged weights file
        SemiSupTrainer(o, _stills(30, 32, 0), _stills(10, 32, 1), _video(64, 2), tmp_path / "z",
                       critic=str(tmp_path / "bad.safetensors"), **kw)


def test_detail_excess_charges_added_stripes_not_removed_detail():
    from facecycle.losses import detail_excess

    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=g), size=64, mode="bilinear")
    ref[:, :, 40:50, 20:44] += 0.8 * (torch.arange(24) % 2).float()  # a detailed patch (teeth, say)
    stripes = ref.clone()
    stripes[:, :, 10:30, 10:54] += 0.5 * ((torch.arange(20) // 2) % 2).float().view(20, 1)  # on smooth skin
    smoothed = ref.clone()
    smoothed[:, :, 40:50, 20:44] = ref[:, :, 40:50, 20:44].mean()  # the patch's detail removed
    assert float(detail_excess(ref, ref)) < 1e-3
    assert float(detail_excess(smoothed, ref)) < 1e-3  # removing detail is free
    assert float(detail_excess(stripes, ref)) > 0.02  # adding it is not
    y = stripes.clone().requires_grad_(True)
    detail_excess(y, ref).backward()
    assert y.grad[:, :, 10:30, 10:54].abs().sum() > 0 and y.grad[:, :, 55:, :].abs().sum() == 0


def test_critic_blur_keeps_stripes_from_the_critics():
    from facecycle.train.semisup import critic_jitter

    stripes = torch.zeros(4, 3, 64, 64)
    stripes[..., 0::4, :] = 1.0
    stripes[..., 1::4, :] = 1.0
    plain = critic_jitter(stripes, torch.Generator().manual_seed(3), 1.0)
    low = critic_jitter(stripes, torch.Generator().manual_seed(3), 1.0, blur_max=0.45)
    hp = lambda y: (y - torch.nn.functional.avg_pool2d(y, 5, 1, 2, count_include_pad=False)).std()  # noqa: E731
    assert hp(low) < 0.6 * hp(plain)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    critic_jitter(x, torch.Generator().manual_seed(1), 1.0, blur_max=0.45).sum().backward()
    assert x.grad.abs().sum() > 0


def test_online_critic_learns_from_the_neutral_faces_and_resumes(tmp_path):
    from facecycle.errors import UsageError
    from facecycle.train.critic import OnlineCritic

    _, path = _tiny_critic(tmp_path, steps=20)
    kw, data = _refit_base(tmp_path)
    o = _refit_options(ckpt_every=2, critic_weight=0.5, critic_adapt_lr=1e-3)
    tr = SemiSupTrainer(o, *data, tmp_path / "refit", critic=str(path), **kw)
    c0 = {k: v.clone() for k, v in tr.critic.state_dict().items()}
    seen = []
    step = tr.critic_online.step
    tr.critic_online.step = lambda *a: (seen.append((tr.head.training, a[3])), step(*a))[1]
    terms = tr.fit(progress=False, stop_at=2)
    assert "critic_still_ce" in terms and "critic_p" in terms
    # the neutral faces are labelled by the head in eval mode (no dropout): their inputs' own readings
    assert seen and not any(training for training, _ in seen)
    sd = tr.critic.state_dict()
    assert any(not torch.equal(sd[k], c0[k]) for k in c0 if "running" not in k)  # its weights learn
    assert all(torch.equal(sd[k], c0[k]) for k in c0 if "running" in k)  # its BatchNorm statistics do not
    saved = {k: v.clone() for k, v in sd.items()}
    tr2 = SemiSupTrainer(o, *data, tmp_path / "refit", critic=str(path), **kw)
    assert tr2.resume() and all(torch.equal(v, saved[k]) for k, v in tr2.critic.state_dict().items())
    with pytest.raises(UsageError, match="needs a critic in use"):
        SemiSupTrainer(SemiSupOptions(**{**o.__dict__, "critic_weight": 0.0}), *data, tmp_path / "x", **kw)
    with pytest.raises(UsageError, match="learns from a refit's still batch"):
        SemiSupTrainer(SemiSupOptions(**{**o.__dict__, "train_encoder": True}), *data, tmp_path / "x2",
                       critic=str(path), **kw)
    # the fakes' labels are learned: a critic shown constant images labelled "happy" comes to read them so
    net = load_critic(path)
    oc = OnlineCritic(net, lr=3e-3)
    fakes, happy = torch.zeros(8, 3, 32, 32), torch.full((8,), 3)
    stills = torch.from_numpy(data[0][0][:16]).permute(0, 3, 1, 2).float() / 127.5 - 1
    labels = torch.from_numpy(data[0][1][:16])
    for _ in range(40):
        t = oc.step(stills, labels, fakes, happy)
    assert t["critic_fake_seen"] == 1.0


def test_a_damaged_critic_json_is_a_model_error_naming_it(tmp_path):
    """critic.json as a list was a TypeError (exit 1): it is checked to be an object with mean, std (3 numbers
    each) and widths; weights that are not what it describes are a ModelError naming them. A refit says either as
    its one-line "not a critic"."""
    from safetensors.torch import save_file

    from facecycle.errors import ModelError

    path = tmp_path / "critic.safetensors"
    save_file({k: v.contiguous() for k, v in StillCritic((0.5,) * 3, (0.5,) * 3, (4, 8)).state_dict().items()},
              str(path))
    good = {"widths": [4, 8], "mean": [0.5] * 3, "std": [0.5] * 3}
    (tmp_path / "critic.json").write_text(json.dumps(good))
    assert load_critic(path).widths == (4, 8)
    for meta, why in (("[]", "a JSON list, not an object"), ("{", "not JSON text"), (b"\xff", "not JSON text"),
                      (json.dumps({**good, "mean": [0.5]}), "mean \\[0.5\\]"),
                      (json.dumps({**good, "std": [0.5, 0.5, 0.0]}), "std"),
                      (json.dumps({**good, "widths": ["4"]}), 'widths \\["4"\\]'),
                      (json.dumps({"widths": [4, 8]}), "mean null, std null")):
        (tmp_path / "critic.json").write_bytes(meta if isinstance(meta, bytes) else meta.encode())
        with pytest.raises(ModelError, match=f"critic.json: damaged critic settings \\(.*{why}") as e:
            load_critic(path)
        assert "\n" not in str(e.value)
    (tmp_path / "critic.json").write_text(json.dumps({**good, "widths": [4, 16]}))
    with pytest.raises(ModelError, match="critic.safetensors: not the critic its .json describes"):
        load_critic(path)
