"""The package layers (pyproject.toml, [tool.importlinter]): no package imports one above it, no import cycle
between the top-level packages (imports inside functions count), the old entry points still work."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytest.importorskip("importlinter", reason="import-linter is in the [test] extra")


def _lint(cwd) -> subprocess.CompletedProcess:
    code = "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_layer_contract_is_kept():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    """The check fails on a new cycle: a copy of the tree where the model layer reaches up into the pipeline."""
    import shutil

    for name in ("facecycle", "engines", "realtime", "ui", "facecycle_cli"):
        skip = shutil.ignore_patterns("*.onnx", "*.safetensors", "__pycache__")
        shutil.copytree(ROOT / name, tmp_path / name, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "facecycle" / "files.py", "a") as f:
        f.write("\n\ndef _reach_up():\n    from realtime.crops import crop_square  # noqa: F401\n")
    r = _lint(tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "facecycle is not allowed to import realtime" in r.stdout
    assert "facecycle.files -> realtime.crops" in r.stdout


def test_facecycle_analyzer_names_its_new_import():
    r = subprocess.run([sys.executable, "-c", "from facecycle import Analyzer"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == \
        "ImportError: facecycle.Analyzer moved: use `from realtime import Analyzer`"
    from facecycle import load_checkpoint  # noqa: F401 - still here (the model layer)
    from realtime import Analyzer  # noqa: F401


@pytest.mark.parametrize("module", ["facecycle", "facecycle_cli"])
def test_python_dash_m_runs_the_cli(module):
    r = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("facecycle "), r.stdout + r.stderr
