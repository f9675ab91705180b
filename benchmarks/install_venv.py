"""Measure a fresh base install: ``python -m venv`` + ``pip install SRC`` (no pip cache), then the venv's size.

Usage: ``python benchmarks/install_venv.py SRC --json OUT.json [--label before]``

SRC is anything pip installs (a checkout folder, a wheel, ``git+file://...``). Written to the JSON:
install seconds (pip only, venv creation and the pip self-upgrade excluded), venv size in MB (du, 1 MB = 2**20
bytes), the installed distributions, which of them provide a top-level ``cv2`` package, whether torch came
in, and the 15 largest site-packages entries. Downloads come from the configured index, so the time includes
the network of the machine it ran on (recorded under ``host``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _du_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return round(total / 2**20, 1)


_PROBE = r"""
import json, importlib.metadata as md, site, os
sp = site.getsitepackages()[0]
cv2 = sorted({d.metadata['Name'] for d in md.distributions()
              if any(str(f).split('/')[0] == 'cv2' for f in (d.files or []))})
sizes = []
for n in os.listdir(sp):
    s = 0
    for r, _, fs in os.walk(os.path.join(sp, n)):
        s += sum(os.path.getsize(os.path.join(r, f)) for f in fs if not os.path.islink(os.path.join(r, f)))
    sizes.append((round(s / 2**20, 1), n))
print(json.dumps({"dists": sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions()),
                  "cv2_providers": cv2, "largest_mb": sorted(sizes, reverse=True)[:15]}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("--json", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--keep", default=None, metavar="DIR", help="create the venv here and keep it")
    a = ap.parse_args()
    venv = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="fc_venv_"))
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=False)
    empty = _du_mb(venv)
    t0 = time.perf_counter()
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-cache-dir", "-q", a.src], capture_output=True,
                       text=True)
    secs = time.perf_counter() - t0
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return r.returncode
    probe = json.loads(subprocess.run([str(py), "-c", _PROBE], capture_output=True, text=True,
                                      check=True).stdout)
    out = {
        "benchmark": "fresh-venv base install", "label": a.label, "src": a.src,
        "command": f"python -m venv V && V/bin/pip install --no-cache-dir {a.src}",
        "python": platform.python_version(), "host": {"cpus": os.cpu_count(), "machine": platform.machine(),
                                                       "load_avg_before": [round(x, 2) for x in os.getloadavg()]},
        "install_s": round(secs, 1), "venv_mb": _du_mb(venv), "venv_mb_empty": empty,
        "torch_installed": any(d.lower().startswith("torch==") for d in probe["dists"]), **probe,
    }
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("label", "install_s", "venv_mb", "cv2_providers", "torch_installed")}))
    if not a.keep:
        shutil.rmtree(venv, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
