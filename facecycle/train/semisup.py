"""Semi-supervised FaceCycle: the cycle losses on face video plus FER-2013 labels through the same encoder.

The unsupervised recipe (:mod:`.trainer`) does not learn expression on a CPU
budget (see MODEL_CARD.md). This recipe trains the FaceCycle motion modules
(expression encoder E, motion decoder M, generator G) and a linear emotion head
H on the encoder's conv feature together. Every step:

* **supervision** — a batch of labelled stills (FER-2013 train minus the
  held-out validation part): cross-entropy of H(E.features(x)) with label
  smoothing and mild class weights; affine / flip / brightness / contrast /
  erasing jitter;
* **zero flow for neutral** — stills labelled neutral must give a zero
  neutralizing flow and backflow (M(E(x)) = 0); optionally (``flow_margin_weight``)
  stills labelled expressive must give a flow of at least ``flow_margin`` (crop-side
  units): on its own the zero-flow term drove the motion decoder of the 17,000-step
  run to zero flow for every face (``scripts/flow_check.py``, MODEL_CARD.md);
* **video consistency** (optional, ``video_batch`` > 0; off in the shipped
  recipe) — unlabelled video face crops, two augmentations each: the
  prediction on the strong one is pulled to the confident prediction on the
  weak one (FixMatch-style). Measured: it keeps FER-2013 accuracy but makes
  every video frame read as one class (neutral in one run, surprise in
  another) — self-training collapse on talking heads; MODEL_CARD.md;
* **clip-labelled video** (optional, ``video_label_batch`` > 0) — crops of
  training clips that show one expression throughout (most are people talking
  with a neutral face; ``training/video_labels.csv``), with the clip's label:
  cross-entropy with stronger label smoothing (the labels are per clip, not per
  frame). This carries the stills' classes to talking faces in video, where
  an open, speaking mouth otherwise reads as surprise;

and every ``cycle_every`` steps a **FaceCycle step** on video pairs (two frames
of one face track, or a frame and its mirror): the paper's motion losses, with
the encoder's share of their gradient scaled by ``enc_grad_scale``, plus

* **the neutral face reads as neutral** — H(E(G(x, flow))) → "neutral"
  (E and H frozen for this term, so only M and G learn it; with ``neutral_jitter`` the head sees the face
  through :func:`critic_jitter`, since a plain frozen head is easily pleased by artefacts);
* **the re-expressed face reads as its source** — H(E(recon)) matches the
  (detached) prediction on the input.

**Refit of M and G** (``train_encoder=False``): E and H stay frozen (the emotions do not change) and
every step is a FaceCycle step, with the zero-flow term on the neutral stills of a still batch. With
``init_motion`` (M and G from an unsupervised run) it rebuilds a motion decoder and generator whose flows are
alive and whose neutral faces keep the person, on a trained encoder; MODEL_CARD.md measures it.

Video crops are prepared loose (``facecycle data prepare --scale 1.3``) and cut
to the model's framing (``config.crop_scale``) here with a little jitter, so
training and inference frame faces alike.

Every step's data derives from ``(seed, step)`` and the optimizer state is
saved, so ``--resume`` continues the run (across sessions: commit RUN/).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import get_config
from ..cpus import cap_threads
from ..data.augment import (
    affine_jitter,
    brightness_contrast,
    color_jitter,
    normalize,
    random_erase,
    resize_blur,
    warp_affine,
)
from ..data.pairs import track_index
from ..errors import InputError, ModelError, UsageError
from ..jsonvalues import is_finite
from ..losses import denormalize, detail_excess, motion_losses, scale_grad, ssim
from ..model import MOTION_MODULES, FaceCycle, neutralization_passes
from ..nn import flow_intensity
from ..nn.warp import warp
from ..terminal import stderr_is_terminal
from .freeze import eval_mode, frozen
from .runlog import RunLog
from .state import (
    FrozenSide,
    after_step,
    changed_options,
    check_steps,
    file_step,
    load_state,
    option_changes,
    read_meta,
    recover_set,
    save_set,
    save_state,
)

__all__ = ["SemiSupOptions", "SemiSupTrainer", "EMOTION_CLASSES", "affine_jitter", "cut_framing",
           "load_video", "read_clip_labels", "label_video", "ClipSpans"]

log = logging.getLogger(__name__)

#: FER-2013 order (the CSV's and the head's)
EMOTION_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NEUTRAL = EMOTION_CLASSES.index("neutral")


@dataclass
class SemiSupOptions:
    """Everything that defines a semi-supervised run (saved in RUN/state.safetensors)."""

    config: str = "rt64w"
    steps: int = 6000              # supervised steps: the length of the cosine schedule
    batch: int = 128               # labelled stills per step
    video_batch: int = 0           # unlabelled video crops per step (consistency term); 0 = off (see below)
    cycle_every: int = 8           # one FaceCycle step every N steps; 0 = none
    pairs: int = 6                 # video pairs per FaceCycle step
    lr: float = 2e-3               # peak lr of E and H (AdamW, cosine)
    lr_motion: float = 4e-4        # peak lr of M and G
    weight_decay: float = 5e-4
    warmup_steps: int = 200
    label_smoothing: float = 0.1
    class_weight_power: float = 0.3  # class weights (median count / count) ** power, clipped to [0.5, 3]
    zero_flow_weight: float = 20.0
    flow_margin: float = 0.0       # stills labelled expressive: flow_intensity below this margin is penalised
    flow_margin_weight: float = 0.0  # (hinge); 0 = off. Keeps the motion decoder from collapsing to zero flow
    still_flow_enc_grad: float = 1.0  # share of the still flow terms' gradient that reaches the encoder (0: M only)
    consistency_weight: float = 1.0
    consistency_threshold: float = 0.8
    consistency_start: float = 0.3   # fraction of steps before the video term starts
    video_label_batch: int = 0     # clip-labelled video crops per step (needs video labels); 0 = off
    video_label_weight: float = 0.5
    video_label_smoothing: float = 0.2
    video_label_balance: float = 0.5  # class sampling weight count ** -balance (0: as found, 1: balanced)
    distill_weight: float = 0.0    # the stills' probabilities are also pulled (KL) towards a teacher's (the trainer's
                                   # ``still_targets``, e.g. the shipped model averaged over moved views:
                                   # scripts/teacher_targets.py, MODEL_CARD.md experiment 18); 0 = off
    enc_grad_scale: float = 0.1
    neutral_weight: float = 0.5
    neutral_jitter: float = 0.0    # the neutral-reads-neutral term sees its face randomly moved, blurred and noised
                                   # (strength 0-1; 0 = off) so that pixel artefacts cannot please the frozen head
    critic_blur: float = 1.0       # < 1: the jittered critics always see the neutral face blurred to at most this
                                   # fraction of its size (critic_jitter's blur_max); 1 = as before
    reexpress_weight: float = 0.5  # the re-expressed face (the neutral face warped back by the backflow) must read
                                   # as its source to the frozen head (KL to the input's probabilities); 0 = off
    critic_weight: float = 0.0     # the neutral face must also read as neutral to a second, independent critic
                                   # (:mod:`.critic`, passed as ``critic``; same jittered view); 0 = off
    critic_adapt_lr: float = 0.0   # > 0: the critic keeps learning during the refit (:class:`.critic.OnlineCritic`):
                                   # on the step's stills and on the neutral faces, labelled as their input reads
                                   # to the head; 0 = frozen
    detail_excess_weight: float = 0.0  # the neutral face may not add fine detail the flow-warped input lacks
                                   # (:func:`detail_excess`: stripes that fool critics); 0 = off
    neutral_via: str = "generator"  # what the neutral-face critics (head, critic) train: "generator" (G and M,
                                   # through G's neutral face) or "flow" (M only: they see G(x, flow) with G frozen,
                                   # so the face can only be moved towards neutral, not painted)
    second_pass_weight: float = 0.0  # a refit's neutral face is pulled (L1, compared at half resolution, where the
                                   # generator's fine lines vanish) towards the starting model's two-pass neutral
                                   # face of the same input (a frozen copy of M and G as the run starts): one pass
                                   # learns the pipeline's two (distillation); 0 = off
    still_neutral_weight: float = 0.0  # a refit's neutral-reads-neutral term also on the expressive stills of its
                                   # still batch (FER-2013: thousands of people, not the video's ~55), through the
                                   # same jittered head; 0 = off (experiment 26)
    still_cycle_weight: float = 1.0  # with it, those stills must come back from their neutral face (G(G(x, flow),
                                   # backflow) = x: L1 + 5 (1 - SSIM)), so the neutral face keeps the person
    train_passes: int = 1          # > 1: the neutral-face terms (head, critic, detail excess) also judge the face after
                                   # this many neutralization passes (the pipeline's --neutral-passes), with
                                   # gradients through every pass (E frozen): G learns to neutralize its own output
    realism_weight: float = 0.0    # the neutral face must pass a patch discriminator trained beside G against real
                                   # video (:mod:`.realism`); 0 = off
    realism_lr: float = 2e-4       # the discriminator's Adam learning rate
    realism_real: str = "frames"   # its real images: "frames" (the step's video pairs, expressions and all) or
                                   # "neutral" (as many clip-labelled neutral video crops: needs video labels)
    cycle_weight: float = 1.0
    train_encoder: bool = True     # False: a refit of M and G only (E and the head frozen, the emotions unchanged):
                                   # every step is a FaceCycle step, plus zero flow on the neutral stills of ``batch``
    head_dropout: float = 0.3
    video_crop_scale: float = 1.3  # the framing the video crops were prepared with
    val_every: int = 500
    ckpt_every: int = 250
    seed: int = 0
    threads: int = 0
    device: str = "cpu"            # "cuda" on a GPU machine (augmentation stays on the CPU)
    amp: str = "none"              # "bf16": the supervised pass under bfloat16 autocast (CPUs with AMX / AVX512-BF16,
                                   # GPUs); the FaceCycle step and validation stay float32


#: a refit's distillation target (second_pass_weight): the starting model's M and G, saved with the run
TEACHER_FILE = "teacher.safetensors"


def _half(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2), antialiased: the scale at which :attr:`SemiSupOptions.second_pass_weight`
    compares faces."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False, antialias=True)


def lr_factor(step: int, o: SemiSupOptions) -> float:
    """Linear warm-up then cosine decay to 2 % of the peak over ``o.steps``."""
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    t = min(1.0, (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps))
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


def critic_jitter(x: torch.Tensor, g: torch.Generator, strength: float, blur_max: float = 1.0) -> torch.Tensor:
    """Random degradation of (B, C, S, S) images before a frozen critic, differentiable in ``x``.

    The centre 85 % of the image (the critic never sees the border, which a generator could otherwise fill with
    a pattern for it: a first run drew a purple line along the bottom edge), under a similarity transform
    (scale ±10 %, ±8°, shift ±6 % at strength 1, flip), a blur (down to between 50 % and 100 % of the size
    and back, bilinear) and Gaussian noise (σ 0.1 in normalised units): a change that reads as an expression
    survives them; artefacts tuned to one view of the critic mostly do not. ``blur_max`` < 1 always low-passes:
    the face is resized (antialiased) to between ``blur_max`` · (1 − 0.3 · strength) and ``blur_max`` of its size
    and back, so that fine patterns (stripes, dots) cannot reach the critic at all.
    """
    size = x.shape[-1]
    theta = affine_jitter(x, g, scale=(1 - 0.1 * strength, 1 + 0.1 * strength), rot_deg=8 * strength,
                          shift=0.06 * strength, zoom=0.85)
    y = warp_affine(x, theta.to(x.device), size)
    low_pass = blur_max < 1.0
    if low_pass:
        hi = max(8, int(round(size * blur_max)))
        lo = min(hi, max(8, int(round(size * blur_max * (1 - 0.3 * strength)))))
    else:
        hi, lo = size, max(8, int(round(size * (1 - 0.5 * strength))))
    small = int(torch.randint(lo, hi + 1, (1,), generator=g))
    if small < size:  # antialiased where blur_max asks for a low-pass (the default path is kept as it was)
        y = resize_blur(y, small, antialias=low_pass)
    noise = torch.randn(y.shape, generator=g).to(y.device)
    return y + 0.1 * strength * noise


def cut_framing(prepared_scale: float, model_scale: float) -> float:
    """Fraction of a crop prepared at ``prepared_scale`` that holds the ``model_scale`` framing."""
    return float(model_scale) / float(prepared_scale)


class EmotionHead(nn.Module):
    """Dropout + linear layer over the encoder's conv feature (exported as ``expression_head.safetensors``)."""

    def __init__(self, dim: int, classes: int = len(EMOTION_CLASSES), dropout: float = 0.3) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, classes)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(f))


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _critic_why(critic: Path, e: BaseException) -> str:
    """Why ``critic`` could not be loaded, without the path the error starts with (a ModelError names the critic
    or its ``.json``; the refit's error names the critic already: "X: not a critic (X.json: damaged …)" said the
    folder twice): its own file's path dropped, the ``.json``'s cut to its name."""
    why = _first_line(e)
    for p, name in ((critic, ""), (critic.with_suffix(".json"), critic.with_suffix(".json").name + ": ")):
        if why.startswith(f"{p}: "):
            return name + why[len(f"{p}: "):]
    return why


