"""Shared fixtures: paths into ../shared (skipped cleanly where absent), tiny models."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACECYCLE_SHARED", ROOT.parent / "shared"))
VIDEOS = SHARED / "data" / "videos"
MODELS = SHARED / "models"
FER = SHARED / "data" / "fer2013"


def pytest_addoption(parser):
    parser.addoption("--cuda", action="store_true", default=False, help="also run device tests on CUDA")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); real-data tests skipped")
    return SHARED


@pytest.fixture(scope="session")
def videos_dir(shared_dir) -> Path:
    if not VIDEOS.is_dir():
        pytest.skip(f"{VIDEOS} is absent")
    return VIDEOS


def shared_video(name: str) -> Path:
    p = VIDEOS / name
    if not p.is_file():
        pytest.skip(f"{p} is absent (../shared not mounted)")
    return p


@pytest.fixture(scope="session")
def official_layout(shared_dir) -> dict:
    import json

    p = shared_dir / "reference" / "facecycle_official_state_dict.json"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    return json.loads(p.read_text())


def _devices(config):
    devs = ["cpu"]
    if config.getoption("--cuda"):
        devs.append("cuda")
    return devs


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", _devices(metafunc.config))


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    """A tiny random model exported to ONNX: (model, export_dir)."""
    torch = pytest.importorskip("torch")
    from facecycle.export import export_onnx
    from facecycle.model import FaceCycle

    torch.manual_seed(0)
    model = FaceCycle("tiny").eval()
    out = tmp_path_factory.mktemp("tiny_export")
    export_onnx(model, out, source="random:tiny")
    return model, out
