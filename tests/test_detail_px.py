"""``config.detail_px``: the expression encoder reads its input at the labelled stills' detail (48 px).

The low-pass is a fixed linear map inside the model (``facecycle.nn.encoder.lowpass_matrix``), so every engine
and every caller (pipeline, probes) gets it from the graph itself, and training reads the head's feature the
same way (``Encoder.read``). These tests check the map against
OpenCV's resize pair, that the encoder ignores detail finer than ``detail_px`` and only then, that checkpoints
stay interchangeable, that the export carries it, and that the shipped model has it.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facecycle.config import get_config  # noqa: E402
from facecycle.model import FaceCycle  # noqa: E402
from facecycle.nn.encoder import lowpass_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _face_like(size: int = 64, seed: int = 0) -> np.ndarray:
    """(size, size) float32 in [0, 1]: smooth shading with a few blurred blobs (a stand-in for a face crop)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.4 + 0.3 * xx - 0.2 * yy
    for _ in range(6):
        cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.05, 0.15)]
        img += rng.uniform(-0.3, 0.3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img, 0, 1).astype(np.float32)


def _checker(size: int) -> np.ndarray:
    """The finest pattern a ``size``-px image holds: ±1 alternating pixels."""
    return ((np.indices((size, size)).sum(0) % 2) * 2 - 1).astype(np.float32)


def test_lowpass_matrix_is_a_resize_pair():
    a = lowpass_matrix(64, 48).numpy()
    assert a.shape == (64, 64) and a.dtype == np.float32
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-5)  # rows sum to 1: constants and normalisation pass
    x = _face_like()
    y = a @ x @ a.T
    assert float(np.abs(y - x).mean()) < 2.0 / 255  # a smooth face survives it
    t = (np.arange(64) + 0.5) / 64
    # 48 px holds up to 24 cycles: coarse waves pass, finer ones are damped (above 24 they alias, damped too)
    for cycles, keep in ((6, (0.8, 1.0)), (16, (0.2, 0.45)), (28, (0.0, 0.3)), (32, (0.0, 0.05))):
        wave = np.cos(2 * np.pi * cycles * t)[None, :] * np.ones((64, 1), np.float32)
        gain = float(np.abs((a @ wave @ a.T)[8:-8, 8:-8]).max())
        ref = cv2.resize(cv2.resize(wave.astype(np.float32), (48, 48), interpolation=cv2.INTER_AREA), (64, 64),
                         interpolation=cv2.INTER_LINEAR)
        gain_cv = float(np.abs(ref[8:-8, 8:-8]).max())
        assert keep[0] <= gain <= keep[1], (cycles, gain)
        assert abs(gain - gain_cv) < 0.2, (cycles, gain, gain_cv)  # about OpenCV's area-down / linear-up pair
    c = np.abs(a @ _checker(64) @ a.T)
    # 64-px detail, above 48 px's Nyquist limit, is removed (to 4 % away from the image's two-pixel border)
    assert float(c[2:-2, 2:-2].max()) < 0.06 and float(c.mean()) < 0.04
    assert float(np.abs(lowpass_matrix(64, 64).numpy() - np.eye(64)).max()) < 1e-5  # at full size: no change


def _pair(cfg_name: str = "rt64w"):
    torch.manual_seed(0)
    sharp = FaceCycle(get_config(cfg_name)).eval()
    soft = FaceCycle(get_config(cfg_name).replace(detail_px=48)).eval()
    soft.load_state_dict(sharp.state_dict())  # same keys: a checkpoint loads into either
    return sharp, soft


