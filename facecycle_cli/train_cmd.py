"""``facecycle train``: train the motion or identity stage on prepared face-track datasets."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from facecycle.errors import UsageError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train FaceCycle (motion or identity stage) on face-track datasets")
    p.add_argument("--stage", choices=("motion", "identity"), default="motion")
    p.add_argument("--data", nargs="+", required=True, metavar="DATASET", help="datasets from `data prepare`")
    p.add_argument("--config", default="small", help="model config (paper, paper128, small, tiny)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, log.csv, samples/)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--steps", type=int, default=4000, help="total steps (defines the lr schedule)")
    p.add_argument("--batch", type=int, default=16, help="pairs per batch (the model sees 2x images)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (Adam)")
    p.add_argument("--fer", default=None, metavar="DIR",
                   help="FER-2013 root (<DIR>/train/<class>/*.jpg): its probe-train part as mirror pairs")
    p.add_argument("--fer-frac", type=float, default=0.25, help="fraction of pairs drawn from --fer")
    p.add_argument("--val-frac", type=float, default=0.1, help="FER validation fraction kept out (as in probes)")
    p.add_argument("--init", default=None, help="motion checkpoint to start the identity stage from")
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
    p.add_argument("--ckpt-every", type=int, default=200)
    p.add_argument("--sample-every", type=int, default=250)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from facecycle.config import get_config
    from facecycle.data.pairs import PairSource, load_image_pool, load_track_dataset
    from facecycle.train.trainer import Trainer, TrainOptions

    try:
        cfg = get_config(args.config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.steps < 1 or args.batch < 1:
        raise UsageError("--steps and --batch must be >= 1")
    if args.stage == "identity" and args.init:
        from facecycle.checkpoint import load_checkpoint

        cfg = load_checkpoint(args.init).config
    imgs, tracks = load_track_dataset([Path(d) for d in args.data], cfg.image_size)
    pool = None
    if args.fer:
        from facecycle.probe.datasets import list_expression, stratified_split

        tr, _ = stratified_split(list_expression(Path(args.fer), "train"), args.val_frac, seed=0)
        pool = load_image_pool([p for p, _ in tr], cfg.image_size)
    print(f"data: {len(imgs)} crops in {len(set(tracks.tolist()))} tracks"
          + (f", {len(pool)} still images (mirror pairs, {args.fer_frac:.0%} of pairs)" if pool is not None else ""))
    opts = TrainOptions(stage=args.stage, config=cfg.name, steps=args.steps, pairs=args.batch, lr=args.lr,
                        seed=args.seed, fer_frac=args.fer_frac if pool is not None else 0.0,
                        vgg19_weights=args.vgg19_weights, init=args.init, ckpt_every=args.ckpt_every,
                        sample_every=args.sample_every, threads=args.threads, width=args.width,
                        perceptual_weight=args.perceptual_weight, drop_at=args.drop_at)
    src = PairSource(imgs, tracks, pool=pool, pool_frac=opts.fer_frac, seed=args.seed)
    tr = Trainer(opts, src, Path(args.out))
    if args.resume:
        if tr.resume():
            print(f"resumed {args.out} at step {tr.step}")
        else:
            print(f"nothing to resume in {args.out}; starting at step 0")
    elif tr.ckpt_path.is_file():
        raise UsageError(f"{args.out} already holds a run; pass --resume or choose another --out")
    losses = tr.fit(until=args.stop_at, max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                    progress=not args.no_progress)
    if losses:
        print(f"step {tr.step}: loss {losses[-1]:.4f} (first {losses[0]:.4f}); "
              f"wall {tr.wall / 60:.1f} min; checkpoint {tr.ckpt_path}")
    return 0
