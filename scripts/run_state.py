#!/usr/bin/env python3
"""Copy a semi-supervised training run into a compact, committable form (and back is just --resume).

``python scripts/run_state.py RUN DEST`` copies RUN/last.safetensors and RUN/head.safetensors
as they are (fp32) and RUN/state.safetensors with the Adam moments cast to bfloat16 (half the
bytes; PyTorch casts them back to the parameters' dtype when the optimizer loads them), plus
RUN/log.csv, and the modules a refit trains beside the model where the run has them
(``disc.safetensors``: the realism term's discriminator; ``critic_online.safetensors``: a critic that keeps
learning; ``teacher.safetensors``: the starting model of a two-pass distillation), as they are.
``facecycle train --stage semisup --out DEST --resume`` then continues the run —
not bit-exactly (the moments lost precision), which the log notes.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere


def main() -> int:
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    run, dest = Path(sys.argv[1]), Path(sys.argv[2])
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("last.safetensors", "head.safetensors", "log.csv"):
        shutil.copy2(run / name, dest / name)
    # a refit's side modules and distillation target, when it has them (their trainer's own file names)
    from facecycle.train.critic import OnlineCritic
    from facecycle.train.realism import Realism
    from facecycle.train.semisup import TEACHER_FILE

    for name in (Realism.FILE, OnlineCritic.FILE, TEACHER_FILE):
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    with safe_open(str(run / "state.safetensors"), framework="pt") as f:
        meta = f.metadata()
        t = {k: (f.get_tensor(k).to(torch.bfloat16) if k.endswith(("exp_avg", "exp_avg_sq")) else f.get_tensor(k))
             for k in f.keys()}
    save_file(t, str(dest / "state.safetensors"), metadata=meta)
    total = sum(p.stat().st_size for p in dest.iterdir())
    print(f"{dest}: {total / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