def test_encoder_ignores_detail_finer_than_detail_px_only():
    sharp, soft = _pair()
    assert soft.codegeneration.lowpass and not soft.idcodegen.lowpass and not sharp.codegeneration.lowpass
    g = _face_like()
    x = torch.from_numpy(np.repeat(g[None, None], 3, 1))
    xn = x + 0.15 * torch.from_numpy(_checker(64))[None, None]
    with torch.no_grad():
        def change(m):
            a, b = m.analyze(x), m.analyze(xn)
            return float((a.feature - b.feature).norm() / a.feature.norm())
        d_soft, d_sharp = change(soft), change(sharp)
        # the identity encoder still reads the sharp image
        assert float((soft.identity(x) - sharp.identity(x)).abs().max()) == 0.0
        # the smooth image itself reads nearly the same either way
        base = float((soft.analyze(x).feature - sharp.analyze(x).feature).norm() / sharp.analyze(x).feature.norm())
    assert d_soft < 0.2 * d_sharp, (d_soft, d_sharp)
    assert base < 0.1, base
    with torch.no_grad():  # the code, the flow and their intensity read the sharp image: identical either way
        a, b = soft.analyze(xn), sharp.analyze(xn)
        for k in ("code", "flow", "backflow", "intensity"):  # equal up to the batch size's float rounding
            torch.testing.assert_close(getattr(a, k), getattr(b, k), rtol=1e-4, atol=1e-6)
        # Encoder.read (what training calls) = (features, the sharp code), in one batched pass
        f, c = soft.codegeneration.read(xn)
        torch.testing.assert_close(f, soft.codegeneration.features(xn))
        torch.testing.assert_close(c, soft.codegeneration(xn)[1])
        assert not torch.allclose(f, soft.codegeneration(xn)[0])


def test_training_reads_the_head_feature_at_detail_px(tmp_path):
    """The semi-supervised step's emotion head learns on the same low-passed feature the model ships with."""
    from facecycle.config import register_config
    from facecycle.train.semisup import SemiSupOptions, SemiSupTrainer

    @register_config
    def _tiny_d24():
        return get_config("tiny").replace(name="tiny-d24-test", gray_input=True, crop_scale=1.0, detail_px=24)

    rng = np.random.default_rng(0)
    stills = (rng.integers(0, 255, (64, 32, 32, 3)).astype(np.uint8), rng.integers(0, 7, 64))
    o = SemiSupOptions(config="tiny-d24-test", steps=1, batch=8, cycle_every=1, pairs=2, warmup_steps=1,
                       val_every=0, ckpt_every=0, threads=1, lr=0.0, lr_motion=0.0)  # weights stay put
    tr = SemiSupTrainer(o, stills, stills, (rng.integers(0, 255, (16, 32, 32, 3)).astype(np.uint8),
                                            np.repeat(np.arange(2), 8)), tmp_path / "run")
    seen = []
    hook = tr.head.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    x, _ = tr.still_batch(0)
    tr.train_step()
    hook.remove()
    tr.model.eval()
    with torch.no_grad():
        want = tr.model.codegeneration.features(x)
        sharp = tr.model.codegeneration(x)[0]
    got = seen[0][: len(x)].float()  # the step's first head call: the still batch (its dropout comes after)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert float((got - sharp).abs().max()) > 1e-3  # and not the sharp feature


