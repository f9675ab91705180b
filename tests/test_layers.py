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


def test_lazy_package_names_are_real_to_type_checkers_and_at_run_time():
    """Probe finding: `realtime` and `facecycle` defined a module __getattr__ typed Any, so mypy and pyright took
    any imported name, a typo (`from realtime import Analyser`) too, as Any, and the model API went unchecked. The
    __getattr__ is now hidden from type checkers (``if not TYPE_CHECKING``), which see TYPE_CHECKING imports of
    every lazy name instead; at run time each name of ``__all__`` still resolves, and others raise."""
    import ast
    import importlib

    for pkg in ("realtime", "facecycle"):
        path = ROOT / pkg / "__init__.py"
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"]
        assert not top, f"{path}: a module-level __getattr__ visible to type checkers"
        guarded = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "not TYPE_CHECKING"
                   and "__getattr__" in ast.unparse(n)]
        assert guarded, f"{path}: no __getattr__ under `if not TYPE_CHECKING:`"
        checked = {a.asname or a.name for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) ==
                   "TYPE_CHECKING" for imp in n.body if isinstance(imp, ast.ImportFrom) for a in imp.names}
        mod = importlib.import_module(pkg)
        lazy = [name for name in mod.__all__ if name not in vars(mod)]
        assert set(lazy) <= checked, (pkg, sorted(set(lazy) - checked))  # every lazy name seen by type checkers
        if pkg == "realtime":
            for name in lazy:
                assert getattr(mod, name) is not None
        with pytest.raises(AttributeError):
            mod.Analyser  # noqa: B018 - a typo is no name
