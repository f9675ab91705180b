"""The FaceCycle modules: published sizes, shapes, warping identities, inference surface."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from facecycle.config import get_config, list_configs  # noqa: E402
from facecycle.model import FaceCycle  # noqa: E402
from facecycle.nn import backflow, flow_intensity, warp  # noqa: E402

PAPER_COUNTS = {
    "codegeneration": 4_240_000, "exptoflow": 2_996_544, "Swap_Generator": 13_409_475,
    "idcodegen": 4_240_000, "Swap_Norm": 10_014_275,
}


def test_paper_parameter_counts_match_publication():
    assert FaceCycle("paper").parameter_counts() == PAPER_COUNTS


def test_cli_model_info_json_gives_published_counts():
    out = subprocess.run([sys.executable, "-m", "facecycle", "model", "info", "--config", "paper", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["parameters"] == PAPER_COUNTS


def test_state_dict_names_and_shapes_match_official_layout(official_layout):
    sd = FaceCycle("paper").state_dict()
    for module, params in official_layout["modules"].items():
        for name, shape in params.items():
            assert tuple(sd[f"{module}.{name}"].shape) == tuple(shape), f"{module}.{name}"
    n_official = sum(len(p) for p in official_layout["modules"].values())
    assert len(sd) == n_official


@pytest.mark.parametrize("name", list_configs())
def test_every_config_runs(name, device):
    cfg = get_config(name)
    if cfg.width >= 1.0 and name != "tiny" and device == "cpu" and cfg.image_size > 64:
        pytest.skip("128 px paper config is slow on CPU; the 64 px one covers the code")
    torch.manual_seed(0)
    m = FaceCycle(cfg).eval().to(device)
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size, device=device)
    with torch.no_grad():
        a = m.analyze(x)
        assert a.feature.shape == (2, cfg.feature_dim)
        assert a.code.shape == (2, cfg.code_dim)
        assert a.flow.shape == a.backflow.shape == (2, 2, 16, 16)
        assert a.intensity.shape == (2,)
        assert float(a.code.abs().max()) < 1.0 and float(a.flow.abs().max()) <= 1.0
        assert m.neutralize(x).shape == x.shape
        assert m.transfer(x, x.flip(0)).shape == x.shape
        assert m.identity(x).shape == (2, cfg.code_dim)
        assert m.swap_identity(x, x.flip(0)).shape == x.shape


def test_paper_feature_is_2048_and_6272_at_100px():
    assert get_config("paper").feature_dim == 2048
    assert get_config("paper").replace(image_size=100).feature_dim == 6272


def test_zero_flow_warps_to_identity(device):
    x = torch.rand(2, 3, 20, 24, device=device)
    y = warp(x, torch.zeros(2, 2, 16, 16, device=device))
    assert torch.allclose(x, y, atol=1e-5)


def test_constant_flow_shifts_and_backflow_inverts(device):
    # a flow of +2/(W-1) in x samples one pixel to the right
    w = 33
    x = torch.arange(w, dtype=torch.float32, device=device).repeat(1, 1, w, 1)
    flow = torch.zeros(1, 2, 16, 16, device=device)
    flow[:, 0] = 2.0 / (w - 1)
    y = warp(x, flow)
    assert torch.allclose(y[..., :-1], x[..., 1:], atol=1e-4)
    b = backflow(flow)  # sampled inside the grid it is the negated flow (the last column reads outside)
    assert torch.allclose(b[..., :-1], -flow[..., :-1], atol=1e-6)


def test_flow_intensity_definition():
    flow = torch.zeros(3, 2, 16, 16)
    flow[1, 0] = 0.1  # 0.1 grid units = 5 % of the crop side
    flow[2, 0], flow[2, 1] = 0.06, 0.08
    i = flow_intensity(flow)
    assert torch.allclose(i, torch.tensor([0.0, 0.05, 0.05]), atol=1e-5)


def test_eval_is_deterministic_and_train_adds_noise():
    torch.manual_seed(0)
    m = FaceCycle("tiny", modules=("codegeneration", "exptoflow", "Swap_Generator"))
    x = torch.randn(2, 3, 32, 32)
    flow = torch.rand(2, 2, 16, 16) * 0.2
    m.eval()
    assert torch.equal(m.Swap_Generator(x, flow), m.Swap_Generator(x, flow))
    m.train()
    assert not torch.equal(m.Swap_Generator(x, flow), m.Swap_Generator(x, flow))


def test_motion_model_refuses_identity_with_clear_error():
    m = FaceCycle("tiny", modules=("codegeneration", "exptoflow", "Swap_Generator"))
    with pytest.raises(RuntimeError, match="identity"):
        m.identity(torch.zeros(1, 3, 32, 32))


def test_package_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import facecycle, facecycle.preprocess, facecycle.config\n"
            "print(facecycle.get_config('paper').feature_dim)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2048"
