"""Trainer state files: optimizer state + step + options, as safetensors (no pickle).

Tensors are named ``opt.<param index>.<key>``; ``meta`` (JSON in the
safetensors metadata) holds the step, the optimizer's param groups and
anything else the trainer needs to continue exactly.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..errors import ModelError

__all__ = ["save_state", "load_state", "read_meta", "changed_options", "after_step", "save_module", "load_module",
           "SideModule", "FrozenSide"]

log = logging.getLogger(__name__)


def after_step(step: int, ckpt_every: int, save: Callable[[], None], started: float,
               max_seconds: Optional[float]) -> bool:
    """The end of a training step, shared by the trainers: ``save()`` every ``ckpt_every`` steps (0 = never);
    True when ``max_seconds`` have passed since ``started`` (``time.perf_counter()``), i.e. stop now
    (the caller's ``finally`` saves)."""
    if ckpt_every and step % ckpt_every == 0:
        save()
    if max_seconds is not None and time.perf_counter() - started > max_seconds:
        log.info("time limit reached at step %d", step)
        return True
    return False


def save_state(path: Path, optimizer: Optional[torch.optim.Optimizer], meta: Dict[str, Any],
               extra: Dict[str, torch.Tensor] | None = None) -> None:
    """Write ``optimizer``'s state (None: none), ``meta`` and ``extra`` tensors to ``path`` (atomically)."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict() if optimizer is not None else {"state": {}, "param_groups": []}
    tensors: Dict[str, torch.Tensor] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"opt.{idx}.{k}"] = t.detach().cpu().clone().contiguous()
    for k, v in (extra or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().clone().contiguous()
    md = {"meta": json.dumps(meta), "param_groups": json.dumps(sd["param_groups"])}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=md)
    tmp.replace(path)


def load_state(path: Path, optimizer: Optional[torch.optim.Optimizer]
               ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Restore the optimizer from ``path`` (None: none to restore); returns (meta, extra tensors)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types (SafetensorError) for a damaged file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: unreadable training state ({why}); the run cannot be resumed exactly: start a "
                         "new --out, e.g. with --init RUN/last.safetensors") from None
    state: Dict[int, Dict[str, torch.Tensor]] = {}
    extra: Dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.startswith("extra."):
            extra[name[6:]] = t
            continue
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = t
    if optimizer is not None:
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(md["param_groups"])})
    if any(t.dtype == torch.bfloat16 for k, t in tensors.items() if k.endswith(("exp_avg", "exp_avg_sq"))):
        log.warning("%s: the optimizer's moments were stored as bfloat16 (scripts/run_state.py, to commit the run): "
                    "the run continues close to, not bit-exactly as, the run that saved it", path)
    return json.loads(md["meta"]), extra


#: options that change no number of a run (where it runs, how often it saves or reports)
NEUTRAL_OPTIONS = ("threads", "device", "ckpt_every", "sample_every", "val_every")


def changed_options(saved: Dict[str, Any], now: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(name, saved value, value now)`` of every option a resumed run was saved with that differs now (those of
    :data:`NEUTRAL_OPTIONS` aside): a resume with other options is no exact continuation, and the run's saved
    options would then say only the new ones. Lists and tuples compare alike (a JSON round trip)."""
    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return [(k, saved[k], now[k]) for k in sorted(set(saved) & set(now))
            if k not in NEUTRAL_OPTIONS and norm(saved[k]) != norm(now[k])]


def read_meta(path: Path) -> Dict[str, Any]:
    """The ``meta`` of a state file (step, options, ...) without restoring an optimizer."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["meta"])


def save_module(path: Path, module: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer], step: int) -> None:
    """A module kept beside a run (a discriminator, an adapting critic, a frozen copy): its weights and optimizer
    (None: a module that does not train) in one file."""
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    save_state(path, optimizer, {"step": step}, extra=sd)


def load_module(path: Path, module: torch.nn.Module, optimizer: Optional[torch.optim.Optimizer]) -> Optional[int]:
    """Restore what :func:`save_module` wrote; returns its step (None when ``path`` is absent)."""
    if not Path(path).is_file():
        return None
    meta, sd = load_state(path, optimizer)
    module.load_state_dict(sd)
    return int(meta["step"])


class SideModule:
    """A module kept beside a run's model (the realism discriminator, an adapting critic, with their own
    optimizers; a frozen copy, ``opt`` None), saved in the run directory as ``FILE`` (:func:`save_module`) so
    that a resumed run continues with it. ``REQUIRED``: a resume without the file is an error, not a fresh start."""

    FILE = "side.safetensors"
    REQUIRED = False
    module: torch.nn.Module
    opt: Optional[torch.optim.Optimizer] = None

    def save(self, run: Path, step: int) -> None:
        save_module(Path(run) / self.FILE, self.module, self.opt, step)

    def load(self, run: Path) -> Optional[int]:
        """Restore from ``run`` if it holds ``FILE``; returns its step (None when absent)."""
        return load_module(Path(run) / self.FILE, self.module, self.opt)


class FrozenSide(SideModule):
    """A frozen module a run needs to resume (a distillation's starting model), saved as ``file``."""

    REQUIRED = True

    def __init__(self, module: torch.nn.Module, file: str) -> None:
        self.module = module
        self.FILE = file
