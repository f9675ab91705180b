"""scripts/average_refits.py: the mean of the tensors that differ between checkpoints of one model."""
from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="averaging checkpoints needs torch (pip install torch)")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from .conftest import ROOT  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "average_refits.py"), *args],
                          capture_output=True, text=True, timeout=120)


def test_averages_only_what_differs_and_keeps_the_first_runs_metadata_and_head(tmp_path):
    shared = torch.arange(6, dtype=torch.float16).view(2, 3)
    steps = torch.tensor([3], dtype=torch.int64)
    for i, (g, m) in enumerate([(1.0, 4.0), (3.0, 8.0), (5.0, 0.0)]):
        d = tmp_path / f"run{i}"
        d.mkdir()
        save_file({"Swap_Generator.w": torch.full((2, 2), g, dtype=torch.float16),
                   "exptoflow.b": torch.full((3,), m), "codegeneration.w": shared, "steps": steps},
                  str(d / "last.safetensors"), metadata={"config": f"run{i}"})
    (tmp_path / "run0" / "head.safetensors").write_bytes(b"head of run0")
    r = _run("--out", str(tmp_path / "soup"), *[str(tmp_path / f"run{i}" / "last.safetensors") for i in range(3)])
    assert r.returncode == 0, r.stderr
    assert "Swap_Generator, exptoflow" in r.stdout
    out = load_file(str(tmp_path / "soup" / "last.safetensors"))
    assert torch.equal(out["Swap_Generator.w"], torch.full((2, 2), 3.0, dtype=torch.float16))
    assert torch.allclose(out["exptoflow.b"], torch.full((3,), 4.0))
    assert torch.equal(out["codegeneration.w"], shared) and torch.equal(out["steps"], steps)
    with safe_open(str(tmp_path / "soup" / "last.safetensors"), "pt") as f:
        assert f.metadata() == {"config": "run0"}
    assert (tmp_path / "soup" / "head.safetensors").read_bytes() == b"head of run0"


def test_checkpoints_of_different_models_are_refused_in_one_line(tmp_path):
    save_file({"a": torch.zeros(2)}, str(tmp_path / "one.safetensors"))
    save_file({"a": torch.zeros(3)}, str(tmp_path / "two.safetensors"))
    r = _run("--out", str(tmp_path / "soup"), str(tmp_path / "one.safetensors"), str(tmp_path / "two.safetensors"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not of one model" in r.stderr
    assert not (tmp_path / "soup").exists()
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    for bad in (tmp_path / "missing.safetensors", tmp_path / "junk.safetensors"):
        r = _run("--out", str(tmp_path / "soup"), str(tmp_path / "one.safetensors"), str(bad))
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "cannot read" in r.stderr, r.stderr
