"""``facecycle train``: train the motion, identity or semi-supervised stage (face-track datasets, FER-2013)."""
from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from facecycle.config import list_configs
from facecycle.errors import InputError, PipelineError, UsageError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train FaceCycle (motion, identity or semisup stage) on face tracks and FER-2013")
    p.add_argument("--stage", choices=("motion", "identity", "semisup"), default="motion",
                   help="motion / identity: the paper's unsupervised stages; semisup: the motion stage plus "
                        "FER-2013 supervision through the same encoder (the shipped default's recipe, "
                        "needs --fer)")
    p.add_argument("--data", nargs="+", default=[], metavar="DATASET", help="datasets from `data prepare`")
    p.add_argument("--config", default="small",
                   help=f"model config ({', '.join(list_configs())}; default small; the shipped model: rt64w)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.csv, samples/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--steps", type=int, default=None,
                   help="total steps (defines the lr schedule; default 4000, semisup 6000)")
    p.add_argument("--batch", type=int, default=None,
                   help="motion / identity stages: pairs per batch (default 16; the model sees 2x images); semisup: "
                        "labelled FER-2013 stills per step (default 128)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (motion / identity stages: default 2e-4; semisup: 2e-3, of E and the head)")
    p.add_argument("--fer", default=None, metavar="DIR",
                   help="FER-2013 root (<DIR>/train/<class>/*.jpg): its probe-train part as mirror pairs")
    p.add_argument("--fer-frac", type=float, default=0.25, help="fraction of pairs drawn from --fer")
    p.add_argument("--val-frac", type=float, default=0.1, help="FER validation fraction kept out (as in probes)")
    p.add_argument("--init", default=None, help="motion checkpoint to start the identity stage from "
                   "(semisup: a checkpoint of the same sizes to start the motion modules from)")
    p.add_argument("--init-identity", default=None,
                   help="identity stage: start the identity encoder and normalizer from this checkpoint's")
    p.add_argument("--vgg19-weights", default=None, help="torchvision vgg19 state-dict file (freezes VGG fronts)")
    p.add_argument("--width", type=float, default=None,
                   help="override the config's channel width (e.g. 0.25: a narrower model for CPU training)")
    p.add_argument("--perceptual-weight", type=float, default=None,
                   help="weight of the Gram perceptual loss (default 0.01 with --vgg19-weights, else 0 = off; "
                        "a positive value without weights uses a fixed, seeded random VGG-19)")
    p.add_argument("--drop-at", type=float, default=0.5, help="fraction of --steps after which lr drops 5x")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this many minutes")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop (and save) at this step; --steps still defines the lr schedule")
    p.add_argument("--ckpt-every", type=int, default=200, metavar="N",
                   help="save the resumable checkpoint every N steps (0: only at the end; default 200)")
    p.add_argument("--sample-every", type=int, default=250, metavar="N",
                   help="motion / identity: write a grid of inputs, neutral faces, reconstructions and flows to "
                        "RUN/samples/ every N steps (0: never; default 250)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    p.add_argument("--video-scale", type=float, default=None,
                   help="the --scale the video datasets were prepared with (default: what their meta.json says; "
                        "semisup without one: 1.3); when it differs from the model's crop_scale, the model's framing "
                        "is cut out of the crops")
    p.add_argument("--hold-out", default="", metavar="PREFIXES",
                   help="comma list of track-name prefixes (clip stems) left out of training")
    p.add_argument("--cycle-every", type=int, default=8, help="semisup: one FaceCycle step every N steps")
    p.add_argument("--device", default="cpu", help="semisup: torch device (cpu, cuda)")
    p.add_argument("--amp", choices=("none", "bf16"), default="none",
                   help="semisup: run the supervised pass under bfloat16 autocast (about 1.7-2x faster on CPUs "
                        "with AMX/AVX512-BF16, and on GPUs; the FaceCycle step stays float32)")
    p.add_argument("--video-batch", type=int, default=0,
                   help="semisup: video crops per step for the pseudo-label consistency term (default 0 = off: "
                        "measured to collapse video predictions to one class: the repository's MODEL_CARD.md)")
    p.add_argument("--consistency-start", type=float, default=0.3,
                   help="semisup: fraction of --steps before the video consistency term starts")
    p.add_argument("--pairs", type=int, default=6, help="semisup: video pairs per FaceCycle step")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="set_options",
                   help="semisup: set any field of SemiSupOptions (facecycle/train/semisup.py), e.g. "
                        "--set zero_flow_weight=0 for an ablation; repeatable")
    p.add_argument("--video-labels", default=None, metavar="CSV",
                   help="semisup: clip labels (columns clip,label; e.g. training/video_labels.csv) for the "
                        "clip-labelled video term; set its batch with --set video_label_batch=N")
    p.add_argument("--still-targets", default=None, metavar="FILE",
                   help="semisup: a teacher's emotion probabilities of the FER-2013 stills (.npz from "
                        "scripts/teacher_targets.py) for --set distill_weight=W")
    p.add_argument("--init-head", default=None, metavar="FILE",
                   help="semisup: an emotion head (a run's head.safetensors) to start from, with --init, to "
                        "fine-tune a run")
    p.add_argument("--init-motion", default=None, metavar="FILE",
                   help="semisup: take the motion decoder and generator from this checkpoint (after --init), "
                        "e.g. for a refit of M and G with --set train_encoder=false")
    p.add_argument("--critic", default=None, metavar="FILE",
                   help="semisup: a second, independent expression critic (critic.safetensors from "
                        "python -m facecycle.train.critic) for the neutral-reads-neutral term; its weight is "
                        "--set critic_weight=W")
    p.add_argument("--pack", default=None, metavar="FILE",
                   help="semisup: train from a data pack (see --write-pack) instead of --data/--fer")
    p.add_argument("--write-pack", default=None, metavar="FILE",
                   help="semisup: write the loaded data to a pack (one .npz, for a machine without ../shared) "
                        "and exit")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from facecycle.config import get_config
    from facecycle.data.pairs import PairSource, load_image_pool, load_track_dataset
    from facecycle.train.trainer import Trainer, TrainOptions

    try:
        cfg = get_config(args.config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if (args.steps is not None and args.steps < 1) or (args.batch is not None and args.batch < 1):
        raise UsageError("--steps and --batch must be >= 1")
    args.video_scale = _video_scale(args.data or [], args.video_scale)
    if args.stage == "semisup":
        return _train_semisup(args, cfg)
    if not args.data:
        raise UsageError("--data DATASET... is required")
    resuming = args.resume and _holds_run(Path(args.out))
    if args.stage == "identity" and (args.init or resuming):
        from facecycle.checkpoint import load_checkpoint

        # resuming: the run's own weights define the model (its --init need not be on this machine)
        cfg = load_checkpoint(Path(args.out) / "last.safetensors" if resuming else args.init).config
    hold = [h for h in args.hold_out.split(",") if h.strip()]
    cut = bool(args.video_scale and args.video_scale - cfg.crop_scale > 1e-3)
    if args.video_scale and cfg.crop_scale - args.video_scale > 1e-3:  # no looser framing can be cut out of them
        print(f"note: the data sets were prepared at --scale {args.video_scale:g}, tighter than config "
              f"{cfg.name!r}'s framing {cfg.crop_scale:g}: their faces are used as prepared (prepare them at "
              f"--scale {cfg.crop_scale:g} or more for the model's own framing)", flush=True)
    if hold:
        from facecycle.train.semisup import load_video

        imgs, tracks, _ = load_video([Path(d) for d in args.data], 64 if cut else cfg.image_size, exclude=hold)
    else:
        imgs, tracks = load_track_dataset([Path(d) for d in args.data], 64 if cut else cfg.image_size)
    if cut:  # datasets prepared looser than the model's framing: cut the model's framing out of them
        from facecycle.train.semisup import cut_framing

        imgs = center_cut(imgs, cut_framing(args.video_scale, cfg.crop_scale), cfg.image_size)
    pool = None
    if args.fer:
        from facecycle.probe.datasets import list_expression, stratified_split

        tr, _ = stratified_split(list_expression(Path(args.fer), "train"), args.val_frac, seed=0)
        pool = load_image_pool([p for p, _ in tr], cfg.image_size)
    print(f"data: {len(imgs)} crops in {len(set(tracks.tolist()))} tracks"
          + (f", {len(pool)} still images (mirror pairs, {args.fer_frac:.0%} of pairs)" if pool is not None else ""))
    opts = TrainOptions(stage=args.stage, config=cfg.name, steps=args.steps or 4000, pairs=args.batch or 16,
                        lr=2e-4 if args.lr is None else args.lr,
                        seed=args.seed, fer_frac=args.fer_frac if pool is not None else 0.0,
                        vgg19_weights=args.vgg19_weights, init=args.init, init_identity=args.init_identity,
                        ckpt_every=args.ckpt_every,
                        sample_every=args.sample_every, threads=args.threads, width=args.width,
                        perceptual_weight=args.perceptual_weight, drop_at=args.drop_at)
    src = PairSource(imgs, tracks, pool=pool, pool_frac=opts.fer_frac, seed=args.seed)
    tr = Trainer(opts, src, Path(args.out), resuming=args.resume)
    if args.resume:
        if tr.resume():
            print(f"resumed {args.out} at step {tr.step}")
        else:
            _nothing_to_resume(Path(args.out))
    elif tr.ckpt_path.is_file():
        raise UsageError(f"{args.out} already holds a run; pass --resume or choose another --out")
    with _diverged(Path(args.out)), StopAtStepEnd() as sig:
        losses = tr.fit(until=args.stop_at, max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                        progress=not args.no_progress, stop=sig.requested)
    sig.stopped(tr.step, Path(args.out))
    if losses:
        print(f"step {tr.step}: loss {losses[-1]:.4f} (first {losses[0]:.4f}); "
              f"wall {tr.wall / 60:.1f} min; checkpoint {tr.ckpt_path}")
    return 0


def _video_scale(data: List[str], given: Optional[float]) -> Optional[float]:
    """The framing the video data sets were prepared with (their ``meta.json``'s ``scale``, which ``--video-scale``
    must agree with): semisup assumed 1.3 and the motion stages cut nothing, whatever the data held, so data
    prepared at the default 1.7 trained a 1.03-framed model on faces 1.35 times too loose, without a word."""
    from facecycle.data.prepare import read_meta

    scales = {}
    for d in data:
        meta = Path(d) / "meta.json"
        if not (meta.exists() or meta.is_symlink()):
            continue  # not a prepared data set (its reader says so), or one from before meta.json
        scales[d] = read_meta(Path(d))["scale"]  # a damaged one: one line naming it (it was passed over silently)
    if len({round(v, 3) for v in scales.values()}) > 1:
        raise UsageError("the --data sets were prepared at different scales ("
                         + ", ".join(f"{d}: {v:g}" for d, v in scales.items()) + "); prepare them alike")
    found = next(iter(scales.values()), None)
    if given is not None and found is not None and abs(given - found) > 1e-3:
        raise UsageError(f"--video-scale {given:g}, but {next(iter(scales))} was prepared at --scale {found:g} "
                         "(its meta.json); leave --video-scale out")
    return given if given is not None else found


def _train_semisup(args: argparse.Namespace, cfg) -> int:
    import time

    from facecycle.probe.run import load_stills
    from facecycle.train.semisup import SemiSupTrainer, label_video, load_video, read_clip_labels

    t = time.perf_counter()
    vlab = None
    if args.pack and args.video_labels:
        raise UsageError("--video-labels needs --data (a pack holds no track names; it keeps the labels it was "
                         "written with)")
    if args.pack:
        from facecycle.train.pack import read_pack, read_pack_video_labels

        stills, val, (vimg, vtr) = read_pack(Path(args.pack))
        vlab = read_pack_video_labels(Path(args.pack))
        print(f"data (pack {args.pack}): {len(stills[0])} labelled stills, {len(val[0])} held out; "
              f"{len(vimg)} video crops in {len(set(vtr.tolist()))} tracks; loaded in {time.perf_counter() - t:.0f} s",
              flush=True)
    else:
        if not args.fer or not args.data:
            raise UsageError("--stage semisup needs --fer FER2013_ROOT (a <root>/train/<class>/*.jpg folder) and "
                             "--data DATASET... (or --pack FILE)")
        stills, val = load_stills(Path(args.fer), cfg.image_size, args.val_frac, seed=0)
        hold = [h for h in args.hold_out.split(",") if h.strip()]
        vimg, vtr, names = load_video([Path(d) for d in args.data], 64, exclude=hold)
        if args.video_labels:
            vlab = label_video([Path(d) for d in args.data], read_clip_labels(Path(args.video_labels)), hold)
            print(f"video labels ({args.video_labels}): {int((vlab >= 0).sum())} of {len(vlab)} crops labelled",
                  flush=True)
        print(f"data: {len(stills[0])} labelled stills, {len(val[0])} held out; {len(vimg)} video crops in "
              f"{len(names)} tracks ({len(hold)} clip prefixes held out); loaded in {time.perf_counter() - t:.0f} s",
              flush=True)
    if args.write_pack:
        from facecycle.train.pack import write_pack

        n = write_pack(Path(args.write_pack), stills, val, (vimg, vtr), video_labels=vlab)
        print(f"wrote {args.write_pack} ({n / 1e6:.1f} MB)")
        return 0
    opts = semisup_options(args, cfg.name)
    if bool(args.still_targets) != (opts.distill_weight > 0):
        raise UsageError("--still-targets and --set distill_weight=W (W > 0) go together")
    targets = read_still_targets(Path(args.still_targets), stills[1]) if args.still_targets else None
    init, init_head, init_motion = args.init, args.init_head, args.init_motion
    resumable = all((Path(args.out) / n).is_file() for n in ("last.safetensors", "state.safetensors",
                                                               "head.safetensors"))  # what resume() reads
    if args.resume and resumable and (init or init_head or init_motion):
        # the state holds every weight the run has: what it started from is not read again (a fresh checkout of
        # scripts/train_default.sh finetune stopped on a start file that only the first session had)
        print("resuming: --init, --init-head and --init-motion are not read (the run's state holds its weights)",
              flush=True)
        init = init_head = init_motion = None
    tr = SemiSupTrainer(opts, stills, val, (vimg, vtr), Path(args.out), init=init, video_labels=vlab,
                        init_head=init_head, init_motion=init_motion, critic=args.critic,
                        still_targets=targets)
    if args.resume:
        if tr.resume():
            print(f"resumed {args.out} at step {tr.step}", flush=True)
        else:
            _nothing_to_resume(Path(args.out), ("state.safetensors", "head.safetensors"))
    elif (Path(args.out) / "last.safetensors").is_file():
        raise UsageError(f"{args.out} already holds a run; pass --resume or choose another --out")
    with _diverged(Path(args.out)), StopAtStepEnd() as sig:
        tr.fit(max_seconds=args.max_minutes * 60 if args.max_minutes else None, stop_at=args.stop_at,
               progress=not args.no_progress, stop=sig.requested)
    sig.stopped(tr.step, Path(args.out))
    v = tr.validate()
    print(f"step {tr.step}: val acc {v['val_acc']:.4f} (flip-averaged {v['val_acc_flip']:.4f}); "
          f"wall {tr.wall / 60:.1f} min; run {args.out}", flush=True)
    return 0


def _holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run to resume (a save a kill cut short is finished or dropped first)."""
    from facecycle.train.state import recover_set

    recover_set(out)
    return (out / "last.safetensors").is_file() and (out / "state.safetensors").is_file()


class StopAtStepEnd:
    """While a run trains: SIGTERM, SIGHUP, SIGXCPU or SIGINT asks it to stop at the end of the step under way
    (:meth:`requested`; the trainer then saves that whole step). Raising where the signal landed saved a half-done
    step (Adam's update in the weights, the state a step behind), which the resume did again. A second signal
    (SIGINT, SIGTERM; not a repeated SIGXCPU) quits at once, as the command line's own handlers do: the trainer then
    saves nothing, and the run's last save stays. Outside the main thread it changes nothing."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._old: dict = {}

    def __enter__(self) -> "StopAtStepEnd":
        from .sigterm import take_stopping_signals

        self._old = take_stopping_signals(self._handle)  # (one that came during start-up stops before training)
        return self

    def _handle(self, signum, frame) -> None:
        import signal

        from facecycle.terminal import REPEATING

        from .sigterm import exit_code_of, record

        if self.signum is None:
            self.signum = signum
            record(signum)
            print(f"\nsignal {signal.Signals(signum).name}: stopping after the step under way (again: quit at once, "
                  "keeping the last save)", flush=True)
            return
        if signum in REPEATING:
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(exit_code_of(signum))

    def requested(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc) -> None:
        from .sigterm import give_back_signals

        give_back_signals(self._old)

    def stopped(self, step: int, out: Path) -> None:
        """After the run: where a signal stopped it, say so and end the command with the signal's exit."""
        if self.signum is None:
            return
        from .sigterm import raise_if_received

        print(f"stopped at step {step} (saved); continue with --resume --out {out}", flush=True)
        raise_if_received()


def _nothing_to_resume(out: Path, needs: Tuple[str, ...] = ("state.safetensors",)) -> None:
    """``--resume`` where no run can be resumed: start afresh, unless trained weights are there without the files
    a resume ``needs`` beside them (the weights were overwritten from step 0)."""
    gone = [n for n in needs if not (out / n).is_file()]
    if (out / "last.safetensors").is_file() and gone:
        raise UsageError(f"{out} holds trained weights (last.safetensors) but not {' and '.join(gone)}: it cannot be "
                         "resumed exactly, and starting over would overwrite them; start a new --out "
                         f"(--init {out / 'last.safetensors'} continues from those weights)")
    print(f"nothing to resume in {out}; starting at step 0", flush=True)


@contextlib.contextmanager
def _diverged(out: Path) -> Iterator[None]:
    """A loss that became NaN or infinite ends the run with one line naming what to change (it read as an internal
    error)."""
    try:
        yield
    except FloatingPointError as e:
        raise PipelineError(f"training diverged ({e}); nothing was saved at that step: lower the learning rate "
                            f"(--lr) and start again, or --resume {out} from its last saved checkpoint") from None


def read_still_targets(path: Path, labels: np.ndarray) -> np.ndarray:
    """The (N, 7) teacher probabilities of ``path`` (scripts/teacher_targets.py), checked against the stills'
    labels so that a file made for another split or order is refused instead of mislabelling every still."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            t, lab = z["targets"], z["labels"]
    except (OSError, KeyError, ValueError, TypeError, AttributeError, zipfile.BadZipFile) as e:  # a plain .npy
        raise InputError(f"{path}: not a still-targets file ({e})") from None
    if len(lab) != len(labels) or not np.array_equal(lab, labels):
        raise InputError(f"{path}: made for other stills ({len(lab)} labels against {len(labels)}, or another "
                         f"order); remake it with scripts/teacher_targets.py")
    return t


def semisup_options(args: argparse.Namespace, config: str):
    """The :class:`SemiSupOptions` of a ``train --stage semisup`` command line (``--set`` applied last)."""
    from facecycle.train.semisup import SemiSupOptions

    sizes = {k: v for k, v in (("steps", args.steps), ("batch", args.batch)) if v is not None}  # else semisup's own
    opts = SemiSupOptions(config=config, **sizes, seed=args.seed,
                          video_batch=args.video_batch, consistency_start=args.consistency_start,
                          pairs=args.pairs,
                          ckpt_every=args.ckpt_every, threads=args.threads, cycle_every=args.cycle_every,
                          video_crop_scale=args.video_scale or 1.3, device=args.device,
                          amp=args.amp)
    if args.lr is not None:  # semisup's own default otherwise
        opts.lr = args.lr
    set_options(opts, args.set_options)
    return opts


def set_options(opts, items) -> None:
    """Apply ``NAME=VALUE`` strings to a dataclass of options, converting VALUE to the field's type."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(opts)}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            raise UsageError(f"--set {item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(fields))}")
        kind = type(getattr(opts, name))
        try:
            v = (value.strip().lower() in ("1", "true", "yes", "on")) if kind is bool else kind(value)
        except ValueError:
            raise UsageError(f"--set {item!r}: {value!r} is not a {kind.__name__}") from None
        setattr(opts, name, v)


def center_cut(images, frac: float, size: int):
    """(N, S, S, 3) uint8 -> the centre ``frac`` of each image resized to (N, size, size, 3) (area)."""
    import cv2
    import numpy as np

    if not 0 < frac <= 1:
        raise UsageError(f"cannot cut a centre of {frac:g} of a crop (the data would have to be looser)")
    s = images.shape[1]
    side = max(1, int(round(s * frac)))
    o = (s - side) // 2
    return np.stack([cv2.resize(im[o:o + side, o:o + side], (size, size), interpolation=cv2.INTER_AREA)
                     for im in images])