def _check_semisup_meta(path: Path, meta: Dict) -> None:
    """What a semi-supervised run's state adds to :func:`.state.check_meta`: ``best_val`` and the options'
    ``distill_weight`` finite numbers, ``still_targets_sha`` text or null, where present; else a
    :class:`~facecycle.errors.ModelError` naming ``path`` (a text one was a ValueError, exit 1)."""
    opts = meta.get("options") or {}
    checks = [("best_val", meta, is_finite, "a number"), ("distill_weight", opts, is_finite, "a number"),
              ("still_targets_sha", meta, lambda v: v is None or isinstance(v, str), "text")]
    for key, where, ok, what in checks:
        if key in where and not ok(where[key]):
            raise ModelError(f"{path}: damaged training state ({key} {json.dumps(where[key])} is not {what}); the "
                             "run cannot be resumed exactly: start a new --out, e.g. with --init RUN/last.safetensors")


class SemiSupTrainer:
    """Train E, M, G and the emotion head with the recipe above into ``out``.

    Args:
        opts: the run's options.
        stills: (N, S, S, 3) uint8 RGB labelled stills (any S; resized on the fly) and (N,) int64 labels.
        val: the held-out stills and labels (accuracy logged every ``val_every`` steps).
        video: (M, V, V, 3) uint8 RGB face-track crops prepared at ``video_crop_scale`` and (M,) track ids.
        out: run directory.
        init: a checkpoint to start the motion modules from (see :meth:`_init_from`).
        video_labels: (M,) int64 class of each video crop (``EMOTION_CLASSES`` index) or -1 for none; used
            when ``video_label_batch`` > 0.
        init_head: an emotion head (``head.safetensors`` of a run) to start from, e.g. to fine-tune a run.
        init_motion: a checkpoint to take the motion decoder and generator from, after ``init`` (e.g. an
            unsupervised run's, for a refit of M and G on a trained encoder: ``train_encoder=False``).
        critic: a trained :class:`.critic.StillCritic` (``critic.safetensors``), needed when ``critic_weight`` > 0:
            the neutral-reads-neutral term asks it too (it stays frozen).
    """

    def __init__(self, opts: SemiSupOptions, stills: Tuple[np.ndarray, np.ndarray],
                 val: Tuple[np.ndarray, np.ndarray], video: Optional[Tuple[np.ndarray, np.ndarray]],
                 out: Path, init: Optional[str] = None, video_labels: Optional[np.ndarray] = None,
                 init_head: Optional[str] = None, init_motion: Optional[str] = None,
                 critic: Optional[str] = None, still_targets: Optional[np.ndarray] = None) -> None:
        self.o = opts
        try:
            self.cfg = get_config(opts.config)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if opts.threads:
            torch.set_num_threads(cap_threads(opts.threads, "--threads"))
        torch.manual_seed(opts.seed)
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.out / "log.csv")
        self.model = FaceCycle(self.cfg, modules=MOTION_MODULES)
        if opts.amp not in ("none", "bf16"):
            raise UsageError(f"amp must be 'none' or 'bf16', not {opts.amp!r}")
        if init:
            self._init_from(init)
        if init_motion:
            self._init_motion_from(init_motion)
        self.head = EmotionHead(self.cfg.feature_dim, dropout=opts.head_dropout)
        if init_head:
            from safetensors.torch import load_file

            try:
                self.head.load_state_dict(load_file(str(init_head)))
            except (OSError, RuntimeError) as e:
                raise InputError(f"{init_head}: not an emotion head for config {self.cfg.name!r} ({e})") from None
        self.dev = torch.device(opts.device)
        self.model.to(self.dev)
        self.head.to(self.dev)
        self.critic = None
        if opts.critic_weight > 0:
            if not critic:
                raise UsageError("critic_weight > 0 needs a critic (--critic FILE, from "
                                 "python -m facecycle.train.critic)")
            from safetensors import SafetensorError

            from .critic import load_critic

            try:
                self.critic = load_critic(Path(critic), opts.device)
            except (OSError, RuntimeError, KeyError, ValueError, SafetensorError, ModelError) as e:
                raise InputError(f"{critic}: not a critic ({_critic_why(Path(critic), e)})") from None
        self.critic_online = None
        if opts.critic_adapt_lr > 0:
            if self.critic is None:
                raise UsageError("critic_adapt_lr > 0 needs a critic in use (critic_weight > 0 and --critic FILE)")
            if opts.train_encoder or opts.zero_flow_weight <= 0 or opts.batch <= 0:
                raise UsageError("critic_adapt_lr > 0 learns from a refit's still batch (train_encoder=false, "
                                 "batch > 0, zero_flow_weight > 0)")
            from .critic import OnlineCritic

            self.critic_online = OnlineCritic(self.critic, opts.critic_adapt_lr)
        self.teacher = None
        if opts.second_pass_weight > 0:
            if opts.train_encoder:
                raise UsageError("second_pass_weight is a refit term (train_encoder=false): its target needs the "
                                 "encoder frozen")
            import copy

            self.teacher = nn.ModuleList([copy.deepcopy(self.model.exptoflow), copy.deepcopy(self.model.Swap_Generator)]
                                         ).eval().requires_grad_(False)
        if opts.train_passes < 1:
            raise UsageError("train_passes must be >= 1")
        if opts.train_passes > 1 and (opts.train_encoder or opts.critic_adapt_lr > 0
                                      or opts.neutral_via != "generator"):
            raise UsageError("train_passes > 1 is for a refit (train_encoder=false) with neutral_via=generator and "
                             "without critic_adapt_lr")
        if opts.still_neutral_weight > 0 and (opts.train_encoder or opts.batch <= 0):
            raise UsageError("still_neutral_weight is a refit term (train_encoder=false) on its still batch "
                             "(batch > 0)")
        if opts.neutral_via not in ("generator", "flow"):
            raise UsageError(f"neutral_via must be 'generator' or 'flow', not {opts.neutral_via!r}")
        self.realism = None
        if opts.realism_weight > 0:
            from .realism import Realism

            if opts.realism_real not in ("frames", "neutral"):
                raise UsageError(f"realism_real must be 'frames' or 'neutral', not {opts.realism_real!r}")
            self.realism = Realism(opts.device, opts.realism_lr)
        xs, ys = stills
        if len(xs) == 0:
            raise InputError("no labelled stills")
        self.xs = torch.from_numpy(np.ascontiguousarray(xs)).permute(0, 3, 1, 2).contiguous()  # uint8 (N,3,S,S)
        self.ys = torch.from_numpy(np.asarray(ys, np.int64))
        self.still_targets, self.still_targets_sha = None, None
        if opts.distill_weight > 0:
            if still_targets is None:
                raise UsageError("distill_weight > 0 needs the teacher's probabilities of the stills "
                                 "(--still-targets FILE, from scripts/teacher_targets.py)")
            t = np.asarray(still_targets, np.float32)
            if t.shape != (len(xs), len(EMOTION_CLASSES)):
                raise InputError(f"still targets of shape {t.shape} for {len(xs)} stills "
                                 f"(expected ({len(xs)}, {len(EMOTION_CLASSES)}))")
            if not (np.isfinite(t).all() and np.allclose(t.sum(1), 1.0, atol=1e-3) and (t >= 0).all()):
                raise InputError("still targets are not probabilities (rows must be >= 0 and sum to 1)")
            if not opts.train_encoder:
                raise UsageError("distill_weight is a term of the encoder's training; a refit "
                                 "(train_encoder=false) never uses it")
            self.still_targets = torch.from_numpy(t)
            self.still_targets_sha = hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest()[:16]
        self.xv = torch.from_numpy(np.ascontiguousarray(val[0])).permute(0, 3, 1, 2).contiguous()
        self.yv = torch.from_numpy(np.asarray(val[1], np.int64))
        if video is not None and len(video[0]):
            self.vid = torch.from_numpy(np.ascontiguousarray(video[0])).permute(0, 3, 1, 2).contiguous()
            self._vorder, self._vstart, self._vlen = track_index(video[1])
        else:
            self.vid = None
        self.vlab_idx = self.vlab_w = self.vlab = None
        if opts.video_label_batch > 0:
            if self.vid is None or video_labels is None:
                raise UsageError("video_label_batch > 0 needs video crops and their labels (--video-labels CSV)")
            lab = torch.from_numpy(np.asarray(video_labels, np.int64))
            if lab.shape != (len(self.vid),):
                raise UsageError(f"{len(lab)} video labels for {len(self.vid)} crops")
            idx = torch.nonzero(lab >= 0).flatten()
            if len(idx) == 0:
                raise InputError("no video crop has a label (check the labels file against the track names)")
            cnt = torch.bincount(lab[idx], minlength=len(EMOTION_CLASSES)).float()
            self.vlab, self.vlab_idx = lab, idx
            self.vlab_w = cnt[lab[idx]] ** -opts.video_label_balance
            log.info("clip-labelled video: %d crops, per class %s", len(idx),
                     {EMOTION_CLASSES[k]: int(c) for k, c in enumerate(cnt.tolist()) if c})
        self.neutral_idx = None
        if self.realism is not None and opts.realism_real == "neutral":
            if self.vid is None or video_labels is None:
                raise UsageError("realism_real=neutral needs video crops and their labels (--video-labels CSV)")
            self.neutral_idx = torch.nonzero(torch.from_numpy(np.asarray(video_labels, np.int64)) == NEUTRAL).flatten()
            if len(self.neutral_idx) == 0:
                raise InputError("realism_real=neutral: no video crop is labelled neutral")
            log.info("realism term: %d clip-labelled neutral video crops as its real images", len(self.neutral_idx))
        counts = torch.bincount(self.ys, minlength=len(EMOTION_CLASSES)).float().clamp(min=1)
        w = (counts.median() / counts) ** opts.class_weight_power
        self.class_weight = w.clamp(0.5, 3.0).to(self.dev)
        enc = list(self.model.codegeneration.parameters()) + list(self.head.parameters())
        mot = list(self.model.exptoflow.parameters()) + list(self.model.Swap_Generator.parameters())
        groups = [{"params": mot, "lr": opts.lr_motion, "peak": opts.lr_motion, "betas": (0.5, 0.999)}]
        if opts.train_encoder:
            groups.insert(0, {"params": enc, "lr": opts.lr, "peak": opts.lr})
        else:
            if self.vid is None or not opts.pairs:
                raise UsageError("train_encoder=False (a refit of M and G) needs video pairs (--data, pairs > 0)")
            for p in enc:
                p.requires_grad_(False)
        self.opt = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
        self.step = 0
        self.wall = 0.0
        self.best_val = 0.0
        self.option_changes: List[Dict[str, Any]] = []  # resumes with other options (state.option_changes)
        self._stills: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # the refit step's stills (online critic)

    def _init_from(self, init: str) -> None:
        """Start the motion modules from another model (e.g. an unsupervised FaceCycle run).

        Every module must fit, except the expression encoder: when only its width differs (``encoder_width``),
        it starts fresh and M, G start from ``init``.
        """
        m = load_checkpoint(init)
        src = m.state_dict()
        own = self.model.state_dict()
        fresh = []
        for mod in MOTION_MODULES:
            keys = [k for k in own if k.split(".")[0] == mod]
            fits = all(k in src and src[k].shape == own[k].shape for k in keys)
            if fits:
                own.update({k: src[k] for k in keys})
            elif mod == "codegeneration" and m.config.code_dim == self.cfg.code_dim:
                fresh.append(mod)
            else:
                raise InputError(f"{init}: its {mod} does not fit config {self.cfg.name!r}")
        self.model.load_state_dict(own)
        if fresh:
            log.info("init %s: %s starts fresh (its sizes differ), the other motion modules from it", init, fresh)

    def _init_motion_from(self, path: str) -> None:
        """Replace the motion decoder and generator with ``path``'s (same sizes)."""
        m = load_checkpoint(path)
        for mod in ("exptoflow", "Swap_Generator"):
            try:
                getattr(self.model, mod).load_state_dict(getattr(m, mod).state_dict())
            except (AttributeError, RuntimeError):
                raise InputError(f"{path}: its {mod} does not fit config {self.cfg.name!r}") from None
        log.info("init motion: exptoflow and Swap_Generator from %s", path)

    # ------------------------------------------------------------------ io
    def save(self) -> None:
        """Save the weights, head, state and side modules as one set (:func:`.state.save_set`)."""
        from safetensors.torch import save_file

        def write(d: Path) -> None:
            save_checkpoint(self.model, d / "last.safetensors", extra={
                "stage": "semisup", "step": str(self.step), "train_options": json.dumps(asdict(self.o))})
            hs = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            save_file(hs, str(d / "head.safetensors"), metadata={"step": str(self.step)})
            save_state(d / "state.safetensors", self.opt, {
                "step": self.step, "wall_s": self.wall, "best_val": self.best_val, "options": asdict(self.o),
                "still_targets_sha": self.still_targets_sha, "option_changes": self.option_changes})
            for side in self._side_modules():
                side.save(d, self.step)
        save_set(self.out, write)

    def resume(self) -> bool:
        """Continue from RUN/ if it holds a saved step; returns whether it did."""
        recover_set(self.out)  # a save a kill cut short: finished or dropped
        ck, st, hd = (self.out / n for n in ("last.safetensors", "state.safetensors", "head.safetensors"))
        if not (ck.is_file() and st.is_file() and hd.is_file()):
            return False
        from safetensors.torch import load_file

        # every file is read and checked before any is written (the log trimmed, a checkpoint saved): a damaged one
        # is one line naming it, and the run stays as it was
        self.log.check()
        m = load_checkpoint(ck)
        if m.config.to_dict() != self.cfg.to_dict():
            raise InputError(f"{ck}: config {m.config.name!r} differs from {self.cfg.name!r}")
        try:
            head = load_file(str(hd), device=str(self.dev))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own types (SafetensorError) for a damaged file
            raise ModelError(f"{hd}: unreadable emotion head ({_first_line(e)}); the run cannot be resumed: start a "
                             "new --out, e.g. with --init RUN/last.safetensors") from None
        meta, _ = load_state(st, self.opt)  # checked: step an integer >= 0, wall_s a number >= 0, options an object
        _check_semisup_meta(st, meta)
        steps = {ck: file_step(ck), hd: file_step(hd), st: meta["step"]}
        for side in self._side_modules():
            if (self.out / side.FILE).is_file():
                steps[self.out / side.FILE] = read_meta(self.out / side.FILE)["step"]
        check_steps(steps)
        self.model.load_state_dict(m.state_dict())
        try:
            self.head.load_state_dict(head)
        except RuntimeError as e:  # other names or sizes: it was an internal error
            raise ModelError(f"{hd}: not this run's emotion head ({_first_line(e)}); the run cannot be resumed: "
                             "start a new --out") from None
        old = meta.get("options") or {}
        for k, was, now in changed_options(old, asdict(self.o)):  # a resume with others is no exact continuation
            if k != "distill_weight":  # (refused below)
                log.warning("resume: option %s was %r, now %r (the continuation will not be exact; give the run's "
                            "own value)", k, was, now)
        saved_w = float(old.get("distill_weight", 0.0))
        if saved_w != self.o.distill_weight:
            raise UsageError(f"{self.out} was trained with distill_weight {saved_w:g}; resume it with the same "
                             f"(and its --still-targets), not {self.o.distill_weight:g}")
        if self.still_targets_sha is not None and meta.get("still_targets_sha") not in (None, self.still_targets_sha):
            raise InputError(f"{self.out} was trained with other --still-targets (sha {meta['still_targets_sha']}, "
                             f"given {self.still_targets_sha})")
        self.option_changes = option_changes(meta, asdict(self.o), meta["step"])
        self.step = meta["step"]
        self.wall = float(meta.get("wall_s", 0.0))
        self.best_val = float(meta.get("best_val", 0.0))
        for side in self._side_modules():
            if side.load(self.out) is None:
                if side.REQUIRED:
                    raise InputError(f"{self.out}: no {side.FILE} saved; the run cannot resume without it")
                log.warning("%s: no %s saved; %s starts again", self.out, side.FILE, type(side).__name__)
        self.log.trim(self.step)
        return True

    def _side_modules(self) -> list:
        """The modules trained beside the model (:class:`.state.SideModule`), saved and resumed with it."""
        teacher = FrozenSide(self.teacher, TEACHER_FILE) if self.teacher is not None else None
        return [m for m in (self.realism, self.critic_online, teacher) if m is not None]

    # ---------------------------------------------------------------- data
    def _gen(self, step: int, k: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.o.seed * 1_000_003 + step * 7 + k) % (2 ** 63))

    def _still_idx(self, step: int, g: Optional[torch.Generator] = None) -> torch.Tensor:
        """The indices of step ``step``'s stills (the first draw of its generator)."""
        return torch.randint(0, len(self.xs), (self.o.batch,), generator=g if g is not None else self._gen(step, 0))

    def still_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Augmented normalised stills (B, 3, S, S) and labels (B,)."""
        g = self._gen(step, 0)
        i = self._still_idx(step, g)
        x = self.xs[i].float().div_(255.0)
        theta = affine_jitter(x, g)
        x = warp_affine(x, theta, self.cfg.image_size)
        x = brightness_contrast(x, g, 0.25, 0.3)
        x = random_erase(x, g, 0.5)
        return normalize(x, self.cfg.mean, self.cfg.std).to(self.dev), self.ys[i].to(self.dev)

    def _video_views(self, idx: torch.Tensor, g: torch.Generator, strong: bool) -> torch.Tensor:
        x = self.vid[idx].float().div_(255.0)
        zoom = cut_framing(self.o.video_crop_scale, self.cfg.crop_scale)
        if strong:
            theta = affine_jitter(x, g, zoom=zoom)
        else:
            theta = affine_jitter(x, g, scale=(0.97, 1.03), rot_deg=3, shift=0.03, zoom=zoom)
        x = warp_affine(x, theta, self.cfg.image_size)
        if strong:
            x = brightness_contrast(x, g, 0.25, 0.3)
            x = random_erase(x, g, 0.5)
        return normalize(x, self.cfg.mean, self.cfg.std).to(self.dev)

    def video_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weak and strong views (B, 3, S, S) of the same random video crops."""
        g = self._gen(step, 1)
        i = torch.randint(0, len(self.vid), (self.o.video_batch,), generator=g)
        return self._video_views(i, g, False), self._video_views(i, g, True)

    def labelled_video_batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Strongly augmented clip-labelled video crops (B, 3, S, S) and their clip labels (B,)."""
        g = self._gen(step, 3)
        j = torch.multinomial(self.vlab_w, self.o.video_label_batch, replacement=True, generator=g)
        i = self.vlab_idx[j]
        return self._video_views(i, g, True), self.vlab[i].to(self.dev)

    def pair_batch(self, step: int) -> torch.Tensor:
        """FaceCycle pairs X = [a; b] (2P, 3, S, S): two frames of a track, or (p 0.5) a frame and its mirror."""
        g = self._gen(step, 2)
        p = self.o.pairs
        i = torch.randint(0, len(self.vid), (p,), generator=g)
        off = (torch.rand(p, generator=g) * self._vlen[i]).long()
        j = self._vorder[self._vstart[i] + off]
        mirror = torch.rand(p, generator=g) < 0.5
        a = self.vid[i].float().div_(255.0)
        b = self.vid[j].float().div_(255.0)
        b[mirror] = a[mirror].flip(-1)
        x = torch.cat((a, b))
        zoom = cut_framing(self.o.video_crop_scale, self.cfg.crop_scale)
        theta = affine_jitter(x, g, scale=(0.95, 1.05), rot_deg=0, shift=0.03, flip=False, zoom=zoom)
        fl = torch.rand(p, generator=g) < 0.5  # flip both images of a pair alike
        theta[:p, 0, 0] *= torch.where(fl, -1.0, 1.0)
        theta[p:, 0, 0] *= torch.where(fl, -1.0, 1.0)
        x = warp_affine(x, theta, self.cfg.image_size)
        x = color_jitter(x, g)
        return normalize(x, self.cfg.mean, self.cfg.std).to(self.dev)

    def neutral_frames(self, step: int) -> torch.Tensor:
        """``2 * pairs`` clip-labelled neutral video crops (B, 3, S, S), framed and jittered as :meth:`pair_batch`'s
        frames: the realism term's real images with ``realism_real="neutral"``."""
        g = self._gen(step, 5)
        i = self.neutral_idx[torch.randint(0, len(self.neutral_idx), (2 * self.o.pairs,), generator=g)]
        x = self.vid[i].float().div_(255.0)
        zoom = cut_framing(self.o.video_crop_scale, self.cfg.crop_scale)
        x = warp_affine(x, affine_jitter(x, g, scale=(0.95, 1.05), rot_deg=0, shift=0.03, zoom=zoom),
                        self.cfg.image_size)
        return normalize(color_jitter(x, g), self.cfg.mean, self.cfg.std).to(self.dev)

    # ---------------------------------------------------------------- loss
    def _head_frozen(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x`` with E and H frozen (gradients reach only ``x``)."""
        enc = self.model.codegeneration
        with eval_mode(self.head), frozen(enc, self.head):
            return self.head(enc.features(x))

    def _reads_neutral(self, y: torch.Tensor) -> Tuple[torch.Tensor, float]:
        """Cross-entropy of the frozen head's reading of faces ``y`` (B, 3, S, S), normalised, against "neutral"
        (gradients reach only ``y``), and the mean neutral probability."""
        ln = self._head_frozen(y)
        ce = F.cross_entropy(ln, torch.full((y.shape[0],), NEUTRAL, dtype=torch.long, device=y.device))
        return ce, float(torch.softmax(ln.detach(), 1)[:, NEUTRAL].mean())

    def train_step(self) -> Dict[str, float]:
        o = self.o
        f = lr_factor(self.step, o)
        for grp in self.opt.param_groups:
            grp["lr"] = grp["peak"] * f
        torch.manual_seed((o.seed * 7_919 + self.step * 104_729 + 17) % (2 ** 63))
        if not o.train_encoder:
            return self.refit_step()
        self.model.train()
        self.head.train()
        enc = self.model.codegeneration
        terms: Dict[str, float] = {}
        x, y = self.still_batch(self.step)
        nv = 0
        if self.vlab_idx is not None:  # one encoder pass over stills and labelled video crops
            xl, yl = self.labelled_video_batch(self.step)
            nv = len(yl)
            x = torch.cat((x, xl))
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=o.amp == "bf16"):
            feat, code = enc.read(x)  # the head's feature (low-passed with detail_px), the sharp code
            logits = self.head(feat).float()
        if nv:
            lv, logits, code = logits[-nv:], logits[:-nv], code[:-nv]
            vce = F.cross_entropy(lv, yl, label_smoothing=o.video_label_smoothing)
            terms["video_ce"] = float(vce.detach())
            terms["video_acc"] = float((lv.argmax(1) == yl).float().mean())
        ce = F.cross_entropy(logits, y, weight=self.class_weight, label_smoothing=o.label_smoothing)
        loss = ce + (o.video_label_weight * vce if nv else 0.0)
        if self.still_targets is not None:
            tgt = self.still_targets[self._still_idx(self.step)].to(self.dev)
            kd = F.kl_div(F.log_softmax(logits, 1), tgt, reduction="batchmean")
            loss = loss + o.distill_weight * kd
            terms["distill_kl"] = float(kd.detach())
        terms["ce"] = float(ce.detach())
        terms["acc"] = float((logits.argmax(1) == y).float().mean())
        neu = y == NEUTRAL
        margin = o.flow_margin_weight > 0 and o.flow_margin > 0
        code = scale_grad(code, o.still_flow_enc_grad)  # the flow terms below: their gradient into the encoder
        if margin:  # one decoder pass for both flow terms
            fl_all, bk_all = self.model.exptoflow(code.float())
            fi = flow_intensity(fl_all[~neu])
            mg = F.relu(o.flow_margin - fi).mean() if len(fi) else fl_all.new_zeros(())
            loss = loss + o.flow_margin_weight * mg
            terms["flow_margin"] = float(mg.detach())
            terms["flow_expressive"] = float(fi.detach().mean()) if len(fi) else 0.0
        if o.zero_flow_weight > 0 and bool(neu.any()):
            fl, bk = (fl_all[neu], bk_all[neu]) if margin else self.model.exptoflow(code[neu].float())
            zf = fl.abs().mean() + bk.abs().mean()
            loss = loss + o.zero_flow_weight * zf
            terms["zero_flow"] = float(zf.detach())
        if self.vid is not None and o.video_batch > 0 and self.step >= o.consistency_start * o.steps:
            weak, strong = self.video_batch(self.step)
            with torch.no_grad():
                self.head.eval()
                pw = torch.softmax(self.head(enc.features(weak)), 1)
                self.head.train()
            conf, pl = pw.max(1)
            mask = (conf >= o.consistency_threshold).float()
            ls = F.cross_entropy(self.head(enc.features(strong)), pl, reduction="none")
            cons = (ls * mask).mean()
            loss = loss + o.consistency_weight * cons
            terms["cons"] = float(cons.detach())
            terms["cons_mask"] = float(mask.mean())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.vid is not None and o.cycle_every and self.step % o.cycle_every == 0:
            terms.update(self.cycle_step())
        return terms

    def refit_step(self) -> Dict[str, float]:
        """``train_encoder=False``: one FaceCycle step on video pairs (M and G learn; E and the head are frozen,
        in eval mode), with zero flow for the neutral stills of a still batch (``batch``, ``zero_flow_weight``)."""
        o = self.o
        self.model.train()
        self.model.codegeneration.eval()
        self.head.eval()
        extra = None
        terms: Dict[str, float] = {}
        self._stills = None
        if (o.zero_flow_weight > 0 or o.still_neutral_weight > 0) and o.batch > 0:
            x, y = self.still_batch(self.step)
            self._stills = (x, y)
            neu = y == NEUTRAL
            if o.zero_flow_weight > 0 and bool(neu.any()):
                with torch.no_grad():
                    code = self.model.codegeneration(x[neu])[1]
                fl, bk = self.model.exptoflow(code)
                zf = fl.abs().mean() + bk.abs().mean()
                extra = o.zero_flow_weight * zf
                terms["zero_flow"] = float(zf.detach())
            if o.still_neutral_weight > 0 and bool((~neu).any()):
                sl, st = self.still_neutral_loss(x[~neu])
                extra = sl if extra is None else extra + sl
                terms.update(st)
        terms.update(self.cycle_step(extra))
        return terms

    def still_neutral_loss(self, x: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The refit's terms on expressive stills ``x`` (B, 3, S, S), normalised: their neutral face must read as
        neutral to the frozen, jittered head (``still_neutral_weight``) and give ``x`` back with the backflow
        (``still_cycle_weight``: L1 + 5 (1 − SSIM)). E is frozen; M and G learn."""
        o = self.o
        with torch.no_grad():
            code = self.model.codegeneration(x)[1]
        flow, back = self.model.exptoflow(code)
        G = self.model.Swap_Generator
        n = G(x, flow)
        y = critic_jitter(n, self._gen(self.step, 6), o.neutral_jitter, o.critic_blur) if o.neutral_jitter > 0 else n
        nl, pn = self._reads_neutral(y)
        loss = o.still_neutral_weight * nl
        out = {"still_neutral_ce": float(nl.detach()), "still_neutral_p": pn}
        if o.still_cycle_weight > 0:
            rec = G(n, back)
            xd, rd = denormalize(x, self.cfg.mean, self.cfg.std), denormalize(rec, self.cfg.mean, self.cfg.std)
            sc = F.l1_loss(rec, x) + 5 * (1 - ssim(xd, rd))
            loss = loss + o.still_cycle_weight * sc
            out["still_cycle"] = float(sc.detach())
        return loss, out

    def cycle_step(self, extra: Optional[torch.Tensor] = None) -> Dict[str, float]:
        """One FaceCycle step on video pairs (plus ``extra``, a loss to optimise in the same step)."""
        o = self.o
        x = self.pair_batch(self.step)
        res = motion_losses(self.model, x, None, self.cfg.mean, self.cfg.std, 0.0, enc_grad_scale=o.enc_grad_scale)
        loss = o.cycle_weight * res["loss"] + (extra if extra is not None else 0.0)
        out = {"cycle": float(res["loss"].detach())}
        if o.neutral_weight > 0 or self.critic is not None:
            y = res["_neutral_live"]
            if o.neutral_via == "flow":
                with frozen(self.model.Swap_Generator):
                    y = self.model.Swap_Generator(x, res["_flow_live"])
            if o.train_passes > 1:  # the critics read every pass's face (first pass first)
                with frozen(self.model.codegeneration):
                    later, flows = self.model.neutralize_passes(y, o.train_passes - 1)
                if o.detail_excess_weight > 0:
                    for prev, nk, fk in zip([y] + later[:-1], later, flows, strict=True):
                        dk = detail_excess(nk, warp(prev.detach(), fk.detach()))
                        loss = loss + o.detail_excess_weight * dk
                        out["detail_excess_later"] = float(dk.detach())
                y = torch.cat([y] + later)
            if o.neutral_jitter > 0:
                y = critic_jitter(y, self._gen(self.step, 4), o.neutral_jitter, o.critic_blur)
            if o.neutral_weight > 0:
                nl, pn = self._reads_neutral(y)
                loss = loss + o.neutral_weight * nl
                out["neutral_ce"], out["neutral_p"] = float(nl.detach()), pn
            if self.critic is not None:  # frozen for this pass, in eval mode (load_critic)
                with frozen(self.critic):
                    lc = self.critic(y)
                tgt = torch.full((y.shape[0],), NEUTRAL, dtype=torch.long, device=y.device)
                loss = loss + o.critic_weight * F.cross_entropy(lc, tgt)
                out["critic_p"] = float(torch.softmax(lc.detach(), 1)[:, NEUTRAL].mean())
        if self.teacher is not None:
            sp = (_half(res["_neutral_live"]) - _half(self._two_pass_target(x))).abs().mean()
            loss = loss + o.second_pass_weight * sp
            out["second_pass"] = float(sp.detach())
        if o.detail_excess_weight > 0:
            de = detail_excess(res["_neutral_live"], res["_warped"])
            loss = loss + o.detail_excess_weight * de
            out["detail_excess"] = float(de.detach())
        if self.realism is not None:
            rl = self.realism.generator_loss(res["_neutral_live"])
            loss = loss + o.realism_weight * rl
            out["realism"] = float(rl.detach())
        lx = None  # the input's logits (eval mode, no graph), from the feature motion_losses computed
        if o.reexpress_weight > 0 or self.critic_online is not None:
            with eval_mode(self.head), torch.no_grad():
                lx = self.head(res["_feat"])
        if o.reexpress_weight > 0:
            px = torch.softmax(lx, 1)
            lr_ = self._head_frozen(res["_recon_live"])
            kl = F.kl_div(F.log_softmax(lr_, 1), px, reduction="batchmean")
            loss = loss + o.reexpress_weight * kl
            out["reexpress_kl"] = float(kl.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.critic_online is not None and self._stills is not None:  # as the critic saw the neutral faces
            src = lx.argmax(1)
            keep = src != NEUTRAL
            out.update(self.critic_online.step(*self._stills, y.detach()[keep], src[keep]))
        if self.realism is not None:  # fake: this step's neutral faces; real: its frames or neutral video crops
            real = x if self.neutral_idx is None else self.neutral_frames(self.step)
            out.update(self.realism.step(real, res["_neutral_live"]))
        return out

    @torch.no_grad()
    def _two_pass_target(self, x: torch.Tensor) -> torch.Tensor:
        """The starting model's two-pass neutral face of ``x`` (E is frozen in a refit, so it is the start's)."""
        m0, g0 = self.teacher
        return neutralization_passes(self.model.codegeneration, m0, g0, x, 2)[0][-1]

    # ---------------------------------------------------------------- eval
    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Accuracy on the held-out stills, plain and with flip averaging (the head on the mean of the
        features of an image and its mirror: ``config.feature_flip``)."""
        self.model.eval()
        self.head.eval()
        enc = self.model.codegeneration
        correct = correct_tta = 0
        for i in range(0, len(self.xv), 512):
            x = self.xv[i:i + 512].float().div_(255.0)
            if x.shape[-1] != self.cfg.image_size:
                x = F.interpolate(x, size=self.cfg.image_size, mode="bilinear", align_corners=False, antialias=True)
            x = normalize(x, self.cfg.mean, self.cfg.std).to(self.dev)
            lo = self.head(enc.features(x))
            lf = self.head(enc.features(x.flip(-1)))
            y = self.yv[i:i + 512].to(self.dev)
            correct += int((lo.argmax(1) == y).sum())
            correct_tta += int(((lo + lf).argmax(1) == y).sum())  # = the head on the mean feature
        n = max(1, len(self.xv))
        return {"val_acc": correct / n, "val_acc_flip": correct_tta / n}

    # ---------------------------------------------------------------- loop
    def fit(self, max_seconds: Optional[float] = None, stop_at: Optional[int] = None,
            progress: bool = True, stop=None) -> Dict[str, float]:
        """Train until ``opts.steps`` (or ``stop_at``) or ``max_seconds``; saves on exit. Returns the last terms.

        ``stop``: asked after every step (a signal came): True ends the run there, saved. An exception inside a
        step (a forced quit) saves nothing: the step's weights are half updated, so the run's last save stays.

        ``progress``: a bar on stderr where that is a terminal (into a log file its redraws were noise; ``log.csv``
        records every step, and the validation steps are logged)."""
        from tqdm import tqdm

        until = min(self.o.steps, stop_at or self.o.steps)
        t0 = time.perf_counter()
        bar = tqdm(total=until, initial=self.step, desc="train semisup", unit="step",
                   disable=not (progress and stderr_is_terminal()), file=sys.stderr, dynamic_ncols=True,
                   mininterval=5.0)
        terms: Dict[str, float] = {}
        ema = None
        n_img = self.o.batch + (2 * self.o.video_batch if self.vid is not None else 0) \
            + (self.o.video_label_batch if self.vlab_idx is not None else 0)
        if not self.o.train_encoder:  # pairs, and the stills only where a still term reads them
            reads = self.o.zero_flow_weight > 0 or self.o.still_neutral_weight > 0
            n_img = 2 * self.o.pairs + (self.o.batch if reads else 0)
        diverged = False
        whole = True  # False while a step is under way: what is in memory then is no step's
        try:
            while self.step < until:
                if stop is not None and stop():
                    log.info("stopping at step %d (a signal came)", self.step)
                    break
                whole = False
                ts = time.perf_counter()
                terms = self.train_step()
                dt = time.perf_counter() - ts
                self.wall += dt
                self.step += 1
                if not all(math.isfinite(v) for v in terms.values()):
                    diverged = True  # not saved: the checkpoint on disk stays the last sound one
                    raise FloatingPointError(f"a loss became non-finite at step {self.step}: {terms}")
                ips = n_img / dt
                ema = ips if ema is None else 0.95 * ema + 0.05 * ips
                row = {"step": self.step, "lr": self.opt.param_groups[0]["lr"], "images_per_s": round(ips, 1),
                       "wall_s": round(self.wall, 2), **{k: round(v, 5) for k, v in terms.items()}}
                if self.o.val_every and self.step % self.o.val_every == 0:
                    v = self.validate()
                    row.update(v)
                    self.best_val = max(self.best_val, v["val_acc"])
                    log.info("step %d: val acc %.4f (flip %.4f), %.0f img/s", self.step, v["val_acc"],
                             v["val_acc_flip"], ema)
                self.log.append(row)
                whole = True
                bar.set_postfix_str(f"ce {terms.get('ce', 0):.3f} acc {terms.get('acc', 0):.3f} "
                                    f"| {ema:.0f} img/s")
                bar.update(1)
                if after_step(self.step, self.o.ckpt_every, self.save, t0, max_seconds):
                    break
        finally:
            bar.close()
            if not diverged and whole:
                self.save()
            elif not diverged:
                log.warning("stopped inside a step: not saved (the run resumes from its last save)")
        return terms

    def head_arrays(self) -> Tuple[np.ndarray, np.ndarray]:
        """The emotion head as (weight (7, D), bias (7,)) float32 arrays."""
        return (self.head.fc.weight.detach().cpu().numpy().astype(np.float32),
                self.head.fc.bias.detach().cpu().numpy().astype(np.float32))


def load_video(dirs: Sequence[Path], size: int, exclude: Sequence[str] = ()
               ) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Crops of prepared datasets, leaving out tracks whose name starts with any of ``exclude``.

    Returns (N, size, size, 3) uint8 RGB crops, (N,) int64 track ids, and the sorted names of the kept tracks.
    """
    from ..data.pairs import load_track_dataset
    from ..data.prepare import read_index

    keep_dirs = list(dirs)
    imgs, tids = load_track_dataset(keep_dirs, size)
    names: Dict[int, str] = {}
    k = 0
    for d in keep_dirs:
        seen: Dict[str, int] = {}
        for r in read_index(Path(d)):
            if r["track"] not in seen:
                seen[r["track"]] = k
                names[k] = r["track"]
                k += 1
    keep = np.array([not any(names[int(t)].startswith(e) for e in exclude) for t in tids], bool)
    unmatched = [e for e in exclude if not any(n.startswith(e) for n in names.values())]
    if unmatched:  # a typo held nothing out, and the run said the prefix was held out
        log.warning("--hold-out: %s match(es) no track of %s: nothing is held out for %s", ", ".join(unmatched),
                    ", ".join(str(d) for d in dirs), "it" if len(unmatched) == 1 else "them")
    return imgs[keep], tids[keep], sorted({names[int(t)] for t in tids[keep]})


#: a clip's labelled spans: (class index, first source frame, end frame (exclusive) or None for the clip's end)
ClipSpans = List[Tuple[int, int, Optional[int]]]


def read_clip_labels(path: Path) -> Dict[str, ClipSpans]:
    """A clip-label table -> {clip stem: [(class index, start, end), ...]}.

    CSV columns ``clip`` (a video file's stem) and ``label`` (one of :data:`EMOTION_CLASSES`), and optionally
    ``start`` and ``end``: the span of source frames (``end`` exclusive) that shows that expression; left
    empty (or absent), the whole clip. A clip may have several rows for several spans; spans of one clip must
    not overlap.
    """
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise InputError(f"{path}: cannot read the clip labels ({e.strerror or e})") from None
    out: Dict[str, ClipSpans] = {}
    for n, r in enumerate(rows, start=2):
        clip, label = (r.get("clip") or "").strip(), (r.get("label") or "").strip().lower()
        if not clip or label not in EMOTION_CLASSES:
            raise InputError(f"{path}:{n}: needs a clip stem and a label in {', '.join(EMOTION_CLASSES)}")
        try:
            start = int((r.get("start") or "").strip() or 0)
            end_s = (r.get("end") or "").strip()
            end = int(end_s) if end_s else None
        except ValueError:
            raise InputError(f"{path}:{n}: start and end must be frame numbers (or empty)") from None
        if start < 0 or (end is not None and end <= start):
            raise InputError(f"{path}:{n}: the span {start}..{end} is empty or negative")
        spans = out.setdefault(clip, [])
        for _, s0, e0 in spans:
            if (e0 is None or start < e0) and (end is None or s0 < end):
                raise InputError(f"{path}:{n}: the span {start}..{end} of {clip} overlaps another row's")
        spans.append((EMOTION_CLASSES.index(label), start, end))
    return out


def label_video(dirs: Sequence[Path], table: Dict[str, ClipSpans], exclude: Sequence[str] = ()) -> np.ndarray:
    """The clip label of every crop :func:`load_video` returns for the same ``dirs`` and ``exclude``, in its
    order: (N,) int64 class index, -1 where the crop's clip has no label or its frame lies outside the clip's
    labelled spans. A track belongs to the clip whose stem its name starts with (``<stem>_<hash>_t<k>``, as
    ``facecycle data prepare`` names them; the longest wins); a crop's frame is the index's ``frame`` column."""
    from ..data.prepare import read_index

    stems = sorted(table, key=len, reverse=True)
    labels: List[int] = []
    for d in dirs:
        for r in read_index(Path(d)):
            t = r["track"]
            if any(t.startswith(e) for e in exclude):
                continue
            stem = next((s for s in stems if t.startswith(s + "_")), None)
            lab = -1
            if stem is not None:
                fr = int(r.get("frame") or 0)
                lab = next((c for c, s0, e0 in table[stem] if s0 <= fr and (e0 is None or fr < e0)), -1)
            labels.append(lab)
    return np.asarray(labels, np.int64)
