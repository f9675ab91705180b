#!/usr/bin/env python3
"""Training throughput of the expression encoder + a linear head, float32 against bfloat16 autocast.

One process, both modes alternated per width; 128 random 64-px images per step, AdamW; the median of 5 timed
steps after a warm-up step. Writes JSON: ``python scripts/bench_train_amp.py OUT.json``.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from facecycle.config import get_config
    from facecycle.nn import Encoder

    torch.set_num_threads(2)
    rows = []
    for w in (0.25, 0.5):
        for bf in (False, True):
            cfg = get_config("rt64").replace(encoder_width=w)
            enc = Encoder(cfg)
            head = torch.nn.Linear(cfg.feature_dim, 7)
            opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), 1e-3)
            x, y = torch.randn(128, 3, 64, 64), torch.randint(0, 7, (128,))
            ts = []
            for _ in range(6):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf):
                    loss = torch.nn.functional.cross_entropy(head(enc.features(x)).float(), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                ts.append(time.perf_counter() - t)
            med = statistics.median(ts[1:])
            rows.append({"encoder_width": w, "bf16_autocast": bf, "images_per_s": round(128 / med, 1)})
            print(rows[-1], flush=True)
    for w in (0.25, 0.5):
        a, b = (r["images_per_s"] for r in rows if r["encoder_width"] == w)
        rows.append({"encoder_width": w, "speedup_bf16": round(b / a, 2)})
    out = {"benchmark": "train_amp", "threads": 2, "batch": 128, "rows": rows, "torch": torch.__version__,
           "machine": platform.processor() or platform.machine()}
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
