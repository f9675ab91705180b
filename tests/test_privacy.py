"""What the tool leaves on a user's machine besides its outputs: ONNX Runtime's telemetry stays off.

ONNX Runtime >= 1.29 on Linux starts telemetry when it is imported (a device id and an event queue under
``~/.cache/Microsoft``: the Python path, OS, CPU, memory, its sessions' model names and hashes), unless
``ORT_DISABLE_TELEMETRY`` is set then. ``facecycle`` sets it (``setdefault``: a user's own value wins) before any of
our modules imports ONNX Runtime.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

RUN = """
import numpy as np
from realtime import Analyzer
a = Analyzer()  # the embedded default model and detector, on ONNX Runtime
a.analyze_image(np.zeros((120, 160, 3), np.uint8))
import onnxruntime
print(onnxruntime.__version__)
"""


def _run(tmp_path: Path, name: str, **env: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    clean = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    proc = subprocess.run([sys.executable, "-c", RUN], env={**clean, "HOME": str(home), **env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return home / ".cache" / "Microsoft"


def test_onnx_runtime_telemetry_is_off_unless_the_user_turns_it_on(tmp_path):
    ours = _run(tmp_path, "ours")
    assert not ours.exists(), sorted(str(p.relative_to(ours)) for p in ours.rglob("*"))
    # the user's own value wins; where this ONNX Runtime has telemetry, its files then appear (the check can see them)
    theirs = _run(tmp_path, "theirs", ORT_DISABLE_TELEMETRY="0")
    if not theirs.exists():
        pytest.skip("this ONNX Runtime writes no telemetry files even when allowed (older than 1.29, or not Linux)")
    assert any(p.is_file() for p in theirs.rglob("*"))


@pytest.mark.parametrize("package", ["facecycle", "realtime", "engines", "ui"])
def test_importing_any_of_our_packages_before_onnx_runtime_keeps_it_off(tmp_path, package):
    """Review h82: ``realtime`` and ``ui`` import their submodules lazily and never imported ``facecycle``:
    ``import realtime, onnxruntime``, as the README advises, started the telemetry."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    code = f"import {package}, onnxruntime, os; print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(home)}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr[-1000:]
    assert not (home / ".cache" / "Microsoft").exists()


def test_the_variable_is_set_on_import_and_a_users_value_is_kept():
    code = "import os, facecycle; print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "ORT_DISABLE_TELEMETRY": "0"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0"
