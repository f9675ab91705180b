"""Trainer state files: optimizer state + step + options, as safetensors (no pickle).

Tensors are named ``opt.<param index>.<key>``; ``meta`` (JSON in the
safetensors metadata) holds the step, the optimizer's param groups and
anything else the trainer needs to continue exactly.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ..errors import ModelError
from ..files import fsync_dir, fsync_file
from ..jsonvalues import is_finite

__all__ = ["save_state", "load_state", "read_meta", "check_meta", "MAX_STEP", "changed_options", "after_step",
           "save_module", "load_module", "SideModule", "FrozenSide", "save_set", "recover_set", "file_step",
           "check_steps", "fsync_file", "option_changes", "PENDING"]

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
    fsync_file(tmp)  # the rename must not land on disk before the file's bytes do (a power cut: an empty state)
    tmp.replace(path)
    fsync_dir(path.parent)


#: the folder of a run where a save writes its whole set of files before any replaces the run's own
PENDING = ".saving"
_COMPLETE = "COMPLETE"


def _commit(out: Path, pending: Path) -> None:
    for f in sorted(pending.iterdir()):
        if f.name != _COMPLETE and f.is_file():
            f.replace(out / f.name)
    fsync_dir(out)
    (pending / _COMPLETE).unlink()
    shutil.rmtree(pending, ignore_errors=True)


def save_set(out: Path, write: Callable[[Path], None]) -> None:
    """Save a run's files (weights, head, state, side modules) as one set: ``write(folder)`` writes them all into
    ``out/.saving/``; once all are there (flushed) a marker says so and they replace the run's files. A kill while
    they are written leaves the run's previous set whole (the partial one is dropped on resume); a kill while they
    replace it is finished on resume (:func:`recover_set`). The run's layout stays as it was (RUN/last.safetensors,
    RUN/state.safetensors, ...)."""
    out = Path(out)
    pending = out / PENDING
    if pending.exists():
        shutil.rmtree(pending)
    pending.mkdir(parents=True)
    write(pending)
    for f in pending.iterdir():
        fsync_file(f)
    marker = pending / _COMPLETE
    marker.write_text("all files of this save are written\n", encoding="utf-8")
    fsync_file(marker)
    fsync_dir(pending)
    _commit(out, pending)


def recover_set(out: Path) -> None:
    """Finish or drop a save that a kill cut short (:func:`save_set`): a complete set replaces the run's files, a
    partial one is removed (the run's files are the previous, whole set)."""
    pending = Path(out) / PENDING
    if not pending.is_dir():
        return
    if (pending / _COMPLETE).is_file():
        log.warning("%s: a save was cut short while it replaced the run's files; finishing it", out)
        _commit(Path(out), pending)
    else:
        log.warning("%s: a save was cut short before it was complete; the run continues from its previous save", out)
        shutil.rmtree(pending, ignore_errors=True)


def file_step(path: Path) -> Optional[int]:
    """The ``step`` a checkpoint or head file's metadata records (None: none recorded, e.g. a head saved before
    heads recorded it)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
    except Exception:  # noqa: BLE001 - its reader says what is wrong with it
        return None
    v = md.get("step")
    return int(v) if isinstance(v, str) and v.isdigit() else None


def check_steps(steps: Dict[Path, Optional[int]]) -> None:
    """Refuse (one line naming the files and their steps) a run whose files were saved at different steps: the
    weights of one step with the optimizer state of another trained on silently. None: not recorded."""
    known = {p: s for p, s in steps.items() if s is not None}
    if len(set(known.values())) > 1:
        raise ModelError("the run's files were saved at different steps (" + ", ".join(
            f"{p} at step {s}" for p, s in known.items()) + f"): {_NO_RESUME}")


#: the largest step a state file may record: more is damage (a billion steps is no run this tool trains), and a
#: step past it (1e20 read back as a number) was taken as it came
MAX_STEP = 10**9

_NO_RESUME = "the run cannot be resumed exactly: start a new --out, e.g. with --init RUN/last.safetensors"


def _damaged(path: Path, why: str) -> ModelError:
    return ModelError(f"{path}: damaged training state ({why}); {_NO_RESUME}")


def check_meta(path: Path, meta: Any) -> Dict[str, Any]:
    """``meta`` as read from ``path``'s state, checked before anything uses it: a JSON object whose ``step`` is an
    integer in 0 .. :data:`MAX_STEP`, ``wall_s`` (where present) a finite number >= 0 and ``options`` (where present)
    an object; else a :class:`~facecycle.errors.ModelError` naming the file. A list, a text step or a NaN was an
    internal error, and a negative step trained from there over the run's checkpoint and log."""
    if not isinstance(meta, dict):
        raise _damaged(path, f"its meta is a JSON {type(meta).__name__}, not an object")
    if "step" not in meta:
        raise _damaged(path, "no step in its meta")
    step = meta["step"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise _damaged(path, f"step {json.dumps(step)} is not a step number (0 to {MAX_STEP})")
    if "wall_s" in meta and not (is_finite(meta["wall_s"]) and meta["wall_s"] >= 0):
        raise _damaged(path, f"wall_s {json.dumps(meta['wall_s'])} is not a number of seconds")
    if "options" in meta and not isinstance(meta["options"], dict):
        raise _damaged(path, "its options are not a JSON object")
    return meta


def _metadata(path: Path, md: Any, key: str) -> Any:
    """The JSON under ``key`` of a state file's metadata (``md``: None where the file has none)."""
    if not isinstance(md, dict) or key not in md:
        raise _damaged(path, f"no {key} in its metadata")
    try:
        return json.loads(md[key])
    except ValueError as e:
        raise _damaged(path, f"its {key} is not JSON: {str(e).splitlines()[0]}") from None


def _open(path: Path, tensors: bool) -> Tuple[Any, Dict[str, torch.Tensor]]:
    """A state file's metadata and (with ``tensors``) tensors; one that safetensors cannot read is a ModelError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata(), ({k: f.get_tensor(k) for k in f.keys()} if tensors else {})
    except Exception as e:  # noqa: BLE001 - safetensors raises its own types (SafetensorError) for a damaged file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: unreadable training state ({why}); {_NO_RESUME}") from None


def load_state(path: Path, optimizer: Optional[torch.optim.Optimizer]
               ) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor]]:
    """Restore the optimizer from ``path`` (None: none to restore); returns (meta, extra tensors). The whole file
    is checked (:func:`check_meta`, tensor names, the optimizer's groups and moments) before it is used: a damaged
    one is a :class:`~facecycle.errors.ModelError` naming it, and nothing is written."""
    md, tensors = _open(path, True)
    meta = check_meta(path, _metadata(path, md, "meta"))
    state: Dict[int, Dict[str, torch.Tensor]] = {}
    extra: Dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.startswith("extra."):
            extra[name[6:]] = t
            continue
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "opt" or not parts[1].isdigit():
            raise _damaged(path, f"a tensor named {name!r}, neither opt.<index>.<key> nor extra.<name>")
        state.setdefault(int(parts[1]), {})[parts[2]] = t
    if optimizer is not None:
        groups = _metadata(path, md, "param_groups")
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise _damaged(path, "its param_groups are not a JSON list of objects")
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
            raise _damaged(path, f"its optimizer state does not fit this run's ({str(e).splitlines()[0]})") from None
        # Adam's moments are used as they are: one of another size stopped the first step, after the resume
        for p, st in optimizer.state.items():
            bad = not torch.is_tensor(p) or any(torch.is_tensor(v) and v.dim() and v.shape != p.shape
                                                for v in st.values())
            if bad:
                raise _damaged(path, "its optimizer state does not fit this run's parameters")
    if any(t.dtype == torch.bfloat16 for k, t in tensors.items() if k.endswith(("exp_avg", "exp_avg_sq"))):
        log.warning("%s: the optimizer's moments were stored as bfloat16 (scripts/run_state.py, to commit the run): "
                    "the run continues close to, not bit-exactly as, the run that saved it", path)
    return meta, extra


#: options that change no number of a run (where it runs, how often it saves or reports)
NEUTRAL_OPTIONS = ("threads", "device", "ckpt_every", "sample_every", "val_every")

#: options a resume does not use: what the run started from (its saved weights replace it)
START_OPTIONS = ("init", "init_identity", "init_head", "init_motion")


def changed_options(saved: Dict[str, Any], now: Dict[str, Any]) -> List[Tuple[str, Any, Any]]:
    """``(name, saved value, value now)`` of every option a resumed run was saved with that differs now (those of
    :data:`NEUTRAL_OPTIONS` aside): a resume with other options is no exact continuation, and the run's saved
    options would then say only the new ones. Lists and tuples compare alike (a JSON round trip)."""
    def norm(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v

    return [(k, saved[k], now[k]) for k in sorted(set(saved) & set(now))
            if k not in NEUTRAL_OPTIONS and k not in START_OPTIONS and norm(saved[k]) != norm(now[k])]


def option_changes(meta: Dict[str, Any], now: Dict[str, Any], step: int) -> List[Dict[str, Any]]:
    """The run's record of resumes with other options: the saved ``meta["option_changes"]`` (a list, as saved; kept
    in every later save) plus, where :func:`changed_options` finds any now, ``{"step": step, "changed": {name:
    [saved value, value now]}}``. The saved ``options`` say only the latest values: this says from which step each
    held, so a run's provenance survives a resume with another learning rate or data."""
    old = meta.get("option_changes")
    history = [dict(h) for h in old if isinstance(h, dict)] if isinstance(old, list) else []
    changed = {k: [was, new] for k, was, new in changed_options(meta.get("options") or {}, now)}
    if changed:
        history.append({"step": int(step), "changed": changed})
    return history


def read_meta(path: Path) -> Dict[str, Any]:
    """The ``meta`` of a state file (step, options, ...) without restoring an optimizer; checked as
    :func:`load_state` checks it."""
    md, _ = _open(path, False)
    return check_meta(path, _metadata(path, md, "meta"))


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
    try:
        module.load_state_dict(sd)
    except RuntimeError as e:  # other names or sizes: it was an internal error
        raise _damaged(path, f"its weights do not fit the module ({str(e).strip().splitlines()[0]})") from None
    return meta["step"]  # checked: an integer >= 0


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