def test_detail_px_is_kept_in_checkpoints_and_exports(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from facecycle.checkpoint import load_checkpoint, save_checkpoint
    from facecycle.export import export_onnx
    from facecycle.preprocess import to_input

    torch.manual_seed(0)
    model = FaceCycle(get_config("tiny").replace(detail_px=24, gray_input=True)).eval()
    save_checkpoint(model, tmp_path / "m.safetensors")
    back = load_checkpoint(tmp_path / "m.safetensors")
    assert back.config.detail_px == 24 and back.codegeneration.lowpass
    man = export_onnx(back, tmp_path / "onnx")
    assert man["config"]["detail_px"] == 24
    rng = np.random.default_rng(0)
    crops = np.stack([(np.stack([_face_like(32, s)] * 3, -1) * 255).astype(np.uint8) for s in range(3)])
    crops = np.clip(crops.astype(np.int16) + rng.integers(-20, 21, crops.shape), 0, 255).astype(np.uint8)
    x = to_input(crops)
    sess = ort.InferenceSession(str(tmp_path / "onnx" / "analyze.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["feature"], {"image": x})[0]
    with torch.no_grad():
        ref = back.analyze(torch.from_numpy(x)).feature.numpy()
        off = FaceCycle(back.config.replace(detail_px=0)).eval()
        off.load_state_dict(back.state_dict())
        unfiltered = off.analyze(torch.from_numpy(x)).feature.numpy()
    assert float(np.abs(got - ref).max()) <= 1e-4
    assert float(np.abs(got - unfiltered).max()) > 1e-3  # the graph does filter


def test_shipped_model_reads_at_48_px():
    """The default model's ``feature`` ignores 64-px detail; the same weights without ``detail_px`` do not; and
    its ``analyze`` graph (ONNX Runtime) computes the same feature as the torch model."""
    ort = pytest.importorskip("onnxruntime")
    from facecycle.checkpoint import load_checkpoint
    from facecycle.preprocess import to_input

    model = ROOT / "facecycle" / "assets" / "default"
    man = json.loads((model / "manifest.json").read_text())
    assert man["config"]["detail_px"] == 48
    soft = load_checkpoint(model / "model.safetensors").float().eval()
    assert soft.config.detail_px == 48
    sharp = FaceCycle(soft.config.replace(detail_px=0), modules=soft.module_names).eval()
    sharp.load_state_dict(soft.state_dict())
    g = (0.2 + 0.6 * np.stack([_face_like()] * 3, -1)) * 255  # mid-grey range: the pattern is never clipped
    imgs = [np.rint(v).astype(np.uint8) for v in (g, g + 10 * _checker(64)[..., None])]
    x = [torch.from_numpy(to_input(v)) for v in imgs]
    with torch.no_grad():
        def change(m):
            f0, f1 = m.features(x[0]), m.features(x[1])
            return float((f0 - f1).norm() / f0.norm())
        d_soft, d_sharp = change(soft), change(sharp)
        ref = soft.analyze(x[1]).feature.numpy()
    assert d_soft < 0.25 * d_sharp, (d_soft, d_sharp)
    sess = ort.InferenceSession(str(model / "analyze.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["feature"], {"image": to_input(imgs[1])})[0]
    # the graph was exported from the run's fp32 weights, the checkpoint keeps them in fp16: 1e-3 measured
    assert float(np.abs(got - ref).max()) <= 3e-3 * float(np.abs(ref).max())


def test_ship_default_sets_detail_px_and_takes_identity_from_another_checkpoint(tmp_path):
    """``scripts/ship_default.py --detail-px --identity-from``: a motion-stage run shipped with a donor's identity
    modules and the 48-px-style reading; the graphs carry both."""
    import subprocess
    import sys

    ort = pytest.importorskip("onnxruntime")
    from safetensors.torch import save_file

    from facecycle.checkpoint import save_checkpoint
    from facecycle.model import MOTION_MODULES
    from facecycle.preprocess import to_input

    torch.manual_seed(0)
    cfg = get_config("tiny").replace(gray_input=True)
    motion = FaceCycle(cfg, modules=MOTION_MODULES).eval()
    donor = FaceCycle(cfg.replace(name="other-name")).eval()  # another run of the same sizes, identity trained
    save_checkpoint(motion, tmp_path / "motion.safetensors")
    save_checkpoint(donor, tmp_path / "donor.safetensors")
    head = {"fc.weight": torch.randn(7, cfg.feature_dim), "fc.bias": torch.zeros(7)}
    save_file(head, str(tmp_path / "head.safetensors"))
    out = tmp_path / "shipped"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_default.py"), "--checkpoint",
                        str(tmp_path / "motion.safetensors"), "--head", str(tmp_path / "head.safetensors"),
                        "--identity-from", str(tmp_path / "donor.safetensors"), "--feature-flip", "--detail-px", "24",
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["detail_px"] == 24 and man["config"]["feature_flip"] is True
    assert "identity" in man["graphs"]
    crops = (np.stack([np.stack([_face_like(32, s)] * 3, -1) for s in range(2)]) * 255).astype(np.uint8)
    x = to_input(crops)
    def run(graph, name):
        sess = ort.InferenceSession(str(out / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
        return sess.run([name], {"image": x})[0]

    ident, feat = run("identity", "identity"), run("analyze", "feature")
    with torch.no_grad():
        np.testing.assert_allclose(ident, donor.identity(torch.from_numpy(x)).numpy(), atol=1e-4)
        read = FaceCycle(cfg.replace(feature_flip=True, detail_px=24), modules=MOTION_MODULES).eval()
        read.load_state_dict(motion.state_dict())
        np.testing.assert_allclose(feat, read.features(torch.from_numpy(x)).numpy(), atol=1e-4)
    # a donor of other sizes is refused with one line
    save_checkpoint(FaceCycle(cfg.replace(code_dim=8)).eval(), tmp_path / "bad.safetensors")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ship_default.py"), "--checkpoint",
                        str(tmp_path / "motion.safetensors"), "--head", str(tmp_path / "head.safetensors"),
                        "--identity-from", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "sizes differ" in r.stderr and "Traceback" not in r.stderr
