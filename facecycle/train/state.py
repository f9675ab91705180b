"""Trainer state files: optimizer state + step + options, as safetensors (no pickle).

Tensors are named ``opt.<param index>.<key>``; ``meta`` (JSON in the
safetensors metadata) holds the step, the optimizer's param groups and
anything else the trainer needs to continue exactly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

__all__ = ["save_state", "load_state"]


def save_state(path: Path, optimizer: torch.optim.Optimizer, meta: Dict[str, Any],
               extra: Dict[str, torch.Tensor] | None = None) -> None:
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors: Dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt.{idx}.{k}"] = t.detach().cpu().clone().contiguous()
    for k, v in (extra or {}).items():
        tensors[f"extra.{k}"] = v.detach().clone().contiguous()
    md = {"meta": json.dumps(meta), "param_groups": json.dumps(sd["param_groups"])}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=md)
    tmp.replace(path)


def load_state(path: Path, optimizer: torch.optim.Optimizer) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Restore the optimizer from ``path``; returns (meta, extra tensors)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        md = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state: Dict[int, Dict[str, torch.Tensor]] = {}
    extra: Dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.startswith("extra."):
            extra[name[6:]] = t
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(md["param_groups"])})
    return json.loads(md["meta"]), extra
