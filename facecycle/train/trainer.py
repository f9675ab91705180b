"""FaceCycle trainer: motion stage (E, M, G) and identity stage (I, N; E, M, G frozen).

A run directory holds::

    RUN/last.safetensors    model weights, our checkpoint format
    RUN/state.safetensors   optimizer state, step, options (see :mod:`.state`)
    RUN/log.csv             step, lr, loss terms, samples/s, wall time
    RUN/samples/step_XXXXXX.png   input / neutral / reconstruction / flow rows

Every step's data and noise derive from ``(seed, step)`` only (no hidden
iterator state), and the optimizer state is saved in full, so ``resume``
continues bit-exactly (same thread count, same machine).
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import FaceCycleConfig, get_config
from ..cpus import cap_threads
from ..errors import InputError, UsageError
from ..losses import PerceptualNet, identity_losses, motion_losses
from ..model import ALL_MODULES, IDENTITY_MODULES, MOTION_MODULES, FaceCycle
from ..preprocess import from_output
from ..terminal import stderr_is_terminal
from .runlog import RunLog
from .state import (
    after_step,
    changed_options,
    check_steps,
    file_step,
    load_state,
    option_changes,
    recover_set,
    save_set,
    save_state,
)
from .visual import flow_to_rgb, save_grid

__all__ = ["TrainOptions", "Trainer", "lr_at"]

log = logging.getLogger(__name__)

_VGG_FRONT = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")


@dataclass
class TrainOptions:
    """Everything that defines a run (saved in the state file)."""

    stage: str = "motion"
    config: str = "small"
    steps: int = 1000
    pairs: int = 16            # pairs per batch (the model sees 2·pairs images)
    lr: float = 2e-4
    warmup: float = 0.025      # fraction of steps at lr/5
    drop_at: float = 0.5       # fraction of steps after which lr/5
    betas: Optional[tuple] = None  # None: (0.5, 0.999) motion, (0.5, 0.9) identity (the paper's)
    seed: int = 0
    mirror_prob: float = 0.5
    fer_frac: float = 0.0
    vgg19_weights: Optional[str] = None
    init: Optional[str] = None  # motion checkpoint the identity stage starts from
    init_identity: Optional[str] = None  # identity stage: start I and N from this checkpoint's (same sizes)
    ckpt_every: int = 200
    sample_every: int = 250
    threads: int = 0
    perceptual_weight: Optional[float] = None  # None: 0.01 with ImageNet VGG weights, else 0 (off)
    width: Optional[float] = None              # override the config's width (a narrower CPU model)


def lr_at(step: int, o: TrainOptions) -> float:
    """Paper-shaped schedule over ``o.steps``: lr/5 warm-up, lr, then lr/5."""
    if step < o.warmup * o.steps:
        return o.lr / 5
    if step >= o.drop_at * o.steps:
        return o.lr / 5
    return o.lr


class Trainer:
    """Train one stage of FaceCycle into ``out``.

    Args:
        opts: the run's options.
        source: a :class:`facecycle.data.pairs.PairSource`.
        out: run directory.
    """

    def __init__(self, opts: TrainOptions, source, out: Path, resuming: bool = False) -> None:
        if opts.stage not in ("motion", "identity"):
            raise UsageError(f"--stage must be motion or identity, not {opts.stage!r}")
        self.o = opts
        self.src = source
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.out / "log.csv")
        mot = None
        # ``resuming`` a run that holds its weights: what it started from (--init, --init-identity) is not read
        # (resume() replaces every weight; a new machine need not have those files)
        from_run = resuming and self._resumable()
        if opts.stage == "identity":
            if from_run:
                mot = load_checkpoint(self.ckpt_path)
            elif not opts.init:
                raise UsageError("the identity stage needs --init MOTION_CHECKPOINT")
            else:
                mot = load_checkpoint(opts.init)
            self.cfg: FaceCycleConfig = mot.config  # the motion model defines the architecture
        else:
            try:
                self.cfg = get_config(opts.config)
            except ValueError as e:
                raise UsageError(str(e)) from None
            if opts.width is not None and opts.width != self.cfg.width:
                self.cfg = self.cfg.replace(name=f"{self.cfg.name}-w{opts.width:g}", width=opts.width)
        if opts.threads:
            torch.set_num_threads(cap_threads(opts.threads, "--threads"))
        torch.manual_seed(opts.seed)
        if mot is None:
            self.model = FaceCycle(self.cfg, modules=MOTION_MODULES)
            self.train_names = MOTION_MODULES
        else:
            self.model = FaceCycle(self.cfg, modules=ALL_MODULES)
            with torch.no_grad():
                for n in MOTION_MODULES:
                    getattr(self.model, n).load_state_dict(getattr(mot, n).state_dict())
                if opts.init_identity and not from_run:
                    idm = load_checkpoint(opts.init_identity)
                    if not idm.has_identity:
                        raise UsageError(f"{opts.init_identity} has no identity modules")
                    for n in IDENTITY_MODULES:
                        try:
                            getattr(self.model, n).load_state_dict(getattr(idm, n).state_dict())
                        except RuntimeError as e:
                            raise UsageError(f"{opts.init_identity}: {n} does not fit "
                                             f"({str(e).splitlines()[0]})") from None
            self.train_names = IDENTITY_MODULES
        frozen = [n for n in self.model.module_names if n not in self.train_names]
        for n in frozen:
            getattr(self.model, n).requires_grad_(False)
        vgg = None
        if opts.vgg19_weights:
            from ..nn.vgg import load_vgg19_front, read_vgg19_state

            # read once, weights-only and checked (a bad file: one CheckpointError line, exit 5), for every user
            vgg = read_vgg19_state(opts.vgg19_weights)
            for n in ("Swap_Generator", "Swap_Norm"):
                if n in self.model.module_names:
                    m = getattr(self.model, n)
                    load_vgg19_front(m, vgg, opts.vgg19_weights)
                    for layer in _VGG_FRONT:
                        getattr(m, layer).requires_grad_(False)
        pw = opts.perceptual_weight
        self.perceptual_weight = (0.01 if opts.vgg19_weights else 0.0) if pw is None else float(pw)
        self.pnet = (PerceptualNet(width=1.0 if opts.vgg19_weights else self.cfg.width, seed=opts.seed + 12345)
                     if self.perceptual_weight > 0 else None)
        if self.pnet is not None and vgg is not None:  # the paper's loss network: ImageNet VGG-19
            load_vgg19_front(self.pnet, vgg, opts.vgg19_weights)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        betas = opts.betas or ((0.5, 0.999) if opts.stage == "motion" else (0.5, 0.9))
        self.opt = torch.optim.Adam(self.params, lr=opts.lr, betas=tuple(betas))
        self.loss_fn = motion_losses if opts.stage == "motion" else identity_losses
        self.step = 0
        self.wall = 0.0
        self.option_changes: List[Dict[str, Any]] = []  # resumes with other options (state.option_changes)

    # ----------------------------------------------------------------- io
    @property
    def ckpt_path(self) -> Path:
        return self.out / "last.safetensors"

    @property
    def state_path(self) -> Path:
        return self.out / "state.safetensors"

    def _resumable(self) -> bool:
        recover_set(self.out)  # a save a kill cut short: finished or dropped
        return self.ckpt_path.is_file() and self.state_path.is_file()

    def save(self) -> None:
        """Save the weights and the state as one set (:func:`.state.save_set`)."""
        def write(d: Path) -> None:
            save_checkpoint(self.model, d / self.ckpt_path.name, extra={
                "stage": self.o.stage, "step": str(self.step), "train_options": json.dumps(asdict(self.o))})
            save_state(d / self.state_path.name, self.opt, {"step": self.step, "wall_s": self.wall,
                                                           "options": asdict(self.o),
                                                           "option_changes": self.option_changes})
        save_set(self.out, write)

    def resume(self) -> bool:
        """Load RUN/last + RUN/state if present; returns whether it resumed."""
        if not self._resumable():
            return False
        # every file is read and checked before any is written (the log trimmed, a checkpoint saved): a damaged one
        # is one line naming it, and the run stays as it was (a state saying step -5 trained over it from there)
        self.log.check()
        m = load_checkpoint(self.ckpt_path)
        if m.config.to_dict() != self.cfg.to_dict():
            raise InputError(f"{self.ckpt_path}: config {m.config.name!r} differs from --config {self.cfg.name!r}")
        meta, _ = load_state(self.state_path, self.opt)  # checked: step an integer >= 0, wall_s a number >= 0
        check_steps({self.ckpt_path: file_step(self.ckpt_path), self.state_path: meta["step"]})
        with torch.no_grad():
            for n in self.model.module_names:
                getattr(self.model, n).load_state_dict(getattr(m, n).state_dict())
        old = meta.get("options", {})
        for k, was, now in changed_options(old, asdict(self.o)):
            log.warning("resume: option %s was %r, now %r (the continuation will not be exact)", k, was, now)
        for k in ("init", "init_identity"):  # what the run started from, kept in its options (not read again)
            setattr(self.o, k, old.get(k))
        self.option_changes = option_changes(meta, asdict(self.o), meta["step"])
        self.step = meta["step"]
        self.wall = float(meta.get("wall_s", 0.0))
        self.log.trim(self.step)
        return True

    def sample_grid(self, x: torch.Tensor, res: Dict[str, torch.Tensor], n: int = 8) -> Path:
        mean, std = self.cfg.mean, self.cfg.std
        k = min(n, x.shape[0])
        idx = list(range(k // 2)) + list(range(x.shape[0] // 2, x.shape[0] // 2 + k - k // 2))
        rows = [from_output(x[idx].numpy(), mean, std), from_output(res["_neutral"][idx].numpy(), mean, std),
                from_output(res["_recon"][idx].numpy(), mean, std),
                flow_to_rgb(res["_flow"][idx].numpy(), x.shape[-1])]
        return save_grid(self.out / "samples" / f"step_{self.step:06d}.png", rows)

    # --------------------------------------------------------------- loop
    def train_step(self) -> Dict[str, torch.Tensor]:
        o = self.o
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step, o)
        torch.manual_seed((o.seed * 7_919 + self.step * 104_729 + 17) % (2 ** 63))
        x = self.src.batch(self.step, o.pairs, self.cfg.mean, self.cfg.std)
        self.model.train()
        for n in self.model.module_names:
            if n not in self.train_names:
                getattr(self.model, n).eval()
        res = self.loss_fn(self.model, x, self.pnet, self.cfg.mean, self.cfg.std, self.perceptual_weight)
        self.opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        self.opt.step()
        res["_x"] = x
        return res

    def fit(self, until: Optional[int] = None, max_seconds: Optional[float] = None,
            progress: bool = True, on_step: Optional[Callable[[int, Dict[str, float]], None]] = None,
            stop: Optional[Callable[[], bool]] = None) -> List[float]:
        """Train to step ``until`` (default ``opts.steps``) or until ``max_seconds`` pass; returns the losses.

        ``stop``: asked after every step (a signal came): True ends the run there, saved. An exception inside a
        step (a forced quit) saves nothing: the step's weights are half updated, so the run's last save stays.

        ``progress``: a bar on stderr where that is a terminal (into a log file its redraws were noise; ``log.csv``
        records every step)."""
        from tqdm import tqdm

        until = self.o.steps if until is None else until
        losses: List[float] = []
        t0 = time.perf_counter()
        bar = tqdm(total=until, initial=self.step, desc=f"train {self.o.stage}", unit="step",
                   disable=not (progress and stderr_is_terminal()), file=sys.stderr, dynamic_ncols=True,
                   mininterval=2.0)
        ema = None
        diverged = False
        whole = True  # False while a step is under way: what is in memory then is no step's
        try:
            while self.step < until:
                if stop is not None and stop():
                    log.info("stopping at step %d (a signal came)", self.step)
                    break
                whole = False
                ts = time.perf_counter()
                res = self.train_step()
                dt = time.perf_counter() - ts
                self.wall += dt
                self.step += 1
                loss = float(res["loss"].detach())
                if not math.isfinite(loss):
                    diverged = True  # not saved: the checkpoint on disk stays the last sound one
                    raise FloatingPointError(f"loss became {loss} at step {self.step}")
                losses.append(loss)
                sps = 2 * self.o.pairs / dt
                ema = sps if ema is None else 0.9 * ema + 0.1 * sps
                terms = {k: float(v.detach()) for k, v in res.items() if not k.startswith("_")}
                row = {"step": self.step, "lr": lr_at(self.step - 1, self.o), **terms,
                       "samples_per_s": round(sps, 2), "wall_s": round(self.wall, 2)}
                self.log.append(row)
                whole = True
                bar.set_postfix_str(" ".join(f"{k} {v:.3g}" for k, v in terms.items()) + f" | {ema:.1f} img/s")
                bar.update(1)
                if on_step:
                    on_step(self.step, row)
                if self.o.sample_every and self.step % self.o.sample_every == 0:
                    with torch.no_grad():
                        self.sample_grid(res["_x"], res)
                if after_step(self.step, self.o.ckpt_every, self.save, t0, max_seconds):
                    break
        finally:
            bar.close()
            if not diverged and whole:
                self.save()
            elif not diverged:
                log.warning("stopped inside a step: not saved (the run resumes from its last save)")
        return losses
